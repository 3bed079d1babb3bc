//! Batch-1 CPU inference for csipose pose models, `no_std` and allocation-free: a zero-copy
//! view of the `.csm` model file ([`format`]) and the forward pass over caller-owned scratch.
#![no_std]

pub mod format;

pub use format::{
    encode, encoded_len, Config, Dtype, FormatError, ModelFile, ScaleKind, TensorData, TensorIn,
    TensorSlot, TensorView,
};
