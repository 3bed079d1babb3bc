//! Physics-based CSI simulator producing MM-Fi-like packed datasets with exact ground truth.
