//! Batch-1 CPU inference for csipose pose models, `no_std` and allocation-free: a zero-copy
//! view of the `.csm` model file ([`format`]), the forward pass over caller-owned scratch
//! ([`Runtime`]) and its kernels selected at run time ([`Kernel`]): exact f32 (portable,
//! AVX2+FMA, AVX-512) and int16 fixed point ([`int16`]; AVX-512 VNNI, the default where
//! present, and its portable reference). The int16 kernels keep an int16 working copy of the
//! int8/int4 weights in the caller's constants buffer ([`Runtime::consts_len_for`]; the file
//! itself stays borrowed and untouched), the AVX-512 paths a copy of the f32 weights in their
//! kernel's panel layout ([`kernels::Panels`]).
//!
//! Layers, top to bottom: [`forward`] is the sequence of operations; `ops` dispatches each on
//! the [`Kernel`]; [`kernels`] picks a Linear's micro-kernel per matrix; `tile` is the one
//! tiling loop over the `MicroKernel` trait, implemented once per instruction set (portable
//! f32 in [`kernels`], portable int16 in [`int16`], `avx2`, `avx512`, `vnni`); CPU features
//! come from `csipose-cpu`, shared with the attention crate.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod format;
pub mod forward;
pub mod int16;
pub mod kernels;
pub mod math;
mod ops;
pub mod profile;
mod tile;
#[cfg(target_arch = "x86_64")]
mod vnni;

pub use format::{
    encode, encoded_len, Config, Dtype, FormatError, ModelFile, ScaleKind, TensorData, TensorIn,
    TensorSlot, TensorView,
};
pub use forward::{flops_per_forward, Runtime, RuntimeError, MAX_LAYERS, OUTPUTS};
pub use kernels::Kernel;
