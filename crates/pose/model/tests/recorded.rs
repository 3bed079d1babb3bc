//! The whole model's output and gradients on fixed inputs against values recorded from the
//! engine before its layers became named parts (`blocks.rs`; the refactor was checked
//! bit-identical on nano … flagship, dropout on and off): micro (graph head) and tiny (two
//! layers), dropout on with a fixed key. Tolerances allow for the matrix-product kernel
//! the CPU selects (AVX2 or AVX-512 sum in different orders), not for a changed network.

use csipose_model::{Model, ModelConfig, Rng, Workspace, OUTPUTS};

/// (sum of outputs, Σ|grad|, Σ|grad| of named tensors) for a preset.
fn summary(name: &str, batch: usize) -> (f64, f64, Vec<(String, f64)>) {
    let cfg = ModelConfig::preset(name).unwrap();
    let m = Model::new(cfg.clone());
    let params = m.init_params(11);
    let mut rng = Rng::new(4);
    let x: Vec<f32> = (0..batch * cfg.frame_len())
        .map(|_| rng.normal() as f32)
        .collect();
    let dout: Vec<f32> = (0..batch * OUTPUTS).map(|_| rng.normal() as f32).collect();
    let mut ws = Workspace::default();
    let out = m.forward(&params, &x, batch, Some(5), &mut ws).to_vec();
    let mut g = vec![0.0f32; params.len()];
    m.backward(&params, batch, &dout, &mut g, &mut ws);
    let named = [
        "embed.weight",
        "pos_embed",
        "encoder.layers.0.self_attn.in_proj_weight",
        "encoder.layers.0.linear1.weight",
        "encoder.layers.0.norm2.bias",
        "pool.score.weight",
        "head.0.weight",
        "graph.joint_embed",
        "graph.input.weight",
        "graph.layers.1.weight",
    ];
    let per = named
        .iter()
        .filter(|n| m.layout.get(n).is_some())
        .map(|n| {
            let t = m.layout.get(n).unwrap();
            let s: f64 = g[t.offset..t.offset + t.len]
                .iter()
                .map(|&v| v.abs() as f64)
                .sum();
            (n.to_string(), s)
        })
        .collect();
    (
        out.iter().map(|&v| v as f64).sum(),
        g.iter().map(|&v| v.abs() as f64).sum(),
        per,
    )
}

fn close(got: f64, want: f64, what: &str) {
    let tol = 1e-4 * want.abs().max(1e-3);
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got:.9e}, recorded {want:.9e}"
    );
}

fn check(name: &str, batch: usize, want: (f64, f64, &[f64])) {
    let (out, abs, per) = summary(name, batch);
    for (n, v) in &per {
        println!("{name} {n} {v:.9e}");
    }
    println!("{name} out {out:.9e} |grad| {abs:.9e}");
    close(out, want.0, "sum of outputs");
    close(abs, want.1, "sum of |grad|");
    assert_eq!(per.len(), want.2.len());
    for ((n, v), w) in per.iter().zip(want.2) {
        close(*v, *w, n);
    }
}

#[test]
fn micro_matches_recorded_values() {
    check(
        "micro",
        3,
        (
            5.139857072e1,
            1.324209416e3,
            &[
                7.893946751e2,
                7.398147732e0,
                4.086580900e1,
                4.154849938e1,
                3.351825924e0,
                8.788756161e0,
                1.117867849e2,
                5.501200152e-1,
                2.373926826e1,
                1.541414775e1,
            ],
        ),
    );
}

#[test]
fn tiny_matches_recorded_values() {
    check(
        "tiny",
        2,
        (
            3.418592352e1,
            1.622105222e3,
            &[
                7.015650879e2,
                6.390490976e0,
                5.079303098e1,
                5.520552875e1,
                2.958014118e0,
                5.437867026e0,
                1.770506693e2,
                3.829417451e-1,
                3.271679962e1,
                9.806618189e0,
            ],
        ),
    );
}
