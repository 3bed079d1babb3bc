//! Batch-1 CPU inference for csipose pose models, `no_std` and allocation-free: a zero-copy
//! view of the `.csm` model file ([`format`]), the forward pass over caller-owned scratch
//! ([`Runtime`]) and its kernels, portable and AVX2+FMA selected at run time ([`Kernel`]).
#![no_std]

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod format;
pub mod forward;
pub mod int16;
pub mod kernels;
pub mod math;
#[cfg(target_arch = "x86_64")]
mod vnni;

pub use format::{
    encode, encoded_len, Config, Dtype, FormatError, ModelFile, ScaleKind, TensorData, TensorIn,
    TensorSlot, TensorView,
};
pub use forward::{flops_per_forward, Runtime, RuntimeError, MAX_LAYERS, OUTPUTS};
pub use kernels::Kernel;
