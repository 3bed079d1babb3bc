//! The seeded RNG the engine and training share: the project's one generator
//! ([`csipose_rng`]: xoshiro256++ seeded by splitmix64, normal/Gamma/Beta samplers, and the
//! stateless hash used for dropout masks).

pub use csipose_rng::{hash_uniform, splitmix64, Rng};
