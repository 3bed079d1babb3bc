//! Server-wide counters and latency measurements: datagrams and lines received, decoded per
//! format, rejected per reason, packets dropped by the bounded inference queue and skipped by
//! the pipeline per reason, poses published, and receive-to-publish / receive-to-send latency
//! percentiles over the most recent samples. Every count here appears in `/metrics` and
//! `/api/v1/status`; the invariant `received = decoded + rejected` holds for datagrams and lines.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Latency samples kept for the percentiles.
pub const LATENCY_WINDOW: usize = 8192;

/// A ring of the most recent latency samples (microseconds).
#[derive(Debug)]
pub struct LatencyRing {
    samples: Vec<u32>,
    next: usize,
    total: u64,
}

impl Default for LatencyRing {
    fn default() -> Self {
        LatencyRing {
            samples: Vec::with_capacity(LATENCY_WINDOW),
            next: 0,
            total: 0,
        }
    }
}

impl LatencyRing {
    pub fn push(&mut self, us: u64) {
        let v = us.min(u32::MAX as u64) as u32;
        if self.samples.len() < LATENCY_WINDOW {
            self.samples.push(v);
        } else {
            self.samples[self.next] = v;
        }
        self.next = (self.next + 1) % LATENCY_WINDOW;
        self.total += 1;
    }

    /// (p50, p99, max) in microseconds over the window, `None` before the first sample.
    pub fn percentiles(&self) -> Option<(u32, u32, u32)> {
        if self.samples.is_empty() {
            return None;
        }
        let mut s = self.samples.clone();
        s.sort_unstable();
        let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
        Some((at(0.5), at(0.99), *s.last().expect("non-empty")))
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

/// Counters, under one lock (the ingest thread is the main writer).
#[derive(Debug, Default)]
pub struct Counters {
    pub datagrams: u64,
    pub lines: u64,
    pub decoded: BTreeMap<&'static str, u64>,
    pub rejected: BTreeMap<String, u64>,
    /// Packets dropped from the inference queue because inference fell behind (oldest first).
    pub queue_dropped: u64,
    /// Packets or windows the pipeline skipped, per reason.
    pub skipped: BTreeMap<&'static str, u64>,
    pub poses: u64,
    pub inferences: u64,
    /// Datagrams written to the recording.
    pub recorded: u64,
}

/// Counters and latency rings.
#[derive(Debug, Default)]
pub struct Stats {
    pub counters: Mutex<Counters>,
    /// Receive of the window's last packet to the pose message being ready.
    pub publish_latency: Mutex<LatencyRing>,
    /// Receive of the window's last packet to the message written to a WebSocket client.
    pub send_latency: Mutex<LatencyRing>,
    /// Time of one pose forward pass alone.
    pub inference_time: Mutex<LatencyRing>,
}

impl Stats {
    pub fn with<R>(&self, f: impl FnOnce(&mut Counters) -> R) -> R {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut c)
    }

    pub fn skip(&self, reason: &'static str) {
        self.with(|c| *c.skipped.entry(reason).or_default() += 1);
    }

    pub fn latency(ring: &Mutex<LatencyRing>) -> Option<(u32, u32, u32)> {
        ring.lock().unwrap_or_else(|e| e.into_inner()).percentiles()
    }

    pub fn record_latency(ring: &Mutex<LatencyRing>, us: u64) {
        ring.lock().unwrap_or_else(|e| e.into_inner()).push(us);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_over_the_window() {
        let mut r = LatencyRing::default();
        assert!(r.percentiles().is_none());
        for v in 1..=100 {
            r.push(v);
        }
        let (p50, p99, max) = r.percentiles().unwrap();
        assert_eq!((p50, p99, max), (51, 99, 100));
        for _ in 0..LATENCY_WINDOW {
            r.push(7);
        }
        assert_eq!(r.percentiles().unwrap(), (7, 7, 7));
        assert_eq!(r.total(), 100 + LATENCY_WINDOW as u64);
    }
}
