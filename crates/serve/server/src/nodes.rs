//! Per-node bookkeeping from the packets themselves: a node is its node id; the source
//! address that first claimed it is kept and any other address claiming the same id is
//! counted as a conflict (with a warning). Packet rate is measured from arrival times over
//! the last two seconds (never assumed); loss comes from sequence gaps, duplicates and
//! reordering from sequences at or before the last one, a reboot from a large backwards jump
//! (the sequence restarting). A node is `fresh` until 3 s without packets, then `stale`, and
//! `offline` after 10 s.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Without packets for this long, a node is stale.
pub const STALE: Duration = Duration::from_secs(3);
/// Without packets for this long, a node is offline.
pub const OFFLINE: Duration = Duration::from_secs(10);
/// Window of arrival times for the measured rate.
pub const RATE_WINDOW: Duration = Duration::from_secs(2);
/// A backwards sequence jump larger than this is a reboot, a smaller one reordering.
pub const REBOOT_JUMP: u64 = 64;
/// A forward gap larger than this is counted as a restart, not as lost packets.
pub const MAX_GAP: u64 = 100_000;
/// Most nodes tracked; packets of further node ids are rejected.
pub const MAX_NODES: usize = 256;

/// What a new packet means for its node's sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqEvent {
    /// First packet, in order, or no sequence number.
    InOrder,
    /// `n` packets missing before this one.
    Gap(u64),
    /// Same sequence as the last one.
    Duplicate,
    /// Earlier than the last one (by a little).
    Reordered,
    /// The sequence restarted: the node rebooted.
    Reboot,
}

/// One node's state.
#[derive(Debug)]
pub struct Node {
    pub id: u32,
    pub addr: Option<SocketAddr>,
    pub other_addrs: Vec<SocketAddr>,
    pub format: &'static str,
    pub first_seen: Instant,
    pub last_seen: Instant,
    pub last_seen_unix: f64,
    arrivals: VecDeque<Instant>,
    pub packets: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub reboots: u64,
    pub conflicts: u64,
    pub last_seq: Option<u64>,
    pub session: Option<u32>,
    pub rssi: Option<i32>,
    pub antennas: usize,
    pub subcarriers: usize,
}

impl Node {
    /// Packets per second over the last [`RATE_WINDOW`], from arrival times: the packets
    /// after the oldest one in the window over the time from it to `now` (so a node that
    /// stops decays to 0 instead of keeping its last rate).
    pub fn rate_hz(&self, now: Instant) -> f64 {
        let mut recent = self
            .arrivals
            .iter()
            .filter(|t| now.saturating_duration_since(**t) <= RATE_WINDOW);
        let Some(first) = recent.next() else {
            return 0.0;
        };
        let n = recent.count();
        let span = now.saturating_duration_since(*first).as_secs_f64();
        if n == 0 || span <= 0.0 {
            return 0.0;
        }
        n as f64 / span
    }

    /// Lost / (received + lost).
    pub fn loss(&self) -> f64 {
        let total = self.packets + self.lost;
        if total == 0 {
            0.0
        } else {
            self.lost as f64 / total as f64
        }
    }

    pub fn status(&self, now: Instant) -> &'static str {
        let quiet = now.duration_since(self.last_seen);
        if quiet >= OFFLINE {
            "offline"
        } else if quiet >= STALE {
            "stale"
        } else {
            "fresh"
        }
    }

    pub fn json(&self, now: Instant) -> serde_json::Value {
        serde_json::json!({
            "node": self.id,
            "addr": self.addr.map(|a| a.to_string()),
            "conflicting_addrs": self.other_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "format": self.format,
            "status": self.status(now),
            "rate_hz": (self.rate_hz(now) * 100.0).round() / 100.0,
            "packets": self.packets,
            "lost": self.lost,
            "loss": self.loss(),
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "reboots": self.reboots,
            "conflicts": self.conflicts,
            "last_seq": self.last_seq,
            "rssi": self.rssi,
            "layout": {"antennas": self.antennas, "subcarriers": self.subcarriers},
            "last_seen": self.last_seen_unix,
            "last_seen_ago_s": now.duration_since(self.last_seen).as_secs_f64(),
        })
    }
}

/// All nodes, by id.
#[derive(Debug, Default)]
pub struct NodeTable {
    pub nodes: BTreeMap<u32, Node>,
}

/// What [`NodeTable::observe`] says about one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    pub seq: SeqEvent,
    /// The packet came from another address than the node's first one.
    pub conflict: bool,
}

/// Everything [`NodeTable::observe`] needs from one packet.
pub struct Seen {
    pub node: u32,
    pub addr: Option<SocketAddr>,
    pub format: &'static str,
    pub seq: Option<u64>,
    /// Stream session (live frames): a new one means the sender restarted.
    pub session: Option<u32>,
    pub rssi: Option<i32>,
    pub antennas: usize,
    pub subcarriers: usize,
    pub at: Instant,
    pub at_unix: f64,
}

