//! The pose model family: layers with explicit forward and backward passes.
