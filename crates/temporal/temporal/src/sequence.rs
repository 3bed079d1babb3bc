//! Sequence decoding of per-window class probabilities: a first-order transition model between
//! activity classes, learned from the label order of training recordings, and two decoders —
//! offline Viterbi (the most likely class sequence of a whole recording) and the online forward
//! filter (each window's most likely class given the windows so far; what a live stream can
//! use). The classifier's probabilities stand in for the emission likelihoods (the hybrid
//! classifier/HMM form: each window's score is ln p(class | window)).

/// Pseudo-count added to every transition and start count (keeps every path possible).
pub const DEFAULT_PSEUDO_COUNT: f64 = 0.1;
/// Probabilities are floored here before their logarithm.
const FLOOR: f64 = 1e-30;

/// How a recording's per-window probabilities become classes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Decode {
    /// Each window by itself (argmax of its probabilities).
    #[default]
    None,
    /// Forward filter: causal, each window's class given the windows up to it.
    Forward,
    /// Viterbi: the most likely class sequence of the whole recording (offline).
    Viterbi,
}

impl Decode {
    pub fn name(self) -> &'static str {
        match self {
            Decode::None => "none",
            Decode::Forward => "forward",
            Decode::Viterbi => "viterbi",
        }
    }
}

impl std::str::FromStr for Decode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Decode::None),
            "forward" => Ok(Decode::Forward),
            "viterbi" => Ok(Decode::Viterbi),
            _ => Err(format!("decode: {s:?} is not none, forward or viterbi")),
        }
    }
}

/// A first-order transition model over `n_classes` classes, as natural logarithms.
#[derive(Clone, Debug, PartialEq)]
pub struct Transitions {
    pub n_classes: usize,
    /// ln P(a recording starts in class i).
    pub log_start: Vec<f32>,
    /// ln P(next window's class = j | this window's class = i) at `[i * n_classes + j]`.
    pub log_next: Vec<f32>,
}

impl Transitions {
    /// Counts starts and window-to-window transitions of the label `sequences` (one per
    /// recording, windows in time order) plus `pseudo` on every entry, normalised per row.
    pub fn fit<'a>(
        sequences: impl IntoIterator<Item = &'a [usize]>,
        n_classes: usize,
        pseudo: f64,
    ) -> Result<Self, String> {
        if n_classes == 0 {
            return Err("a transition model needs at least one class".into());
        }
        if !(pseudo > 0.0 && pseudo.is_finite()) {
            return Err(format!("pseudo-count {pseudo} must be positive"));
        }
        let n = n_classes;
        let mut start = vec![pseudo; n];
        let mut next = vec![pseudo; n * n];
        for seq in sequences {
            if let Some(&bad) = seq.iter().find(|&&c| c >= n) {
                return Err(format!("label {bad} is not below {n} classes"));
            }
            if let Some(&first) = seq.first() {
                start[first] += 1.0;
            }
            for w in seq.windows(2) {
                next[w[0] * n + w[1]] += 1.0;
            }
        }
        let log_norm = |row: &[f64]| -> Vec<f32> {
            let s: f64 = row.iter().sum();
            row.iter().map(|&c| (c / s).ln() as f32).collect()
        };
        Ok(Transitions {
            n_classes: n,
            log_start: log_norm(&start),
            log_next: next.chunks_exact(n).flat_map(log_norm).collect(),
        })
    }

    /// Checks a model read from outside (a file): sizes, finite values, and every row (and the
    /// start) a probability distribution to within 1e-3.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.n_classes;
        if n == 0 || self.log_start.len() != n || self.log_next.len() != n * n {
            return Err(format!(
                "{} start and {} transition values for {n} classes",
                self.log_start.len(),
                self.log_next.len()
            ));
        }
        if !is_log_distribution(&self.log_start) {
            return Err("the start probabilities are not a distribution".into());
        }
        if let Some(i) = self
            .log_next
            .chunks_exact(n)
            .position(|r| !is_log_distribution(r))
        {
            return Err(format!("transition row {i} is not a distribution"));
        }
        Ok(())
    }

    /// Classes of one recording's windows from their class probabilities (`probs[t]` has
    /// `n_classes` entries), by `decode`.
    pub fn decode(&self, probs: &[Vec<f32>], decode: Decode) -> Vec<usize> {
        match decode {
            Decode::None => probs.iter().map(|p| argmax(p)).collect(),
            Decode::Viterbi => self.viterbi(probs),
            Decode::Forward => {
                let mut f = ForwardFilter::new(self);
                probs.iter().map(|p| f.step(p)).collect()
            }
        }
    }

    /// The most likely class sequence: max over paths of ln start + Σ ln next + Σ ln p(class |
    /// window); ties go to the lower class.
    pub fn viterbi(&self, probs: &[Vec<f32>]) -> Vec<usize> {
        let n = self.n_classes;
        let Some(first) = probs.first() else {
            return Vec::new();
        };
        let mut score: Vec<f64> = (0..n)
            .map(|j| self.log_start[j] as f64 + ln(first[j]))
            .collect();
        let mut back = vec![0usize; probs.len() * n];
        let mut fresh = vec![0f64; n];
        for (t, p) in probs.iter().enumerate().skip(1) {
            for j in 0..n {
                let mut best = (f64::NEG_INFINITY, 0);
                for (i, s) in score.iter().enumerate() {
                    let v = s + self.log_next[i * n + j] as f64;
                    if v > best.0 {
                        best = (v, i);
                    }
                }
                back[t * n + j] = best.1;
                fresh[j] = best.0 + ln(p[j]);
            }
            std::mem::swap(&mut score, &mut fresh);
        }
        let mut path = vec![argmax_f64(&score)];
        for t in (1..probs.len()).rev() {
            let here = *path.last().expect("path starts non-empty");
            path.push(back[t * n + here]);
        }
        path.reverse();
        path
    }
}

