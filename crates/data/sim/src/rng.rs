//! Deterministic random numbers: xoshiro256++ seeded through SplitMix64, with seeds derived
//! from (run seed, stream name, indices) so that every sequence has its own stream and the
//! output does not depend on how sequences are scheduled over threads.

/// SplitMix64 step: a good 64-bit mixer, used to seed and to derive stream seeds.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Derives a stream seed from a base seed, a stream tag and indices.
pub fn derive_seed(seed: u64, tag: &str, idx: &[u64]) -> u64 {
    let mut s = seed ^ 0x5EED_C51B_05E0_0000;
    let mut h = splitmix64(&mut s);
    for b in tag.bytes() {
        s ^= b as u64;
        h ^= splitmix64(&mut s);
    }
    for &i in idx {
        s = s.wrapping_add(i.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        h = h.rotate_left(17) ^ splitmix64(&mut s);
    }
    h
}

/// xoshiro256++ generator.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Rng { s }
    }

    /// A generator for the stream `tag` at `idx` under `seed` (see [`derive_seed`]).
    pub fn stream(seed: u64, tag: &str, idx: &[u64]) -> Self {
        Rng::new(derive_seed(seed, tag, idx))
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    #[inline]
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// Standard normal (Box–Muller, exact): for the few draws that shape subjects and motion.
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.f64();
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fast approximately normal draw for bulk receiver noise: the sum of four 16-bit
    /// uniforms (Irwin–Hall), centred and scaled to unit variance. Bounded at ±3.46σ;
    /// its kurtosis is 2.7 instead of 3, which does not matter for thermal noise on CSI.
    #[inline]
    pub fn fast_normal_f32(&mut self) -> f32 {
        let r = self.next_u64();
        let sum = (r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48);
        // Each term is uniform on {0..65535}: mean 32767.5, variance (65536^2 - 1) / 12.
        const MEAN: f32 = 4.0 * 32767.5;
        const INV_SD: f32 = 1.0 / 37837.23; // sqrt(4 * (65536^2 - 1) / 12)
        (sum as f32 - MEAN) * INV_SD
    }

    /// Uniform integer in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| Rng::stream(7, "x", &[1, 2]).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::stream(7, "x", &[1, 2]).next_u64(),
            Rng::stream(7, "x", &[2, 1]).next_u64()
        );
        assert_ne!(
            Rng::stream(7, "x", &[1]).next_u64(),
            Rng::stream(8, "x", &[1]).next_u64()
        );
        assert_ne!(
            Rng::stream(7, "x", &[1]).next_u64(),
            Rng::stream(7, "y", &[1]).next_u64()
        );
    }

    #[test]
    fn normal_draws_have_unit_moments() {
        let mut r = Rng::new(3);
        let n = 200_000;
        for fast in [false, true] {
            let (mut s, mut s2) = (0.0f64, 0.0f64);
            for _ in 0..n {
                let v = if fast {
                    r.fast_normal_f32() as f64
                } else {
                    r.normal()
                };
                s += v;
                s2 += v * v;
            }
            let mean = s / n as f64;
            let var = s2 / n as f64 - mean * mean;
            assert!(mean.abs() < 0.01, "mean {mean}");
            assert!((var - 1.0).abs() < 0.02, "var {var}");
        }
    }
}
