//! numpy's legacy random generator, bit-exact: MT19937 with `RandomState.seed` seeding
//! (`init_genrand` for an integer seed, `init_by_array` for an array seed) and the
//! legacy `permutation`/`shuffle` (Fisher-Yates from the end, bounded integers by
//! masked rejection sampling of 32-bit draws, numpy's `random_interval`).

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// The Mersenne Twister MT19937 as numpy's `RandomState` runs it.
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; N],
    pos: usize,
}

impl Mt19937 {
    /// `np.random.seed(seed)` for an integer seed (numpy's `mt19937_seed`, i.e. `init_genrand`).
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, pos: N }
    }

    /// `np.random.seed(array)` (numpy's `mt19937_init_by_array`, the reference `init_by_array`).
    pub fn from_array(key: &[u32]) -> Self {
        let mut mt = Mt19937::new(19_650_218);
        let st = &mut mt.state;
        let mut i = 1usize;
        let mut j = 0usize;
        let len = key.len();
        let mut k = N.max(len);
        while k > 0 {
            let prev = st[i - 1];
            st[i] = (st[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key.get(j).copied().unwrap_or(0))
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                st[0] = st[N - 1];
                i = 1;
            }
            if j >= len {
                j = 0;
            }
            k -= 1;
        }
        k = N - 1;
        while k > 0 {
            let prev = st[i - 1];
            st[i] =
                (st[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                st[0] = st[N - 1];
                i = 1;
            }
            k -= 1;
        }
        st[0] = 0x8000_0000;
        mt.pos = N;
        mt
    }

    fn generate(&mut self) {
        let st = &mut self.state;
        for kk in 0..N {
            let y = (st[kk] & UPPER_MASK) | (st[(kk + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            st[kk] = st[(kk + M) % N] ^ (y >> 1) ^ mag;
        }
        self.pos = 0;
    }

    /// The next 32-bit output (`genrand_int32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= N {
            self.generate();
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A uniform integer in `[0, max]` exactly as numpy's legacy `random_interval`
    /// (smallest all-ones mask >= max, then redraw 32-bit values until `value & mask <= max`).
    pub fn interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        mask |= mask >> 1;
        mask |= mask >> 2;
        mask |= mask >> 4;
        mask |= mask >> 8;
        mask |= mask >> 16;
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// numpy's legacy `shuffle` of a 1-d array: for i from n-1 down to 1, swap i with
    /// `interval(i)`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.interval(i as u32) as usize;
            items.swap(i, j);
        }
    }

    /// `np.random.permutation(n)` after seeding.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        self.shuffle(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_first_outputs() {
        // The reference implementation's default seed 5489: first output 3499211612.
        let mut mt = Mt19937::new(5489);
        assert_eq!(mt.next_u32(), 3_499_211_612);
        // mt19937ar.out (init_by_array {0x123, 0x234, 0x345, 0x456}): first outputs.
        let mut mt = Mt19937::from_array(&[0x123, 0x234, 0x345, 0x456]);
        let first: Vec<u32> = (0..5).map(|_| mt.next_u32()).collect();
        assert_eq!(
            first,
            [
                1_067_595_299,
                955_945_823,
                477_289_528,
                4_107_218_783,
                4_228_976_476
            ]
        );
    }

    #[test]
    fn numpy_seed0_permutation10() {
        // np.random.seed(0); np.random.permutation(10)
        let mut mt = Mt19937::new(0);
        assert_eq!(mt.permutation(10), [2, 8, 4, 9, 1, 6, 7, 3, 0, 5]);
    }

    #[test]
    fn numpy_seed42_permutation10() {
        // np.random.seed(42); np.random.permutation(10)
        let mut mt = Mt19937::new(42);
        assert_eq!(mt.permutation(10), [8, 1, 5, 0, 7, 2, 9, 4, 3, 6]);
    }

    #[test]
    fn numpy_seed0_first_u32() {
        // The reference C implementation after init_genrand(0) (also std::mt19937(0)).
        let mut mt = Mt19937::new(0);
        assert_eq!(mt.next_u32(), 2_357_136_044);
    }

    #[test]
    fn interval_stays_in_range() {
        let mut mt = Mt19937::new(7);
        for max in [1u32, 2, 3, 5, 39, 1000, u32::MAX] {
            for _ in 0..200 {
                assert!(mt.interval(max) <= max);
            }
        }
    }
}
