//! The library layer under the `csipose` binary: typed functions that commands (and the server)
//! call directly instead of re-parsing argv. It owns the activity pipeline: reading manifests
//! ([`manifest`]), turning every kind of input into per-frame features ([`sources`],
//! [`activity::load_examples`]), training, evaluating, cross-validating and the nested
//! hyperparameter search that keeps reported numbers free of the choices ([`activity`]).

pub mod activity;
pub mod manifest;
pub mod sources;
