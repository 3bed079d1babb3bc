//! Accept/reject counters per format and per reason, as the server reports them.

use crate::frame::{CsiFrame, Format};
use crate::reject::{Reject, Rejected};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Counts of accepted frames per format and of refusals per (format, reason). A refusal
/// whose format was not recognised is counted under the format name `"unknown"`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    accepted: BTreeMap<Format, u64>,
    rejected: BTreeMap<(Option<Format>, Reject), u64>,
}

impl Counters {
    pub fn new() -> Self {
        Self::default()
    }
    /// Counts one decode outcome.
    pub fn count(&mut self, outcome: &Result<CsiFrame, Rejected>) {
        match outcome {
            Ok(f) => self.accept(f.format),
            Err(r) => self.reject(r.format, r.reason),
        }
    }
    pub fn accept(&mut self, format: Format) {
        *self.accepted.entry(format).or_default() += 1;
    }
    pub fn reject(&mut self, format: Option<Format>, reason: Reject) {
        *self.rejected.entry((format, reason)).or_default() += 1;
    }
    pub fn accepted(&self, format: Format) -> u64 {
        self.accepted.get(&format).copied().unwrap_or(0)
    }
    pub fn rejected(&self, format: Option<Format>, reason: Reject) -> u64 {
        self.rejected.get(&(format, reason)).copied().unwrap_or(0)
    }
    pub fn total_accepted(&self) -> u64 {
        self.accepted.values().sum()
    }
    /// Refusals, ignored types included.
    pub fn total_rejected(&self) -> u64 {
        self.rejected.values().sum()
    }
    /// Refusals that are [`Reject::IgnoredType`].
    pub fn total_ignored(&self) -> u64 {
        self.rejected
            .iter()
            .filter(|((_, r), _)| r.is_ignored())
            .map(|(_, n)| n)
            .sum()
    }
    /// Adds another set of counts.
    pub fn merge(&mut self, other: &Counters) {
        for (k, v) in &other.accepted {
            *self.accepted.entry(*k).or_default() += v;
        }
        for (k, v) in &other.rejected {
            *self.rejected.entry(*k).or_default() += v;
        }
    }
    /// `{"accepted": {format: n}, "rejected": {format|"unknown": {reason: n}},
    ///   "total_accepted": n, "total_rejected": n}`.
    pub fn to_json(&self) -> Value {
        let mut acc = Map::new();
        for (f, n) in &self.accepted {
            acc.insert(f.name().to_string(), json!(n));
        }
        let mut rej = Map::new();
        for ((f, r), n) in &self.rejected {
            let key = f.map(|f| f.name()).unwrap_or("unknown").to_string();
            let e = rej.entry(key).or_insert_with(|| json!({}));
            if let Some(m) = e.as_object_mut() {
                m.insert(r.reason().to_string(), json!(n));
            }
        }
        json!({
            "accepted": acc,
            "rejected": rej,
            "total_accepted": self.total_accepted(),
            "total_rejected": self.total_rejected(),
        })
    }
}
