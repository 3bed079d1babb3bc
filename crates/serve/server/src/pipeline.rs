//! The inference thread: packets from the bounded [`Queue`] go, per node, through
//! 1. the subcarrier interpolation of `capture to-dataset`'s windowing
//!    ([`csipose_dataset::windows::resample_subcarriers`]) to the model's `S`, keeping the first
//!    `A` antennas (a node with fewer is skipped and counted);
//! 2. every `stride` packets, resampling by timestamp into the model's `P` window positions
//!    `window / P` apart ending at the newest packet ([`window_at_times`]; device timestamps
//!    when the format has them, else arrival times); a window with a gap over `max_gap` is
//!    skipped and counted;
//! 3. the shared MM-Fi preprocessing ([`preprocess_frame`]) and the `no_std` runtime's forward;
//! 4. with an activity head, every packet also goes to the head, in one of two ways:
//!    - a head that stores a window length (META decode `step_frames` > 0, `activity train
//!      --decode`) is run window by window exactly as `activity eval` / `activity stream`
//!      score it: the node's raw packets of the current window and of the stored `context`
//!      windows before it stay in a ring allocated once per node ([`Windowed`]; packets per
//!      window = `step_frames × stride`); at each window end a fresh [`FeatureStream`], the
//!      head's feature transforms and the model's whole-sequence forward (as `eval`'s) run
//!      over context + current packets, and its logits are the window's. With META adapt-norm the head's
//!      input normalisation is first set from the running mean and variance of every frame
//!      classified on this node so far, the current window's included ([`RunningNorm`]; the
//!      live analogue of `eval`'s per-session estimate: the first window is normalised on its
//!      own frames, the estimate settles as windows come). The window's probabilities make one
//!      step of the stored forward filter ([`ForwardFilter`]); the reported activity is the
//!      filtered one and stays until the next window end;
//!    - a head without a window length feeds the head's per-frame features ([`FeatureStream`])
//!      to one step of its KV-cache streamer per frame, the logits after every frame; a segment
//!      restarts when the cache is full; a stored decoding with `step_frames` 0 steps the
//!      filter every frame.
//!
//!    Everything (ring, statistics, filter) starts over when the node restarts or its layout
//!    changes, not when the clock goes back (the recording goes on).
//!
//! 5. the presence detector ([`PresenceDetector`], per node, on the first antenna's
//!    amplitudes) sees every packet; once calibrated, a window without a person gives a
//!    `pose` message with `presence: false` and no keypoints (never a made-up pose); while it
//!    calibrates, `presence` is `null` and the model's keypoints are sent.
//!
//! Each result is one `pose` message naming the model file and hash, published to the hub
//! with its receive-to-publish latency. When the queue overflows its oldest packets are
//! dropped (counted in `queue_dropped`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use csipose_dataset::preprocess::preprocess_frame;
use csipose_dataset::windows::{resample_subcarriers, window_at_times};
use csipose_presence::{Phase, PresenceConfig, PresenceDetector, Reading};
use csipose_runtime::{Runtime, OUTPUTS};
use csipose_temporal::features::{apply_transforms, FeatureKind, FeatureStream};
use csipose_temporal::model::{softmax, ActivityModel, RunningNorm, Streamer};
use csipose_temporal::sequence::ForwardFilter;
use serde_json::json;

use crate::decode::Packet;
use crate::model::{Activity, PoseModel};
use crate::{unix_now, Shared};

/// Frames one activity segment holds before its KV cache starts over.
pub const ACTIVITY_SEGMENT: usize = 512;
/// Most raw packets a node keeps for window-by-window activity classification (the stored
/// window and its context windows); a head that needs more is refused at start.
pub const ACTIVITY_RING_PACKETS: usize = 1 << 16;
/// Most packets kept per node for the window.
const HISTORY: usize = 4096;
/// The CSI preview goes out at most this often per node.
const CSI_PREVIEW_EVERY: Duration = Duration::from_millis(100);
/// Values in one CSI preview row.
const CSI_PREVIEW_VALUES: usize = 64;

/// The bounded packet queue between ingest and inference.
pub struct Queue {
    inner: Mutex<VecDeque<Packet>>,
    cv: Condvar,
    capacity: usize,
}

