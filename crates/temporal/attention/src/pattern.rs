//! The sparse attention pattern: which tokens and which block landmarks a query visits.
//!
//! Causal query `i` (it sees tokens `0..=i`):
//! - the local window `i - window ..= i`;
//! - the global token 0;
//! - the log-stride lookback `i - 1, i - 2, i - 4, ...`;
//! - block landmarks: with `c = (i + 1) / block_size` completed blocks, blocks `c - 1 - d` for
//!   `d` in `0, 1, 2, 4, 8, ...` (the last completed block, the one before it, and those a
//!   power of two further back).
//!
//! Non-causal query `i` in a sequence of `n` tokens: the window `i - window ..= i + window`,
//! token 0, lookback and lookahead `i -/+ 1, 2, 4, ...`, and the landmarks of the full blocks
//! `b - 1 - d` and `b + 1 + d` around the query's block `b`, plus `b` itself when it is full.
//!
//! Tokens are visited once each (sorted, deduplicated). A landmark whose block lies entirely
//! inside the local window is dropped, since its tokens are already attended exactly; so when the
//! window covers the whole sequence the sparse output equals dense attention.

use crate::AttentionConfig;

/// The items one query attends to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pattern {
    /// Token indices, ascending, no duplicates.
    pub tokens: Vec<usize>,
    /// Landmark block indices, no duplicates.
    pub blocks: Vec<usize>,
}

/// Offsets `0, 1, 2, 4, 8, ...` below `limit`.
pub(crate) fn power_offsets(limit: usize) -> impl Iterator<Item = usize> {
    std::iter::once(0usize)
        .chain(std::iter::successors(Some(1usize), |d| d.checked_mul(2)))
        .take_while(move |&d| d < limit)
}

/// Fills `out` with query `i`'s sparse pattern in a sequence of `n` tokens (for a causal
/// configuration only `i` matters: tokens after `i` are never visited).
pub fn sparse_pattern(cfg: &AttentionConfig, i: usize, n: usize, out: &mut Pattern) {
    out.tokens.clear();
    out.blocks.clear();
    let bs = cfg.block_size;
    let lo = i.saturating_sub(cfg.window);
    let hi = if cfg.causal {
        i
    } else {
        i.saturating_add(cfg.window).min(n.saturating_sub(1))
    };
    // Tokens before the window: the lookback (descending), token 0, then reversed to ascending.
    let mut stride = 1usize;
    while stride <= i {
        let j = i - stride;
        if j < lo {
            out.tokens.push(j);
        }
        stride = match stride.checked_mul(2) {
            Some(s) => s,
            None => break,
        };
    }
    if lo > 0 && out.tokens.last() != Some(&0) {
        out.tokens.push(0);
    }
    out.tokens.reverse();
    out.tokens.extend(lo..=hi);
    if !cfg.causal {
        let mut stride = 1usize;
        while let Some(j) = i.checked_add(stride) {
            if j >= n {
                break;
            }
            if j > hi {
                out.tokens.push(j);
            }
            stride = match stride.checked_mul(2) {
                Some(s) => s,
                None => break,
            };
        }
    }
    let inside_window = |b: usize| b * bs >= lo && (b + 1) * bs - 1 <= hi;
    if cfg.causal {
        let completed = (i + 1) / bs;
        for d in power_offsets(completed) {
            let b = completed - 1 - d;
            if !inside_window(b) {
                out.blocks.push(b);
            }
        }
    } else {
        let full = n / bs;
        let own = i / bs;
        for d in power_offsets(own) {
            let b = own - 1 - d;
            if !inside_window(b) {
                out.blocks.push(b);
            }
        }
        if own < full && !inside_window(own) {
            out.blocks.push(own);
        }
        for d in power_offsets(full.saturating_sub(own + 1)) {
            let b = own + 1 + d;
            if !inside_window(b) {
                out.blocks.push(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(window: usize, block_size: usize, causal: bool) -> AttentionConfig {
        AttentionConfig {
            window,
            block_size,
            causal,
            ..AttentionConfig::default()
        }
    }

    #[test]
    fn causal_pattern_by_hand() {
        let mut p = Pattern::default();
        sparse_pattern(&cfg(2, 4, true), 40, 100, &mut p);
        // window 38..=40, token 0, lookback 39 38 36 32 24 8 (40-32).
        assert_eq!(p.tokens, vec![0, 8, 24, 32, 36, 38, 39, 40]);
        // 41 tokens -> 10 completed blocks (0..=9): 9, 8, 7, 5, 1.
        assert_eq!(p.blocks, vec![9, 8, 7, 5, 1]);
    }

    #[test]
    fn non_causal_pattern_by_hand() {
        let mut p = Pattern::default();
        sparse_pattern(&cfg(1, 4, false), 9, 20, &mut p);
        // window 8..=10, token 0, lookback 8 7 5 1, lookahead 10 11 13 17.
        assert_eq!(p.tokens, vec![0, 1, 5, 7, 8, 9, 10, 11, 13, 17]);
        // own block 2, full blocks 0..=4: before 1, 0; own 2; after 3, 4.
        assert_eq!(p.blocks, vec![1, 0, 2, 3, 4]);
    }

    #[test]
    fn wide_window_visits_every_token_and_no_landmark() {
        let mut p = Pattern::default();
        for causal in [true, false] {
            for i in 0..50 {
                sparse_pattern(&cfg(64, 8, causal), i, 50, &mut p);
                let expected: Vec<usize> = if causal {
                    (0..=i).collect()
                } else {
                    (0..50).collect()
                };
                assert_eq!(p.tokens, expected);
                assert!(p.blocks.is_empty());
            }
        }
    }

    #[test]
    fn tokens_sorted_unique_and_visible() {
        let mut p = Pattern::default();
        for causal in [true, false] {
            for i in 0..300 {
                sparse_pattern(&cfg(5, 7, causal), i, 300, &mut p);
                assert!(p.tokens.windows(2).all(|w| w[0] < w[1]), "{:?}", p.tokens);
                assert!(p.tokens.iter().all(|&j| j < 300 && (!causal || j <= i)));
                assert!(p.tokens.contains(&0) && p.tokens.contains(&i));
                let mut b = p.blocks.clone();
                b.sort();
                b.dedup();
                assert_eq!(b.len(), p.blocks.len());
                assert!(p
                    .blocks
                    .iter()
                    .all(|&b| (b + 1) * 7 <= if causal { i + 1 } else { 300 }));
            }
        }
    }
}