/// The online forward filter: after each window, the class with the highest probability given
/// every window so far. No allocation after [`ForwardFilter::new`].
#[derive(Clone, Debug)]
pub struct ForwardFilter<'a> {
    model: &'a Transitions,
    /// ln P(class, windows so far), shifted so its largest entry is 0.
    alpha: Vec<f64>,
    scratch: Vec<f64>,
    started: bool,
}

impl<'a> ForwardFilter<'a> {
    pub fn new(model: &'a Transitions) -> Self {
        ForwardFilter {
            model,
            alpha: vec![0.0; model.n_classes],
            scratch: vec![0.0; model.n_classes],
            started: false,
        }
    }

    /// Forgets the windows seen (a new recording starts).
    pub fn reset(&mut self) {
        self.started = false;
    }

    /// Takes one window's class probabilities (`n_classes` of them) and returns the filtered
    /// class.
    pub fn step(&mut self, probs: &[f32]) -> usize {
        let m = self.model;
        let n = m.n_classes;
        debug_assert_eq!(probs.len(), n, "one probability per class");
        if !self.started {
            for ((a, &s), &p) in self.alpha.iter_mut().zip(&m.log_start).zip(probs) {
                *a = s as f64 + ln(p);
            }
            self.started = true;
        } else {
            let alpha = &self.alpha;
            for (j, (out, &p)) in self.scratch.iter_mut().zip(probs).enumerate() {
                let terms = alpha
                    .iter()
                    .enumerate()
                    .map(|(i, a)| a + m.log_next[i * n + j] as f64);
                *out = log_sum_exp(terms) + ln(p);
            }
            std::mem::swap(&mut self.alpha, &mut self.scratch);
        }
        let top = self.alpha.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if top.is_finite() {
            self.alpha.iter_mut().for_each(|a| *a -= top);
        }
        argmax_f64(&self.alpha)
    }

    /// The filtered class probabilities after the last step (all zero before the first).
    pub fn probabilities(&self, out: &mut [f32]) {
        if !self.started {
            out.iter_mut().for_each(|o| *o = 0.0);
            return;
        }
        let total: f64 = self.alpha.iter().map(|a| a.exp()).sum();
        for (o, a) in out.iter_mut().zip(&self.alpha) {
            *o = (a.exp() / total) as f32;
        }
    }
}

/// Whether `row` holds the natural logarithms of a probability distribution: every value
/// finite and at most 0, their exponentials summing to 1 within 1e-3.
pub fn is_log_distribution(row: &[f32]) -> bool {
    row.iter().all(|v| v.is_finite() && *v <= 0.0)
        && (row.iter().map(|&v| (v as f64).exp()).sum::<f64>() - 1.0).abs() < 1e-3
}

fn ln(p: f32) -> f64 {
    (p as f64).max(FLOOR).ln()
}

fn log_sum_exp(v: impl Iterator<Item = f64> + Clone) -> f64 {
    let top = v.clone().fold(f64::NEG_INFINITY, f64::max);
    if !top.is_finite() {
        return top;
    }
    top + v.map(|x| (x - top).exp()).sum::<f64>().ln()
}

fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = i;
        }
    }
    best
}

