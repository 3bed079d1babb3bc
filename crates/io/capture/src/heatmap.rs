//! The `capture inspect` picture: an amplitude heatmap (subcarrier x time, one panel per
//! receive antenna, a shared colour scale), drawn with plotters into an RGB buffer and
//! encoded as PNG by `csipose-png`.

use plotters::prelude::*;

/// At most this many time columns; longer captures are averaged into bins.
pub const MAX_COLUMNS: usize = 1200;

/// Viridis-like colour for `t` in [0, 1] (NaN draws grey).
pub fn colour(t: f64) -> RGBColor {
    if !t.is_finite() {
        return RGBColor(128, 128, 128);
    }
    const STOPS: [(f64, [f64; 3]); 5] = [
        (0.00, [68.0, 1.0, 84.0]),
        (0.25, [59.0, 82.0, 139.0]),
        (0.50, [33.0, 145.0, 140.0]),
        (0.75, [94.0, 201.0, 98.0]),
        (1.00, [253.0, 231.0, 37.0]),
    ];
    let t = t.clamp(0.0, 1.0);
    let k = STOPS.iter().position(|s| s.0 >= t).unwrap_or(4).max(1);
    let (t0, c0) = STOPS[k - 1];
    let (t1, c1) = STOPS[k];
    let u = (t - t0) / (t1 - t0);
    let mix = |i: usize| (c0[i] + (c1[i] - c0[i]) * u).round() as u8;
    RGBColor(mix(0), mix(1), mix(2))
}

/// Pixel geometry of a rendered heatmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub width: u32,
    pub height: u32,
    pub columns: usize,
    pub cell_w: u32,
    pub cell_h: u32,
    pub gap: u32,
}

/// Renders `panels[antenna][time][subcarrier]` amplitudes. Returns PNG bytes and layout.
/// Subcarrier 0 is the top row of each panel; time runs left to right.
pub fn render_png(panels: &[Vec<Vec<f64>>]) -> Result<(Vec<u8>, Layout), String> {
    let antennas = panels.len();
    let times = panels.first().map_or(0, |p| p.len());
    let subs = panels
        .iter()
        .flat_map(|p| p.iter().map(|r| r.len()))
        .max()
        .unwrap_or(0);
    if antennas == 0 || times == 0 || subs == 0 {
        return Err("nothing to draw: no frames with CSI".into());
    }
    let columns = times.min(MAX_COLUMNS);
    let cell_w = (1200 / columns as u32).clamp(1, 8);
    let cell_h = (600 / (antennas * subs) as u32).clamp(1, 8);
    let gap = 6;
    let width = columns as u32 * cell_w;
    let height = antennas as u32 * (subs as u32 * cell_h) + (antennas as u32 - 1) * gap;
    // Bin time into columns (mean of finite values) and find the shared scale.
    let binned: Vec<Vec<Vec<f64>>> = panels
        .iter()
        .map(|p| {
            (0..columns)
                .map(|c| {
                    let (lo, hi) = (
                        c * times / columns,
                        ((c + 1) * times / columns).max(c * times / columns + 1),
                    );
                    (0..subs)
                        .map(|s| {
                            let v: Vec<f64> = p[lo..hi.min(times)]
                                .iter()
                                .filter_map(|r| r.get(s).copied())
                                .filter(|v| v.is_finite())
                                .collect();
                            if v.is_empty() {
                                f64::NAN
                            } else {
                                v.iter().sum::<f64>() / v.len() as f64
                            }
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in binned.iter().flatten().flatten().filter(|v| v.is_finite()) {
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    let range = if hi > lo { hi - lo } else { 1.0 };
    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        for (a, panel) in binned.iter().enumerate() {
            let y_base = a as u32 * (subs as u32 * cell_h + gap);
            for (c, col) in panel.iter().enumerate() {
                for (s, v) in col.iter().enumerate() {
                    let x0 = (c as u32 * cell_w) as i32;
                    let y0 = (y_base + s as u32 * cell_h) as i32;
                    let rect = Rectangle::new(
                        [(x0, y0), (x0 + cell_w as i32, y0 + cell_h as i32)],
                        colour((v - lo) / range).filled(),
                    );
                    root.draw(&rect).map_err(|e| e.to_string())?;
                }
            }
        }
        root.present().map_err(|e| e.to_string())?;
    }
    let layout = Layout {
        width,
        height,
        columns,
        cell_w,
        cell_h,
        gap,
    };
    Ok((encode_png(width, height, &rgb), layout))
}

/// Encodes 8-bit RGB pixels as a PNG (the project-wide encoder).
pub use csipose_png::encode_rgb as encode_png;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
        let ihdr_crc = u32::from_be_bytes(png[29..33].try_into().unwrap());
        assert_eq!(ihdr_crc, crc32fast::hash(&png[12..29]));
        let len = u32::from_be_bytes(png[33..37].try_into().unwrap()) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&png[41..41 + len])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw.len(), h as usize * (1 + 3 * w as usize));
        (w, h, raw)
    }

    #[test]
    fn heatmap_cells_take_the_scaled_colour() {
        // 2 antennas, 3 times, 2 subcarriers; min 0 at (ant 0, t 0, s 0), max 10 at (ant 1, t 2, s 1).
        let panels = vec![
            vec![vec![0.0, 5.0], vec![5.0, 5.0], vec![5.0, 5.0]],
            vec![vec![5.0, 5.0], vec![5.0, 5.0], vec![5.0, 10.0]],
        ];
        let (png, l) = render_png(&panels).unwrap();
        let (w, h, raw) = decode(&png);
        assert_eq!((w, h), (l.width, l.height));
        let px = |x: u32, y: u32| {
            let at = y as usize * (1 + 3 * w as usize) + 1 + 3 * x as usize;
            [raw[at], raw[at + 1], raw[at + 2]]
        };
        let c = |t: f64| {
            let RGBColor(r, g, b) = colour(t);
            [r, g, b]
        };
        assert_eq!(px(0, 0), c(0.0));
        assert_eq!(px(l.cell_w - 1, l.cell_h - 1), c(0.0));
        assert_eq!(px(l.cell_w, 0), c(0.5));
        let y_last = 2 * 2 * l.cell_h + l.gap - 1;
        assert_eq!(px(2 * l.cell_w, y_last), c(1.0));
    }

    #[test]
    fn empty_input_is_an_error() {
        assert!(render_png(&[]).is_err());
    }
}
