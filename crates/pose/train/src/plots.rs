//! PNG plots of a training run, drawn with plotters into an RGB buffer and encoded by a
//! PNG encoder of `csipose-png`, written atomically. No text is
//! drawn (no font dependency): each plot's meaning is documented here and in the README.
//!
//! - `curves.png`: left panel training loss per epoch (blue, scaled to the panel), right
//!   panel validation torso-PCK@20 per epoch (red, 0 at the bottom, 1 at the top); light
//!   grid lines every 0.1.
//! - `pck.png`: validation torso-PCK (y, 0..1) against the threshold k (x, 0..0.5); grid
//!   lines every 0.1 in both.
//! - `skeletons.png`: up to 8 validation samples, ground truth in green, prediction in red,
//!   image coordinates (y down), each panel a square window around the two poses.

use anyhow::{Context, Result};
use csipose_spec::coco::DRAWN_BONES;
use plotters::prelude::*;
use std::io::Write;
use std::path::Path;

fn save(path: &Path, rgb: &[u8], w: u32, h: u32) -> Result<()> {
    let mut f = csipose_npy::AtomicFile::create(path)?;
    f.write_all(&csipose_png::encode_rgb(w, h, rgb))
        .with_context(|| format!("writing {}", path.display()))?;
    f.commit()?;
    Ok(())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn line_panel(
    area: &Area,
    ys: &[f64],
    y_range: (f64, f64),
    x_max: f64,
    color: RGBColor,
) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .build_cartesian_2d(0f64..x_max, y_range.0..y_range.1)
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    let grid = RGBColor(225, 225, 225);
    for i in 0..=10 {
        let y = y_range.0 + (y_range.1 - y_range.0) * i as f64 / 10.0;
        chart
            .draw_series(LineSeries::new([(0.0, y), (x_max, y)], grid))
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    }
    chart
        .draw_series(LineSeries::new(
            [(0.0, y_range.0), (x_max, y_range.0)],
            BLACK,
        ))
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    chart
        .draw_series(LineSeries::new([(0.0, y_range.0), (0.0, y_range.1)], BLACK))
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    let pts: Vec<(f64, f64)> = ys
        .iter()
        .enumerate()
        .filter(|(_, y)| y.is_finite())
        .map(|(i, &y)| (if ys.len() > 1 { i as f64 } else { 0.0 }, y))
        .collect();
    chart
        .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    chart
        .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    Ok(())
}

/// `curves.png`: training loss and validation torso-PCK@20 per epoch.
pub fn training_curves(path: &Path, loss: &[f64], val_pck: &[f64]) -> Result<()> {
    let (w, h) = (900u32, 360u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
        let (l, r) = root.split_horizontally(w / 2);
        let lmax = loss.iter().cloned().fold(1e-9, f64::max) * 1.05;
        let x_max = (loss.len().max(2) - 1) as f64;
        line_panel(&l, loss, (0.0, lmax), x_max, BLUE)?;
        line_panel(&r, val_pck, (0.0, 1.0), x_max, RED)?;
        root.present().map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    }
    save(path, &buf, w, h)
}

/// `pck.png`: torso-PCK against threshold k in 0..0.5.
pub fn pck_curve(path: &Path, curve: &[(f64, f64)]) -> Result<()> {
    let (w, h) = (480u32, 400u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .build_cartesian_2d(0f64..0.5, 0f64..1.0)
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
        let grid = RGBColor(225, 225, 225);
        for i in 0..=10 {
            let v = i as f64 / 10.0;
            chart
                .draw_series(LineSeries::new([(0.0, v), (0.5, v)], grid))
                .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
            chart
                .draw_series(LineSeries::new([(v / 2.0, 0.0), (v / 2.0, 1.0)], grid))
                .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
        }
        chart
            .draw_series(LineSeries::new([(0.2, 0.0), (0.2, 1.0)], BLACK))
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
        chart
            .draw_series(LineSeries::new(curve.to_vec(), RED.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
        root.present().map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    }
    save(path, &buf, w, h)
}

/// `skeletons.png`: predicted (red) over true (green) skeletons for up to 8 samples.
pub fn skeletons(path: &Path, pred: &[f32], truth: &[f32]) -> Result<()> {
    let n = (truth.len() / 34).min(8);
    let (w, h) = (1000u32, 500u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
        let panels = root.split_evenly((2, 4));
        for (i, area) in panels.iter().enumerate().take(n) {
            // A square window around both poses (10 % margin), y pointing down.
            let vals = |c: usize| {
                [truth, pred]
                    .into_iter()
                    .flat_map(move |k| (0..17).map(move |j| k[i * 34 + 2 * j + c] as f64))
                    .filter(|v| v.is_finite())
            };
            let (x0, x1) = (
                vals(0).fold(f64::INFINITY, f64::min),
                vals(0).fold(f64::NEG_INFINITY, f64::max),
            );
            let (y0, y1) = (
                vals(1).fold(f64::INFINITY, f64::min),
                vals(1).fold(f64::NEG_INFINITY, f64::max),
            );
            let half = ((x1 - x0).max(y1 - y0) * 0.6).max(0.02);
            let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
            let (cx, cy, half) = if cx.is_finite() && cy.is_finite() {
                (cx, cy, half)
            } else {
                (0.5, 0.5, 0.5)
            };
            let mut chart = ChartBuilder::on(area)
                .margin(8)
                .build_cartesian_2d(cx - half..cx + half, cy + half..cy - half)
                .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
            let (l, r, t, b) = (cx - half, cx + half, cy - half, cy + half);
            chart
                .draw_series(LineSeries::new(
                    [(l, t), (r, t), (r, b), (l, b), (l, t)],
                    RGBColor(200, 200, 200),
                ))
                .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
            for (pose, color) in [(truth, RGBColor(0, 160, 0)), (pred, RGBColor(220, 0, 0))] {
                let k = &pose[i * 34..(i + 1) * 34];
                let pt = |j: usize| (k[2 * j] as f64, k[2 * j + 1] as f64);
                for &(a, b) in &DRAWN_BONES {
                    chart
                        .draw_series(LineSeries::new([pt(a), pt(b)], color.stroke_width(2)))
                        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
                }
                chart
                    .draw_series((0..17).map(|j| Circle::new(pt(j), 2, color.filled())))
                    .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
            }
        }
        root.present().map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    }
    save(path, &buf, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_has_valid_structure() {
        let png = csipose_png::encode_rgb(2, 1, &[255, 0, 0, 0, 255, 0]);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
        // IHDR CRC
        let crc = crc32fast::hash(&png[12..29]);
        assert_eq!(&png[29..33], &crc.to_be_bytes());
    }

    #[test]
    fn plots_are_written() {
        let dir = tempfile::tempdir().unwrap();
        training_curves(
            &dir.path().join("c.png"),
            &[0.3, 0.2, 0.1],
            &[0.1, 0.4, 0.6],
        )
        .unwrap();
        let curve: Vec<(f64, f64)> = (0..=50)
            .map(|i| (i as f64 / 100.0, i as f64 / 50.0))
            .collect();
        pck_curve(&dir.path().join("p.png"), &curve).unwrap();
        let t: Vec<f32> = (0..68).map(|i| (i % 34) as f32 / 34.0).collect();
        skeletons(&dir.path().join("s.png"), &t, &t).unwrap();
        for f in ["c.png", "p.png", "s.png"] {
            let b = std::fs::read(dir.path().join(f)).unwrap();
            assert!(b.len() > 500 && b.starts_with(b"\x89PNG"), "{f}");
        }
    }
}