impl Queue {
    pub fn new(capacity: usize) -> Queue {
        Queue {
            inner: Mutex::new(VecDeque::with_capacity(capacity.min(65_536))),
            cv: Condvar::new(),
            capacity,
        }
    }

    /// Adds a packet; returns true when the oldest packet had to be dropped to make room.
    pub fn push(&self, p: Packet) -> bool {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = if q.len() >= self.capacity {
            q.pop_front();
            true
        } else {
            false
        };
        q.push_back(p);
        drop(q);
        self.cv.notify_one();
        dropped
    }

    /// The next packet, waiting up to `timeout`.
    pub fn pop(&self, timeout: Duration) -> Option<Packet> {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if q.is_empty() {
            q = self
                .cv
                .wait_timeout(q, timeout)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        q.pop_front()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn wake(&self) {
        self.cv.notify_all();
    }
}

/// A node's activity state: how it classifies, the latest probabilities, the frames they
/// were computed over, and the stored decoding's filter.
struct ActivityState<'m> {
    mode: Mode<'m>,
    probabilities: Option<Vec<f32>>,
    segment_frames: usize,
    /// The stored decoding: the forward filter and the filtered class and probabilities after
    /// its last step.
    decoder: Option<Decoder<'m>>,
}

/// How a node's activity is classified.
enum Mode<'m> {
    /// No stored window length: one growing KV-cache segment of per-frame features, the
    /// logits after every frame.
    Segment {
        features: FeatureStream,
        streamer: Streamer<'m>,
    },
    /// A stored window length: window by window, as the head was trained and evaluated.
    Windowed(Windowed),
}

/// Window-by-window classification: the node's raw packets of the current window and of the
/// head's stored `context` windows before it, in a ring allocated once; at each window end a
/// fresh [`FeatureStream`] and a fresh streamer run over context + current packets, and the
/// final logits are the window's. With META adapt-norm the head's input normalisation is the
/// running estimate over every frame classified so far on this node ([`RunningNorm`],
/// current window included), set on the node's own copy of the head before each window.
struct Windowed {
    /// Packets per window: `step_frames × stride`.
    per_window: usize,
    /// Windows the ring holds: context + 1.
    windows: usize,
    antennas: usize,
    subcarriers: usize,
    phase: bool,
    /// `windows × per_window` packets of `antennas × subcarriers` amplitudes (and, for
    /// amplitude-phase heads, of `2 × antennas × subcarriers` CSI values).
    amplitudes: Vec<f32>,
    csi: Vec<f32>,
    /// Packets taken so far.
    packets: u64,
    /// The window's sequence of feature frames (reused).
    frames: Vec<f32>,
    /// adapt-norm: the running statistics and the copy of the head they are written into.
    norm: Option<(RunningNorm, ActivityModel)>,
}

impl Windowed {
    fn new(act: &Activity, step_frames: usize, antennas: usize, subcarriers: usize) -> Self {
        let meta = act.model.meta.as_ref();
        let windows = meta.map_or(0, |m| m.context as usize) + 1;
        let per_window = step_frames * act.stride;
        let channels = antennas * subcarriers;
        let phase = act.kind == FeatureKind::AmplitudePhase;
        let dim = act.model.shape.input_dim;
        Windowed {
            per_window,
            windows,
            antennas,
            subcarriers,
            phase,
            amplitudes: vec![0.0; windows * per_window * channels],
            csi: vec![
                0.0;
                if phase {
                    2 * windows * per_window * channels
                } else {
                    0
                }
            ],
            packets: 0,
            frames: Vec::with_capacity(windows * step_frames * dim),
            norm: meta
                .is_some_and(|m| m.adapt_norm)
                .then(|| (RunningNorm::new(dim), act.model.clone())),
        }
    }

