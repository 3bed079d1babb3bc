//! `--preview`: a PNG of one simulated sequence. Left, the preprocessed CSI amplitude as a
//! heatmap (rows: antenna × subcarrier, antennas stacked top to bottom; columns: packets over
//! time, left to right); right, the COCO-17 skeleton in the camera image at four frames, each
//! drawn in the colour of the matching time marker on the heatmap.

use crate::sequence::Sequence;
use csipose_png::encode_rgb;
use plotters::prelude::*;

/// A perceptually ordered colour map (dark blue → teal → yellow), t in [0, 1].
fn colormap(t: f64) -> RGBColor {
    let stops = [
        (0.0, (68.0, 1.0, 84.0)),
        (0.25, (59.0, 82.0, 139.0)),
        (0.5, (33.0, 145.0, 140.0)),
        (0.75, (94.0, 201.0, 98.0)),
        (1.0, (253.0, 231.0, 37.0)),
    ];
    let t = t.clamp(0.0, 1.0);
    for w in stops.windows(2) {
        let ((t0, c0), (t1, c1)) = (w[0], w[1]);
        if t <= t1 {
            let u = (t - t0) / (t1 - t0);
            let l = |a: f64, b: f64| (a + (b - a) * u) as u8;
            return RGBColor(l(c0.0, c1.0), l(c0.1, c1.1), l(c0.2, c1.2));
        }
    }
    RGBColor(253, 231, 37)
}

const MARKERS: [RGBColor; 4] = [
    RGBColor(230, 60, 60),
    RGBColor(250, 150, 30),
    RGBColor(60, 170, 240),
    RGBColor(240, 80, 220),
];

/// Renders the preview of `seq` (dims `[A, S, P]` per frame) as PNG bytes.
pub fn render(seq: &Sequence, antennas: usize, subcarriers: usize, packets: usize) -> Vec<u8> {
    let (w, h) = (1400u32, 620u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    let frames = seq.y2d.len() / 34;
    let fl = antennas * subcarriers * packets;
    assert!(frames > 0 && seq.x.len() == frames * fl, "sequence shape");
    let shown: Vec<usize> = (0..4).map(|i| (2 * i + 1) * frames / 8).collect();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).expect("draw");
        let (left, right) = root.split_horizontally(820);
        // Heatmap: 20-pixel margin, plot 780 × 580.
        let (x0, y0, pw, ph) = (20i32, 20i32, 780i32, 580i32);
        let rows = antennas * subcarriers;
        let cols = frames * packets;
        for px in 0..pw {
            let c = (px as usize * cols) / pw as usize;
            let (f, p) = (c / packets, c % packets);
            for py in 0..ph {
                let r = (py as usize * rows) / ph as usize;
                let v = seq.x[f * fl + r * packets + p];
                left.draw_pixel((x0 + px, y0 + py), &colormap(v as f64))
                    .expect("draw");
            }
        }
        // Antenna separators and time markers.
        for a in 1..antennas {
            let y = y0 + (a * ph as usize / antennas) as i32;
            left.draw(&PathElement::new(
                vec![(x0, y), (x0 + pw, y)],
                WHITE.stroke_width(2),
            ))
            .expect("draw");
        }
        for (i, &f) in shown.iter().enumerate() {
            let x = x0 + ((f * packets) * pw as usize / cols) as i32;
            left.draw(&PathElement::new(
                vec![(x, y0 - 12), (x, y0 + ph + 12)],
                MARKERS[i].stroke_width(3),
            ))
            .expect("draw");
        }
        // Skeletons: 2 × 2 panels showing the 640 × 480 image scaled down.
        let panels = right.split_evenly((2, 2));
        for (i, (panel, &f)) in panels.iter().zip(&shown).enumerate() {
            let (pw, ph) = panel.dim_in_pixel();
            let s = ((pw as f64 - 20.0) / 640.0).min((ph as f64 - 20.0) / 480.0);
            let (ox, oy) = (10.0, 10.0);
            panel
                .draw(&Rectangle::new(
                    [
                        (ox as i32, oy as i32),
                        ((ox + 640.0 * s) as i32, (oy + 480.0 * s) as i32),
                    ],
                    RGBColor(235, 235, 235).filled(),
                ))
                .expect("draw");
            panel
                .draw(&Rectangle::new(
                    [
                        (ox as i32, oy as i32),
                        ((ox + 640.0 * s) as i32, (oy + 480.0 * s) as i32),
                    ],
                    MARKERS[i].stroke_width(3),
                ))
                .expect("draw");
            let kp = &seq.pixels[f * 34..(f + 1) * 34];
            let at = |j: usize| ((ox + kp[2 * j] * s) as i32, (oy + kp[2 * j + 1] * s) as i32);
            for (a, b) in csipose_spec::coco::DRAWN_BONES {
                panel
                    .draw(&PathElement::new(vec![at(a), at(b)], BLACK.stroke_width(3)))
                    .expect("draw");
            }
            for j in 0..17 {
                let c = if j >= 5 && j % 2 == 1 {
                    RGBColor(40, 90, 220) // left side
                } else if j >= 5 {
                    RGBColor(220, 50, 50) // right side
                } else {
                    RGBColor(40, 160, 60) // face
                };
                panel
                    .draw(&Circle::new(at(j), 4, c.filled()))
                    .expect("draw");
            }
        }
        root.present().expect("draw");
    }
    encode_rgb(w, h, &buf)
}
