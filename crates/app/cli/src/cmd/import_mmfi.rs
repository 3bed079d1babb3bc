//! `csipose import-mmfi`: imports an MM-Fi tree (or its per-environment zip archives) into a
//! packed dataset, with the official toolbox preprocessing (through the pipeline), a progress
//! bar and a closing summary.

use csipose_dataset::mmfi::{ImportOptions, KeypointSource};
use indicatif::ProgressBar;
use std::path::PathBuf;

/// Where the keypoints (Y) come from.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Keypoints {
    /// COCO-17 2D: rgb/frameNNN.npy pixels divided by --image-size.
    Rgb,
    /// Human3.6M-order 3D: the frame's row of ground_truth.npy.
    Gt3d,
}

#[derive(clap::Args)]
pub struct Args {
    /// MM-Fi data: an extracted tree (E01/S01/A01/wifi-csi/frame001.mat, rgb/, ground_truth.npy),
    /// a directory of the per-environment zip archives (E01.zip, ...), or one archive.
    pub root: PathBuf,
    /// Output directory for the packed dataset (an existing packed dataset there is replaced;
    /// anything else is refused).
    #[arg(long)]
    pub out: PathBuf,
    /// Keypoint source.
    #[arg(long, value_enum, default_value_t = Keypoints::Rgb)]
    pub keypoints: Keypoints,
    /// Image size WIDTHxHEIGHT that rgb keypoint pixels are divided by.
    #[arg(long, default_value = "640x480", value_parser = parse_image_size)]
    pub image_size: (u32, u32),
    /// Skip bad input files (and list them) instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
    /// Also write the raw CSIphase as phase.npy (float32 [N, 3, 114, 10], non-finite -> 0).
    #[arg(long)]
    pub with_phase: bool,
}

fn parse_image_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{s}` is not WIDTHxHEIGHT with positive integers, e.g. 640x480");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.trim().parse().map_err(|_| bad())?;
    let h: u32 = h.trim().parse().map_err(|_| bad())?;
    if w == 0 || h == 0 {
        return Err(bad());
    }
    Ok((w, h))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::validate::output_dir(
        "--out",
        &args.out,
        &crate::validate::inputs(&[Some(&args.root)]),
    )?;
    let opts = ImportOptions {
        keypoints: match args.keypoints {
            Keypoints::Rgb => KeypointSource::Rgb,
            Keypoints::Gt3d => KeypointSource::Gt3d,
        },
        image_size: args.image_size,
        skip_bad: args.skip_bad,
        with_phase: args.with_phase,
        command_line: Some(crate::validate::command_line()),
        ..ImportOptions::default()
    };
    let summary =
        csipose_pipeline::import::mmfi(&args.root, &args.out, &opts, &ProgressBar::new(0))?;
    print!("{summary}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_image_size;

    #[test]
    fn image_size_parses_and_rejects() {
        assert_eq!(parse_image_size("640x480"), Ok((640, 480)));
        assert_eq!(parse_image_size("1920X1080"), Ok((1920, 1080)));
        for bad in ["640", "x480", "0x480", "640x-1", "axb", ""] {
            assert!(parse_image_size(bad).is_err(), "{bad}");
        }
    }
}