impl NodeTable {
    /// Records one packet; `None` when the table is full and `node` is new (the caller
    /// rejects the packet).
    pub fn observe(&mut self, s: &Seen) -> Option<Observation> {
        if !self.nodes.contains_key(&s.node) && self.nodes.len() >= MAX_NODES {
            return None;
        }
        let n = self.nodes.entry(s.node).or_insert_with(|| Node {
            id: s.node,
            addr: s.addr,
            other_addrs: Vec::new(),
            format: s.format,
            first_seen: s.at,
            last_seen: s.at,
            last_seen_unix: s.at_unix,
            arrivals: VecDeque::new(),
            packets: 0,
            lost: 0,
            duplicates: 0,
            reordered: 0,
            reboots: 0,
            conflicts: 0,
            last_seq: None,
            session: s.session,
            rssi: None,
            antennas: s.antennas,
            subcarriers: s.subcarriers,
        });
        let mut conflict = false;
        if let (Some(a), Some(first)) = (s.addr, n.addr) {
            if a != first {
                conflict = true;
                n.conflicts += 1;
                if !n.other_addrs.contains(&a) && n.other_addrs.len() < 8 {
                    eprintln!(
                        "warning: node {} claimed by {a} as well as by {first}",
                        s.node
                    );
                    n.other_addrs.push(a);
                }
            }
        }
        let new_session = s.session.is_some() && n.session.is_some() && s.session != n.session;
        if s.session.is_some() {
            n.session = s.session;
        }
        let seq = match (s.seq, n.last_seq) {
            _ if new_session => SeqEvent::Reboot,
            (None, _) | (_, None) => SeqEvent::InOrder,
            (Some(q), Some(last)) if q == last => SeqEvent::Duplicate,
            (Some(q), Some(last)) if q > last => {
                let gap = q - last - 1;
                if gap == 0 {
                    SeqEvent::InOrder
                } else if gap > MAX_GAP {
                    SeqEvent::Reboot
                } else {
                    SeqEvent::Gap(gap)
                }
            }
            (Some(q), Some(last)) => {
                if last - q > REBOOT_JUMP {
                    SeqEvent::Reboot
                } else {
                    SeqEvent::Reordered
                }
            }
        };
        match seq {
            SeqEvent::Gap(g) => n.lost += g,
            SeqEvent::Duplicate => n.duplicates += 1,
            SeqEvent::Reordered => {
                n.reordered += 1;
                // A late packet was counted as lost when the gap opened.
                n.lost = n.lost.saturating_sub(1);
            }
            SeqEvent::Reboot => n.reboots += 1,
            SeqEvent::InOrder => {}
        }
        if !matches!(seq, SeqEvent::Duplicate | SeqEvent::Reordered) {
            if let Some(q) = s.seq {
                n.last_seq = Some(q);
            }
        }
        n.packets += 1;
        n.format = s.format;
        n.last_seen = s.at;
        n.last_seen_unix = s.at_unix;
        if s.rssi.is_some() {
            n.rssi = s.rssi;
        }
        n.antennas = s.antennas;
        n.subcarriers = s.subcarriers;
        n.arrivals.push_back(s.at);
        while n.arrivals.len() > 4096
            || n.arrivals
                .front()
                .is_some_and(|t| s.at.duration_since(*t) > RATE_WINDOW)
        {
            n.arrivals.pop_front();
        }
        Some(Observation { seq, conflict })
    }

    pub fn json(&self, now: Instant) -> serde_json::Value {
        serde_json::Value::Array(self.nodes.values().map(|n| n.json(now)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(node: u32, seq: u64, at: Instant, port: u16) -> Seen {
        Seen {
            node,
            addr: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            format: "test",
            seq: Some(seq),
            session: None,
            rssi: Some(-40),
            antennas: 1,
            subcarriers: 64,
            at,
            at_unix: 0.0,
        }
    }

    #[test]
    fn loss_duplicates_reorder_reboot_conflict_and_rate() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut t = NodeTable::default();
        let ev = |t: &mut NodeTable, seq: u64, m: u64, port: u16| {
            t.observe(&seen(1, seq, ms(m), port)).unwrap()
        };
        assert_eq!(ev(&mut t, 10, 0, 1).seq, SeqEvent::InOrder);
        assert_eq!(ev(&mut t, 11, 10, 1).seq, SeqEvent::InOrder);
        assert_eq!(ev(&mut t, 14, 20, 1).seq, SeqEvent::Gap(2));
        assert_eq!(ev(&mut t, 14, 30, 1).seq, SeqEvent::Duplicate);
        assert_eq!(ev(&mut t, 13, 40, 1).seq, SeqEvent::Reordered);
        assert_eq!(ev(&mut t, 15, 50, 1).seq, SeqEvent::InOrder);
        assert_eq!(
            ev(&mut t, 0, 60, 1).seq,
            SeqEvent::Reordered,
            "15 -> 0 is a small step back"
        );
        let o = ev(&mut t, 1000, 70, 2);
        assert_eq!(o.seq, SeqEvent::Gap(984));
        assert!(o.conflict);
        let n = &t.nodes[&1];
        assert_eq!(n.duplicates, 1);
        assert_eq!(n.reordered, 2);
        assert_eq!(n.lost, 984);
        assert_eq!(n.conflicts, 1);
        assert_eq!(ev(&mut t, 3, 80, 1).seq, SeqEvent::Reboot);
        assert_eq!(t.nodes[&1].reboots, 1);
        // 9 packets 10 ms apart: 100 Hz measured.
        let mut t = NodeTable::default();
        for i in 0..9u64 {
            t.observe(&seen(2, i, ms(i * 10), 1)).unwrap();
        }
        let r = t.nodes[&2].rate_hz(ms(80));
        assert!((r - 100.0).abs() < 1e-6, "{r}");
        assert_eq!(t.nodes[&2].status(ms(80)), "fresh");
        assert_eq!(t.nodes[&2].status(ms(80 + 3000)), "stale");
        assert_eq!(t.nodes[&2].status(ms(80 + 10_000)), "offline");
        // Quiet for 0.72 s: the same 8 intervals over 0.8 s.
        let r = t.nodes[&2].rate_hz(ms(800));
        assert!((r - 10.0).abs() < 1e-6, "{r}");
        assert_eq!(t.nodes[&2].rate_hz(ms(80 + 3000)), 0.0);
    }
}