    /// Takes one packet (of the layout it was built for); at a window end returns the logits
    /// of the window with its context and the number of frames they were computed over.
    fn push(
        &mut self,
        act: &Activity,
        amplitudes: &[f32],
        csi: Option<&[f32]>,
    ) -> Option<Result<(Vec<f32>, usize), csipose_temporal::model::ModelError>> {
        let channels = self.antennas * self.subcarriers;
        let csi = match (self.phase, csi) {
            (true, Some(c)) if c.len() == 2 * channels => Some(c),
            (true, _) => return None,
            (false, _) => None,
        };
        if amplitudes.len() != channels {
            return None;
        }
        let cap = self.windows * self.per_window;
        let slot = (self.packets % cap as u64) as usize;
        self.amplitudes[slot * channels..(slot + 1) * channels].copy_from_slice(amplitudes);
        if let Some(c) = csi {
            self.csi[2 * slot * channels..2 * (slot + 1) * channels].copy_from_slice(c);
        }
        self.packets += 1;
        if !self.packets.is_multiple_of(self.per_window as u64) {
            return None;
        }
        // The window with up to `context` windows before it (fewer at the start).
        let done = (self.packets / self.per_window as u64) as usize;
        let n = done.min(self.windows) * self.per_window;
        let first = self.packets - n as u64;
        let mut features =
            FeatureStream::new(self.antennas, self.subcarriers, act.stride, self.phase);
        self.frames.clear();
        for k in 0..n as u64 {
            let slot = ((first + k) % cap as u64) as usize;
            let amps = &self.amplitudes[slot * channels..(slot + 1) * channels];
            let csi = self
                .phase
                .then(|| &self.csi[2 * slot * channels..2 * (slot + 1) * channels]);
            if let Some(frame) = features.push(amps, csi) {
                self.frames.extend_from_slice(&frame);
            }
        }
        let dim = act.model.shape.input_dim;
        apply_transforms(
            &mut self.frames,
            dim,
            self.antennas,
            self.subcarriers,
            act.model.head.transforms,
        );
        let model = match self.norm.as_mut() {
            Some((norm, copy)) => {
                norm.push(&self.frames);
                norm.apply(copy);
                &*copy
            }
            None => &act.model,
        };
        // The whole window at once, as `eval` classifies it.
        let count = self.frames.len() / dim;
        Some(model.logits(&self.frames).map(|logits| (logits, count)))
    }
}

/// The forward filter of a head that stores a decoding, on one node's window sequence.
struct Decoder<'m> {
    filter: ForwardFilter<'m>,
    /// Segment mode: feature frames per filter step (0: every frame) and frames since the
    /// last step.
    step_frames: usize,
    since: usize,
    /// After the last step: the filtered class and probabilities, and the window's own class.
    decoded: Option<(usize, Vec<f32>, usize)>,
}

impl<'m> Decoder<'m> {
    fn new(act: &'m Activity) -> Option<Self> {
        let d = act.model.meta.as_ref()?.decode.as_ref()?;
        Some(Decoder {
            filter: ForwardFilter::new(&d.transitions),
            step_frames: d.step_frames as usize,
            since: 0,
            decoded: None,
        })
    }

    /// Segment mode: one more feature frame whose probabilities are `probs`; a filter step
    /// when a window's worth of frames is complete.
    fn frame(&mut self, probs: &[f32]) {
        self.since += 1;
        if self.since < self.step_frames.max(1) {
            return;
        }
        self.since = 0;
        self.step(probs);
    }

    /// One filter step on a window's probabilities.
    fn step(&mut self, probs: &[f32]) {
        let class = self.filter.step(probs);
        let mut filtered = vec![0f32; probs.len()];
        self.filter.probabilities(&mut filtered);
        self.decoded = Some((class, filtered, csipose_temporal::model::argmax(probs)));
    }
}

/// One node's pipeline state.
struct NodeState<'m> {
    times: VecDeque<f64>,
    packets: VecDeque<Vec<f64>>,
    since: usize,
    /// Device timestamp (ns) of the node's first packet, when the format has them.
    device_origin: Option<u64>,
    last_time: f64,
    activity: Option<ActivityState<'m>>,
    /// Layout the activity state was built for; a change rebuilds it.
    activity_layout: (usize, usize),
    last_preview: Option<Instant>,
    presence: Option<PresenceDetector>,
    reading: Option<Reading>,
}

