//! Batch-1 CPU inference for csipose pose models, `no_std` and allocation-free: a zero-copy
//! view of the `.csm` model file ([`format`]), the forward pass over caller-owned scratch
//! ([`Runtime`]) and its kernels selected at run time ([`Kernel`]): exact f32 (portable,
//! AVX2+FMA, AVX-512) and int16 fixed point ([`int16`]; AVX-512 VNNI, the default where
//! present, and its portable reference). The int16 kernels keep an int16 working copy of the
//! int8/int4 weights in the caller's constants buffer ([`Runtime::consts_len_for`]; the file
//! itself stays borrowed and untouched).
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
