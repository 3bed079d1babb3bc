//! `csipose predict`: keypoints for every frame of a packed dataset from a trained run's
//! EMA weights, written atomically as `float32 [N, 17, 2]` `.npy`.

use anyhow::Result;
use csipose_dataset::PackedDataset;
use csipose_pipeline::train::checkpoint_path;
use csipose_train::trainer::check_dataset;
use csipose_train::{checkpoint, predict, View};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Run directory (or its checkpoint.safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Packed dataset directory.
    #[arg(long)]
    pub data: PathBuf,
    /// Output .npy file.
    #[arg(long)]
    pub out: PathBuf,
    /// Average the four test-time views (see the train crate's augment module).
    #[arg(long)]
    pub tta: bool,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

pub fn run(args: Args) -> Result<()> {
    use crate::validate;
    let ck = checkpoint_path(&args.checkpoint);
    let inputs = validate::inputs(&[Some(&args.checkpoint), Some(&ck), Some(&args.data)]);
    validate::output_file("--out", &args.out, &inputs)?;
    let threads = validate::threads("--threads", args.threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    pool.install(|| {
        let (model, w) = checkpoint::load_model(&ck)?;
        let ds = PackedDataset::open(&args.data)?;
        check_dataset(&ds, &model.cfg)?;
        let views: Vec<View> = if args.tta {
            View::ALL.to_vec()
        } else {
            vec![View::Identity]
        };
        let bar = ProgressBar::new(ds.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} frames | {per_sec} | ETA {eta}")
                .expect("template"),
        );
        let mut out = Vec::with_capacity(ds.len() * 34);
        let all: Vec<usize> = (0..ds.len()).collect();
        for chunk in all.chunks(4096) {
            out.extend(predict(&model, &w, &ds, chunk, &views));
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        csipose_npy::write(&args.out, &[ds.len(), 17, 2], &out)?;
        println!("{}: {} frames", args.out.display(), ds.len());
        Ok(())
    })
}
