//! Importing an MM-Fi tree (or its per-environment zip archives) into a packed dataset with the
//! official toolbox preprocessing ([`mmfi`]), driving an `indicatif` bar the caller hands in.

use csipose_dataset::mmfi::{self, ImportOptions, ImportSummary, Progress};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;

/// Drives an indicatif bar from the importer's progress hook.
struct Bar<'a>(&'a ProgressBar);

impl Progress for Bar<'_> {
    fn start(&self, total_frames: u64) {
        self.0.set_length(total_frames);
    }
    fn advance(&self, frames: u64) {
        self.0.inc(frames);
    }
}

/// Imports `root` into the packed dataset `out` (an existing packed dataset there is replaced;
/// anything else is refused); `bar` counts frames.
pub fn mmfi(
    root: &Path,
    out: &Path,
    opts: &ImportOptions,
    bar: &ProgressBar,
) -> anyhow::Result<ImportSummary> {
    bar.set_style(
        ProgressStyle::with_template(
            "importing {bar:40} {pos}/{len} frames ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    let result = mmfi::import_mmfi(root, out, opts, &Bar(bar));
    bar.finish_and_clear();
    Ok(result?)
}
