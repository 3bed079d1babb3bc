//! The official MM-Fi toolbox CSI preprocessing (inf -> NaN, per-packet NaN fill, frame min-max).