impl NodeState<'_> {
    fn new() -> Self {
        NodeState {
            times: VecDeque::new(),
            packets: VecDeque::new(),
            since: 0,
            device_origin: None,
            last_time: f64::NEG_INFINITY,
            activity: None,
            activity_layout: (0, 0),
            last_preview: None,
            presence: None,
            reading: None,
        }
    }
}

/// Runs until the server stops.
pub fn run(s: &Shared, pose: PoseModel, activity: Option<Activity>) {
    let mut consts = vec![0.0f32; pose.consts_len()];
    let rt = match pose.runtime(&mut consts) {
        Ok(rt) => rt,
        Err(e) => {
            // Checked at start; cannot happen unless memory changed under us.
            eprintln!("error: {e:#}");
            return;
        }
    };
    let mut scratch = vec![0.0f32; Runtime::scratch_len(rt.config())];
    let mut states: BTreeMap<u32, NodeState> = BTreeMap::new();
    let labels: Vec<String> = activity
        .as_ref()
        .map(|a| crate::model::activity_labels(&a.model, &s.cfg.activity_labels))
        .unwrap_or_default();
    while !s.stopping() {
        let Some(p) = s.queue.pop(Duration::from_millis(100)) else {
            continue;
        };
        let st = states.entry(p.node).or_insert_with(NodeState::new);
        if p.reset {
            *st = NodeState::new();
            s.stats.skip("node_restarted");
        }
        step(s, &rt, &mut scratch, activity.as_ref(), &labels, st, p);
    }
}

