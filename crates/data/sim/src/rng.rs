//! Deterministic random numbers: the project's one generator ([`csipose_rng`], xoshiro256++
//! seeded through SplitMix64), with seeds derived from (run seed, stream name, indices) so that
//! every sequence has its own stream and the output does not depend on how sequences are
//! scheduled over threads.

pub use csipose_rng::{derive_seed, splitmix64, Rng};
