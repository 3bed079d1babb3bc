//! What a reader read but did not yield as a frame, counted by reason: records of other
//! kinds (not CSI), CSI of another bandwidth than asked for, undecodable records, a
//! truncated last record. Every reader keeps one [`Skips`]; callers print it, so nothing
//! is left out without a word.

use crate::error::{CaptureError, ErrorKind};
use std::collections::BTreeMap;
use std::fmt;

/// Reason for a record whose bytes end before its announced length (the last one).
pub const TRUNCATED: &str = "truncated last record";
/// Reason counted once when a fatal error ends the stream (nothing after it is read).
pub const UNREADABLE: &str = "fatal error (the rest of the input is unread)";

/// Counts per reason. Reasons are plural noun phrases ("records with code 0xc1 (not
/// CSI)"), so `"{count} {reason}"` reads as a sentence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Skips {
    counts: BTreeMap<String, u64>,
}

impl Skips {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one more record left out for `reason`.
    pub fn add(&mut self, reason: &str) {
        self.add_n(reason, 1);
    }

    /// Counts `n` more records left out for `reason`.
    pub fn add_n(&mut self, reason: &str, n: u64) {
        if n == 0 {
            return;
        }
        match self.counts.get_mut(reason) {
            Some(c) => *c += n,
            None => {
                self.counts.insert(reason.to_string(), n);
            }
        }
    }

    /// Counts an error a reader yields: [`TRUNCATED`], [`UNREADABLE`], or `invalid` (the
    /// reader's reason for a record it could not decode).
    pub(crate) fn add_error(&mut self, e: &CaptureError, invalid: &str) {
        match e.kind {
            ErrorKind::Truncated { .. } => self.add(TRUNCATED),
            ErrorKind::Fatal(_) | ErrorKind::Io(_) => self.add(UNREADABLE),
            ErrorKind::Invalid(_) => self.add(invalid),
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Skips) {
        for (r, n) in other.iter() {
            self.add_n(r, n);
        }
    }

    /// How many were left out for exactly this reason.
    pub fn count(&self, reason: &str) -> u64 {
        self.counts.get(reason).copied().unwrap_or(0)
    }

    /// How many were left out, all reasons together.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// `(reason, count)` in reason order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.counts.iter().map(|(r, &n)| (r.as_str(), n))
    }
}

/// `3 records with code 0xc1 (not CSI); 1 truncated last record`, or `nothing`.
impl fmt::Display for Skips {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.counts.is_empty() {
            return f.write_str("nothing");
        }
        for (i, (r, n)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{n} {r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_merge_and_print() {
        let mut a = Skips::new();
        assert_eq!(a.to_string(), "nothing");
        a.add("blank lines");
        a.add("blank lines");
        a.add_n("records of code 0x01", 0);
        let mut b = Skips::new();
        b.add_n("records of code 0x01", 3);
        a.merge(&b);
        assert_eq!(a.count("blank lines"), 2);
        assert_eq!(a.total(), 5);
        assert_eq!(a.to_string(), "2 blank lines; 3 records of code 0x01");
    }
}