fn step<'m>(
    s: &Shared,
    rt: &Runtime,
    scratch: &mut [f32],
    activity: Option<&'m Activity>,
    labels: &[String],
    st: &mut NodeState<'m>,
    p: Packet,
) {
    let cfg = *rt.config();
    let (a, sub, pk) = (cfg.antennas, cfg.subcarriers, cfg.packets);
    if p.amplitudes.len() != p.antennas * p.subcarriers || p.subcarriers == 0 {
        s.stats.skip("bad_shape");
        return;
    }
    csi_preview(s, st, &p);
    if s.cfg.presence {
        presence_step(s, st, &p);
    }
    if let Some(act) = activity {
        activity_step(s, act, st, &p);
    }
    if p.antennas < a {
        s.stats.skip("too_few_antennas");
        return;
    }
    // Time of the packet in seconds.
    let t = match p.device_time_ns {
        Some(ns) => {
            let origin = *st.device_origin.get_or_insert(ns);
            if ns < origin {
                f64::NEG_INFINITY
            } else {
                (ns - origin) as f64 / 1e9
            }
        }
        None => p.received.duration_since(s.started).as_secs_f64(),
    };
    if t < st.last_time {
        // The clock went back without a sequence reset: start the window over.
        let mut fresh = NodeState::new();
        fresh.activity = st.activity.take();
        fresh.activity_layout = st.activity_layout;
        fresh.presence = st.presence.take();
        fresh.reading = st.reading.take();
        *st = fresh;
        s.stats.skip("time_went_back");
        return;
    }
    st.last_time = t;
    let mut row = Vec::with_capacity(a * sub);
    for ant in 0..a {
        let src: Vec<f64> = p.amplitudes[ant * p.subcarriers..(ant + 1) * p.subcarriers]
            .iter()
            .map(|&v| v as f64)
            .collect();
        row.extend(resample_subcarriers(&src, sub));
    }
    st.times.push_back(t);
    st.packets.push_back(row);
    st.since += 1;
    let dt = s.cfg.window_ms / 1e3 / pk as f64;
    let first_target = t - dt * (pk - 1) as f64;
    // Keep one packet at or before the first target, drop older ones.
    while st.times.len() > HISTORY || (st.times.len() >= 2 && st.times[1] <= first_target) {
        st.times.pop_front();
        st.packets.pop_front();
    }
    if st.since < s.cfg.stride || st.times[0] > first_target {
        return;
    }
    st.since = 0;
    let max_gap = s.cfg.max_gap_ms / 1e3;
    if st
        .times
        .iter()
        .zip(st.times.iter().skip(1))
        .any(|(x, y)| y - x > max_gap)
    {
        s.stats.skip("window_gap");
        return;
    }
    let targets: Vec<f64> = (0..pk).map(|k| first_target + dt * k as f64).collect();
    let times: Vec<f64> = st.times.iter().copied().collect();
    let rows: Vec<&[f64]> = st.packets.iter().map(|r| r.as_slice()).collect();
    let Some(mut frame) = window_at_times(&times, &rows, &targets) else {
        s.stats.skip("window_invalid");
        return;
    };
    if preprocess_frame(&mut frame, a, sub, pk).is_err() {
        s.stats.skip("preprocess_refused");
        return;
    }
    let x: Vec<f32> = frame.iter().map(|&v| v as f32).collect();
    let mut out = [0.0f32; OUTPUTS];
    let t0 = Instant::now();
    if rt.forward(&x, scratch, &mut out).is_err() {
        s.stats.skip("forward_failed");
        return;
    }
    crate::stats::Stats::record_latency(&s.stats.inference_time, t0.elapsed().as_micros() as u64);
    // The models output positions only; a per-joint confidence would be made up.
    let keypoints: Vec<serde_json::Value> = out
        .chunks_exact(2)
        .map(|xy| json!([xy[0], xy[1], null]))
        .collect();
    let (presence, presence_json) = match st.reading {
        Some(r) => (
            (r.phase == Phase::Running).then_some(r.present),
            json!({"phase": r.phase.name(), "motion": r.motion, "ratio": r.ratio, "confidence": r.confidence}),
        ),
        None => (None, serde_json::Value::Null),
    };
    // Nobody there: no skeleton.
    let keypoints = if presence == Some(false) {
        serde_json::Value::Null
    } else {
        serde_json::Value::Array(keypoints)
    };
    // Nobody there: no activity either (the head would classify the empty room's noise).
    let act = st
        .activity
        .as_ref()
        .filter(|_| presence != Some(false))
        .and_then(|as_| match &as_.decoder {
            // Decoded: the filtered class, once the first window is complete.
            Some(d) => d.decoded.as_ref().map(|(best, probs, window)| {
                json!({
                    "label": labels.get(*best),
                    "index": best,
                    "probabilities": probs,
                    "labels": labels,
                    "frames": as_.segment_frames,
                    "decode": "forward",
                    "window_index": window,
                })
            }),
            None => as_.probabilities.as_ref().map(|probs| {
                let best = csipose_temporal::model::argmax(probs);
                json!({
                    "label": labels.get(best),
                    "index": best,
                    "probabilities": probs,
                    "labels": labels,
                    "frames": as_.segment_frames,
                    "decode": "none",
                    "window_index": best,
                })
            }),
        });
    let now = Instant::now();
    let latency_us = now.duration_since(p.received).as_micros() as u64;
    let msg = json!({
        "v": 1,
        "type": "pose",
        "node": p.node,
        "seq": p.seq,
        "time": unix_now(),
        "received": p.received_unix,
        "device_time_ns": p.device_time_ns,
        "window": {"packets": pk, "span_ms": s.cfg.window_ms, "antennas": a, "subcarriers": sub},
        "keypoints": keypoints,
        "layout": "coco17-2d",
        "presence": presence,
        "presence_detector": presence_json,
        "activity": act,
        "latency_us": latency_us,
        "model": s.pose_model.json(),
        "activity_model": s.activity_model.as_ref().map(|m| m.json()),
    });
    mqtt_publish(s, p.node, p.seq, &msg, st.reading.as_ref());
    crate::stats::Stats::record_latency(&s.stats.publish_latency, latency_us);
    s.stats.with(|c| {
        c.inferences += 1;
        c.poses += 1;
    });
    s.hub.publish_pose(p.node, msg, p.received);
}

/// The MQTT node id of a node.
pub fn mqtt_node(node: u32) -> Option<csipose_mqtt::NodeId> {
    csipose_mqtt::NodeId::new(&format!("node-{node}")).ok()
}

