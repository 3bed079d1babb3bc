//! `csipose bench`: batch-1, single-thread latency of the `no_std` runtime on a `.csm` model
//! file (or on random weights for a preset, `--random NAME --bits B`): median, p90 and
//! minimum of many timed forwards after a warm-up, FLOPs per forward (the engine's count),
//! achieved GFLOP/s, file size, precision and the kernel path.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use csipose_files::AlignedBytes;
use csipose_model::{Model, ModelConfig, Rng};
use csipose_npy::AtomicFile;
use csipose_pipeline::bench::{read_aligned, time_forward};
use csipose_runtime::{flops_per_forward, Dtype, Kernel, ModelFile, Runtime};

#[derive(clap::Args)]
pub struct Args {
    /// The model file (.csm) to time.
    #[arg(long, required_unless_present = "random", conflicts_with = "random")]
    pub model: Option<PathBuf>,
    /// Time a preset (nano … flagship) with random weights instead of a file.
    #[arg(long)]
    pub random: Option<String>,
    /// Precision of the random weights: 32, 8 or 4 (per-tensor scales).
    #[arg(long, default_value_t = 32, requires = "random")]
    pub bits: u32,
    /// Also write the random model to this path (.csm).
    #[arg(long, requires = "random")]
    pub save: Option<PathBuf>,
    /// Timed forwards (after a warm-up of a tenth as many, at least 100).
    #[arg(long, default_value_t = 5000)]
    pub iters: usize,
    /// Kernel path: auto (vnni16 where AVX-512 VNNI is present, else exact), exact (the best
    /// exact-f32 path), avx2, avx512, portable, or vnni16 / portable-int16 (int16 fixed point
    /// for int8/int4 Linears; about 1e-5 from the exact result).
    #[arg(long, default_value = "auto")]
    pub kernel: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A random-weight model file for a preset (the engine's init plus noise), at 32, 8 or 4 bits
/// with one max-abs scale per tensor (every Linear weight quantized), for timing.
pub fn random_model(name: &str, bits: u32) -> Result<AlignedBytes> {
    let cfg = ModelConfig::preset(name)
        .with_context(|| format!("unknown preset {name:?} (see `csipose models`)"))?;
    if ![32, 8, 4].contains(&bits) {
        bail!("--bits must be 32, 8 or 4, not {bits}");
    }
    let model = Model::new(cfg.clone());
    let mut params = model.init_params(1);
    let mut rng = Rng::new(2);
    for v in params.iter_mut() {
        *v += 0.05 * rng.normal() as f32;
    }
    let bits = csipose_quantize::Bits::from_count(bits).expect("checked above");
    let q = csipose_quantize::quantize(&cfg, &params, &csipose_quantize::Spec::new(bits, false))?;
    let bytes = q.to_csm()?;
    Ok(AlignedBytes::copy_from(&bytes))
}

fn kernel(name: &str) -> Result<Kernel> {
    Ok(match name {
        "auto" => Kernel::best(),
        "exact" => Kernel::best_exact(),
        "portable" => Kernel::portable(),
        "avx2" => Kernel::avx2().context("this CPU (or OS) does not support AVX2+FMA")?,
        "avx512" => {
            Kernel::avx512().context("this CPU (or OS) does not support AVX-512 F/BW/VL")?
        }
        "vnni16" => Kernel::avx512_vnni16()
            .context("this CPU (or OS) does not support AVX-512 F/BW/VNNI with AVX2+FMA")?,
        "portable-int16" => Kernel::portable_int16(),
        _ => bail!(
            "--kernel must be auto, exact, avx2, avx512, vnni16, portable or portable-int16, not {name:?}"
        ),
    })
}

fn precision(d: Dtype) -> &'static str {
    match d {
        Dtype::F32 => "fp32",
        Dtype::I8 => "int8",
        Dtype::I4 => "int4",
    }
}

pub fn run(args: Args) -> Result<()> {
    let (bytes, source) = match (&args.model, &args.random) {
        (Some(p), _) => (read_aligned(p)?, p.display().to_string()),
        (None, Some(name)) => {
            let a = random_model(name, args.bits)?;
            if let Some(path) = &args.save {
                let mut f = AtomicFile::create(path)?;
                f.write_all(a.bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                f.commit()?;
            }
            (a, format!("random {name}, {} bits", args.bits))
        }
        _ => bail!("give --model FILE or --random PRESET"),
    };
    let mf =
        ModelFile::parse(bytes.bytes()).with_context(|| format!("invalid model file {source}"))?;
    let k = kernel(&args.kernel)?;
    let cfg = mf.config;
    let mut consts = vec![0.0f32; Runtime::consts_len_for_file(&mf, k)];
    let rt = Runtime::new(&mf, k, &mut consts).with_context(|| format!("model {source}"))?;
    let tm = time_forward(&rt, args.iters);
    let flops = flops_per_forward(&cfg);
    let gflops = flops as f64 / (tm.median_us * 1e3);
    let prec = precision(mf.precision());
    if args.json {
        let v = serde_json::json!({
            "model": mf.name(),
            "source": source,
            "file_bytes": mf.size(),
            "precision": prec,
            "kernel": rt.run_kernel().name(),
            "kernel_requested": k.name(),
            "threads": 1,
            "iters": args.iters.max(10),
            "median_us": tm.median_us,
            "p90_us": tm.p90_us,
            "min_us": tm.min_us,
            "flops_per_forward": flops,
            "gflops_at_median": gflops,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "model      {} ({source}, {} bytes, {prec})",
            mf.name(),
            mf.size()
        );
        println!("kernel     {} (1 thread, batch 1)", rt.run_kernel().name());
        println!(
            "latency    median {:.2} us, p90 {:.2} us, min {:.2} us over {} runs",
            tm.median_us,
            tm.p90_us,
            tm.min_us,
            args.iters.max(10)
        );
        println!(
            "flops      {flops} per forward -> {gflops:.1} GFLOP/s at the median ({:.1} at the min)",
            flops as f64 / (tm.min_us * 1e3)
        );
    }
    Ok(())
}