fn argmax_f64(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use csipose_rng::Rng;

    fn random_probs(rng: &mut Rng, t: usize, n: usize) -> Vec<Vec<f32>> {
        (0..t)
            .map(|_| {
                let raw: Vec<f32> = (0..n).map(|_| rng.uniform() as f32 + 1e-3).collect();
                let s: f32 = raw.iter().sum();
                raw.iter().map(|r| r / s).collect()
            })
            .collect()
    }

    fn path_score(m: &Transitions, probs: &[Vec<f32>], path: &[usize]) -> f64 {
        let n = m.n_classes;
        let mut s = m.log_start[path[0]] as f64 + ln(probs[0][path[0]]);
        for t in 1..path.len() {
            s += m.log_next[path[t - 1] * n + path[t]] as f64 + ln(probs[t][path[t]]);
        }
        s
    }

    #[test]
    fn fit_counts_starts_and_transitions() {
        let seqs: Vec<Vec<usize>> = vec![vec![0, 0, 1, 2], vec![0, 1, 1]];
        let m = Transitions::fit(seqs.iter().map(Vec::as_slice), 3, 0.5).unwrap();
        m.validate().unwrap();
        // Starts: class 0 twice → (2.5, 0.5, 0.5) / 3.5.
        assert!((m.log_start[0] as f64 - (2.5f64 / 3.5).ln()).abs() < 1e-6);
        // From 0: 0→0 once, 0→1 twice → (1.5, 2.5, 0.5) / 4.5.
        assert!((m.log_next[1] as f64 - (2.5f64 / 4.5).ln()).abs() < 1e-6);
        // From 2: never left → uniform.
        assert!((m.log_next[2 * 3 + 1] as f64 - (1.0f64 / 3.0).ln()).abs() < 1e-6);
        assert!(Transitions::fit([[0usize, 3].as_slice()], 3, 0.1).is_err());
        assert!(Transitions::fit([[0usize].as_slice()], 3, 0.0).is_err());
    }

    /// Viterbi's path is the best of all paths, by exhaustive search.
    #[test]
    fn viterbi_finds_the_best_path() {
        let mut rng = Rng::new(7);
        for trial in 0..20 {
            let (n, t) = (3, 6);
            let seqs: Vec<Vec<usize>> = (0..4)
                .map(|_| (0..5).map(|_| rng.below(n)).collect())
                .collect();
            let m = Transitions::fit(seqs.iter().map(Vec::as_slice), n, 0.3).unwrap();
            let probs = random_probs(&mut rng, t, n);
            let got = m.viterbi(&probs);
            let mut best = f64::NEG_INFINITY;
            for code in 0..n.pow(t as u32) {
                let path: Vec<usize> = (0..t).map(|k| code / n.pow(k as u32) % n).collect();
                best = best.max(path_score(&m, &probs, &path));
            }
            let s = path_score(&m, &probs, &got);
            assert!((s - best).abs() < 1e-9, "trial {trial}: {s} vs {best}");
        }
    }

    /// The forward filter's class is the argmax of the brute-force filtered marginal.
    #[test]
    fn forward_filter_matches_brute_force_marginals() {
        let mut rng = Rng::new(11);
        let (n, t) = (3, 5);
        let seqs: Vec<Vec<usize>> = (0..3)
            .map(|_| (0..6).map(|_| rng.below(n)).collect())
            .collect();
        let m = Transitions::fit(seqs.iter().map(Vec::as_slice), n, 0.2).unwrap();
        let probs = random_probs(&mut rng, t, n);
        let mut f = ForwardFilter::new(&m);
        let mut out = vec![0f32; n];
        for step in 0..t {
            let got = f.step(&probs[step]);
            f.probabilities(&mut out);
            // Marginal of the last class over all paths of length step + 1.
            let mut marg = vec![0f64; n];
            let len = step + 1;
            for code in 0..n.pow(len as u32) {
                let path: Vec<usize> = (0..len).map(|k| code / n.pow(k as u32) % n).collect();
                marg[path[len - 1]] += path_score(&m, &probs[..len], &path).exp();
            }
            let total: f64 = marg.iter().sum();
            for j in 0..n {
                assert!((out[j] as f64 - marg[j] / total).abs() < 1e-5);
            }
            assert_eq!(got, argmax_f64(&marg));
        }
        f.reset();
        assert_eq!(f.step(&probs[0]), {
            let s: Vec<f64> = (0..n)
                .map(|j| m.log_start[j] as f64 + ln(probs[0][j]))
                .collect();
            argmax_f64(&s)
        });
    }

    /// A strict left-to-right grammar repairs isolated window errors that `None` keeps.
    #[test]
    fn a_learned_grammar_repairs_isolated_errors() {
        let truth = [0usize, 0, 0, 1, 1, 1, 2, 2, 2];
        let m = Transitions::fit([truth.as_slice()], 3, 0.01).unwrap();
        let mut probs: Vec<Vec<f32>> = truth
            .iter()
            .map(|&c| {
                let mut p = vec![0.2f32; 3];
                p[c] = 0.6;
                p
            })
            .collect();
        // One window early in the recording reads as class 2, which never follows class 0.
        probs[1] = vec![0.2, 0.2, 0.6];
        assert_ne!(m.decode(&probs, Decode::None), truth);
        assert_eq!(m.decode(&probs, Decode::Viterbi), truth);
        assert_eq!(m.decode(&probs, Decode::Forward)[..3], truth[..3]);
        assert_eq!("viterbi".parse::<Decode>(), Ok(Decode::Viterbi));
        assert!("hmm".parse::<Decode>().is_err());
    }

    #[test]
    fn validate_rejects_broken_models() {
        let m = Transitions::fit([[0usize, 1].as_slice()], 2, 0.1).unwrap();
        let mut bad = m.clone();
        bad.log_next[0] = 0.5;
        assert!(bad.validate().is_err());
        let mut bad = m.clone();
        bad.log_start[1] = f32::NAN;
        assert!(bad.validate().is_err());
        let mut bad = m;
        bad.log_next.pop();
        assert!(bad.validate().is_err());
    }
}