/// Pose (when there is one), activity and presence (once calibrated) of one message to MQTT.
fn mqtt_publish(
    s: &Shared,
    node: u32,
    seq: Option<u64>,
    msg: &serde_json::Value,
    reading: Option<&Reading>,
) {
    let guard = s.mqtt.lock().unwrap_or_else(|e| e.into_inner());
    let (Some(publ), Some(id)) = (guard.as_ref(), mqtt_node(node)) else {
        return;
    };
    let time = msg["time"].as_f64().unwrap_or(0.0);
    let seq = seq.unwrap_or(0);
    // Publishing only queues; a full queue replaces or drops (counted by the publisher).
    if let Some(kp) = msg["keypoints"].as_array() {
        let mut keypoints = [[0.0f32; 3]; 17];
        for (k, v) in keypoints.iter_mut().zip(kp) {
            // No per-joint confidence from the model: NaN, which is JSON null.
            *k = [
                v[0].as_f64().unwrap_or(f64::NAN) as f32,
                v[1].as_f64().unwrap_or(f64::NAN) as f32,
                f32::NAN,
            ];
        }
        let _ = publ.pose(
            &id,
            &csipose_mqtt::PoseMessage {
                seq,
                time_unix_s: time,
                keypoints,
                model_file: s.pose_model.file.clone(),
                model_hash: format!("sha256:{}", s.pose_model.sha256),
            },
        );
    }
    if let Some(act) = msg["activity"].as_object() {
        let labels = act["labels"].as_array().cloned().unwrap_or_default();
        let probs = act["probabilities"].as_array().cloned().unwrap_or_default();
        let _ = publ.activity(
            &id,
            &csipose_mqtt::ActivityMessage {
                seq,
                time_unix_s: time,
                label: act["label"].as_str().unwrap_or_default().to_string(),
                decode: act["decode"].as_str().map(str::to_string),
                probabilities: labels
                    .iter()
                    .zip(&probs)
                    .map(|(l, p)| {
                        (
                            l.as_str().unwrap_or_default().to_string(),
                            p.as_f64().unwrap_or(0.0) as f32,
                        )
                    })
                    .collect(),
            },
        );
    }
    if let Some(r) = reading.filter(|r| r.phase == Phase::Running) {
        let _ = publ.presence(
            &id,
            &csipose_mqtt::PresenceMessage {
                time_unix_s: time,
                present: r.present,
                motion: r.motion,
                confidence: r.confidence,
            },
        );
    }
}

fn presence_step(s: &Shared, st: &mut NodeState, p: &Packet) {
    let n = p.subcarriers;
    if st.presence.as_ref().is_some_and(|d| d.subcarriers() != n) {
        // The layout changed: calibrate again.
        st.presence = None;
        st.reading = None;
    }
    if st.presence.is_none() {
        match PresenceDetector::new(n, PresenceConfig::default()) {
            Ok(d) => st.presence = Some(d),
            Err(_) => {
                s.stats.skip("presence_unavailable");
                return;
            }
        }
    }
    if let Some(d) = st.presence.as_mut() {
        st.reading = Some(d.push_amplitudes(&p.amplitudes[..n]));
    }
}

fn activity_step<'m>(s: &Shared, act: &'m Activity, st: &mut NodeState<'m>, p: &Packet) {
    let layout = (p.antennas, p.subcarriers);
    let phase = act.kind == FeatureKind::AmplitudePhase;
    if st.activity.is_none() || st.activity_layout != layout {
        st.activity = None;
        st.activity_layout = layout;
        let features = FeatureStream::new(p.antennas, p.subcarriers, act.stride, phase);
        if features.dim() != act.model.shape.input_dim {
            s.stats.skip("activity_layout_mismatch");
            return;
        }
        let window = window_frames(act);
        let mode = if window > 0 {
            Mode::Windowed(Windowed::new(act, window, p.antennas, p.subcarriers))
        } else {
            let Ok(streamer) = act.model.streamer(ACTIVITY_SEGMENT) else {
                s.stats.skip("activity_failed");
                return;
            };
            Mode::Segment { features, streamer }
        };
        st.activity = Some(ActivityState {
            mode,
            probabilities: None,
            segment_frames: 0,
            decoder: Decoder::new(act),
        });
    }
    let Some(state) = st.activity.as_mut() else {
        return;
    };
    if phase && p.csi.is_none() {
        s.stats.skip("activity_needs_complex_csi");
        return;
    }
    let (features, streamer) = match &mut state.mode {
        Mode::Windowed(w) => {
            match w.push(act, &p.amplitudes, p.csi.as_deref()) {
                None => {}
                Some(Ok((logits, frames))) => {
                    let probs = softmax(&logits);
                    if let Some(d) = state.decoder.as_mut() {
                        d.step(&probs);
                    }
                    state.probabilities = Some(probs);
                    state.segment_frames = frames;
                }
                Some(Err(_)) => s.stats.skip("activity_failed"),
            }
            return;
        }
        Mode::Segment { features, streamer } => (features, streamer),
    };
    let Some(frame) = features.push(&p.amplitudes, p.csi.as_deref()) else {
        return;
    };
    if streamer.frames() >= ACTIVITY_SEGMENT {
        // The KV cache is full: a new segment (features and cache) starts here.
        match act.model.streamer(ACTIVITY_SEGMENT) {
            Ok(fresh) => *streamer = fresh,
            Err(_) => {
                s.stats.skip("activity_failed");
                return;
            }
        }
        *features = FeatureStream::new(p.antennas, p.subcarriers, act.stride, phase);
        state.segment_frames = 0;
        // The filter goes on (the recording does); its window starts with the new segment.
        if let Some(d) = state.decoder.as_mut() {
            d.since = 0;
        }
        s.stats.skip("activity_segment_restart");
        return;
    }
    match streamer.push(&frame) {
        Ok(logits) => {
            let probs = softmax(&logits);
            if let Some(d) = state.decoder.as_mut() {
                d.frame(&probs);
            }
            state.probabilities = Some(probs);
            state.segment_frames += 1;
        }
        Err(_) => s.stats.skip("activity_failed"),
    }
}

/// The head's stored window length in feature frames (META decode `step_frames`), 0 when the
/// file stores none.
fn window_frames(act: &Activity) -> usize {
    act.model
        .meta
        .as_ref()
        .and_then(|m| m.decode.as_ref())
        .map_or(0, |d| d.step_frames as usize)
}

/// At most [`CSI_PREVIEW_EVERY`] per node: the first antenna's amplitudes, averaged down to
/// at most [`CSI_PREVIEW_VALUES`] values.
fn csi_preview(s: &Shared, st: &mut NodeState, p: &Packet) {
    let now = Instant::now();
    if st
        .last_preview
        .is_some_and(|t| now.duration_since(t) < CSI_PREVIEW_EVERY)
    {
        return;
    }
    if !s.hub.wants_csi() {
        return;
    }
    st.last_preview = Some(now);
    let row = &p.amplitudes[..p.subcarriers];
    let groups = row.len().min(CSI_PREVIEW_VALUES);
    let values: Vec<f32> = (0..groups)
        .map(|g| {
            let (lo, hi) = (g * row.len() / groups, (g + 1) * row.len() / groups);
            let part = &row[lo..hi.max(lo + 1)];
            let m = part.iter().sum::<f32>() / part.len() as f32;
            (m * 100.0).round() / 100.0
        })
        .collect();
    let msg = json!({
        "v": 1, "type": "csi", "node": p.node, "seq": p.seq, "time": p.received_unix,
        "antenna": 0, "subcarriers": p.subcarriers, "amplitudes": values,
    });
    s.hub.publish_csi(p.node, msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u64) -> Packet {
        Packet {
            node: 1,
            format: "test",
            seq: Some(seq),
            device_time_ns: None,
            rssi: None,
            antennas: 1,
            subcarriers: 1,
            amplitudes: vec![1.0],
            csi: None,
            received: Instant::now(),
            received_unix: 0.0,
            reset: false,
        }
    }

    #[test]
    fn a_full_queue_drops_its_oldest_packets() {
        let q = Queue::new(3);
        let dropped: Vec<bool> = (0..5).map(|i| q.push(packet(i))).collect();
        assert_eq!(dropped, [false, false, false, true, true]);
        let left: Vec<u64> = std::iter::from_fn(|| q.pop(Duration::ZERO))
            .map(|p| p.seq.unwrap())
            .collect();
        assert_eq!(left, [2, 3, 4]);
        assert!(q.is_empty());
    }
}
