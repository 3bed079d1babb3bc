//! What csipose publishes: the topic layout, the payload types the server fills (pose, activity,
//! presence, link statistics) with their JSON encoding, and the Home Assistant discovery
//! configurations (one HA device per node). The wire formats are documented in FORMATS.md,
//! section "MQTT".

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::json;

/// Payload of the availability topic while the publisher is connected.
pub const ONLINE: &str = "online";
/// Payload of the availability topic after a clean shutdown, and of the last will.
pub const OFFLINE: &str = "offline";
/// Number of keypoints in a pose (COCO-17 order).
pub const KEYPOINTS: usize = 17;

/// Why a name cannot be used in a topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("node id {0:?}: must be 1 to 64 characters from A-Z a-z 0-9 _ -")]
    NodeId(String),
    #[error(
        "topic prefix {0:?}: must be non-empty, without +, #, NUL, or a leading or trailing /"
    )]
    Prefix(String),
}

/// A node's identifier, safe as one topic level and as a Home Assistant object id:
/// 1–64 characters from `A-Z a-z 0-9 _ -`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(String);

impl NodeId {
    pub fn new(id: &str) -> Result<NodeId, NameError> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(NodeId(id.to_string()))
        } else {
            Err(NameError::NodeId(id.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a topic prefix (base topic or discovery prefix).
pub fn check_prefix(p: &str) -> Result<(), NameError> {
    let ok = !p.is_empty()
        && !p.starts_with('/')
        && !p.ends_with('/')
        && !p.contains(['+', '#', '\0'])
        && p.len() <= 1024;
    if ok {
        Ok(())
    } else {
        Err(NameError::Prefix(p.to_string()))
    }
}

/// The topic layout: `<base>/<node>/{pose,activity,presence,stats}`, `<base>/status` for
/// availability, and `<discovery>/<component>/csipose_<node>/<object>/config` for Home Assistant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Default `csipose`.
    pub base: String,
    /// Home Assistant's discovery prefix, default `homeassistant`.
    pub discovery: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            base: "csipose".into(),
            discovery: "homeassistant".into(),
        }
    }
}

impl Topics {
    /// Checks both prefixes.
    pub fn check(&self) -> Result<(), NameError> {
        check_prefix(&self.base)?;
        check_prefix(&self.discovery)
    }
    /// `<base>/status`: `online` (retained) while connected, `offline` (retained last will, or
    /// published on clean shutdown) otherwise.
    pub fn availability(&self) -> String {
        format!("{}/status", self.base)
    }
    pub fn pose(&self, node: &NodeId) -> String {
        format!("{}/{node}/pose", self.base)
    }
    pub fn activity(&self, node: &NodeId) -> String {
        format!("{}/{node}/activity", self.base)
    }
    pub fn presence(&self, node: &NodeId) -> String {
        format!("{}/{node}/presence", self.base)
    }
    pub fn stats(&self, node: &NodeId) -> String {
        format!("{}/{node}/stats", self.base)
    }
    /// `<discovery>/status`, where Home Assistant announces `online` when it (re)starts.
    pub fn ha_status(&self) -> String {
        format!("{}/status", self.discovery)
    }
    /// `<discovery>/<component>/csipose_<node>/<object>/config`.
    pub fn discovery_config(&self, component: &str, node: &NodeId, object: &str) -> String {
        format!(
            "{}/{component}/csipose_{node}/{object}/config",
            self.discovery
        )
    }
}

/// One pose estimate of a node: 17 COCO-order keypoints in the model's coordinates (x, y
/// normalised to [0, 1] as in the packed dataset's `Y.npy`) with a confidence each.
#[derive(Debug, Clone, PartialEq)]
pub struct PoseMessage {
    /// The server's running frame number for this node.
    pub seq: u64,
    /// Unix time of the estimate, seconds.
    pub time_unix_s: f64,
    /// `[x, y, confidence]` per keypoint.
    pub keypoints: [[f32; 3]; KEYPOINTS],
    /// The model file's name (e.g. `micro-int8.csm`).
    pub model_file: String,
    /// The model file's content hash as the server reports it (e.g. `sha256:…`).
    pub model_hash: String,
}

/// The activity classifier's output for a node.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityMessage {
    pub seq: u64,
    pub time_unix_s: f64,
    /// The most probable class.
    pub label: String,
    /// `(class, probability)` for every class, in the classifier's class order.
    pub probabilities: Vec<(String, f32)>,
    /// How the class was made from the window sequence (`forward`: the forward filter of a
    /// stored transition model; `none`: the window by itself); not sent when `None`.
    pub decode: Option<String>,
}

/// Whether someone is in a node's field, and whether they move.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceMessage {
    pub time_unix_s: f64,
    pub present: bool,
    pub motion: bool,
    /// Confidence in `present`, 0–1.
    pub confidence: f32,
}

/// A node's CSI link statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsMessage {
    pub time_unix_s: f64,
    /// CSI packets per second over the server's rate window.
    pub packet_rate_hz: f64,
    /// CSI packets received from the node since the server started.
    pub packets: u64,
}

/// What a node looks like in Home Assistant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: NodeId,
    /// Device name shown in Home Assistant (defaults to the id).
    pub name: String,
    /// Device model shown in Home Assistant (e.g. `ESP32-S3 CSI node`).
    pub model: String,
}

impl NodeInfo {
    /// A node named by its id, model `csipose node`.
    pub fn new(id: NodeId) -> NodeInfo {
        NodeInfo {
            name: id.as_str().to_string(),
            id,
            model: "csipose node".into(),
        }
    }
}

struct Ordered<'a>(&'a [(String, f32)]);

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct ModelRef<'a> {
    file: &'a str,
    hash: &'a str,
}

#[derive(Serialize)]
struct PoseWire<'a> {
    seq: u64,
    time: f64,
    keypoints: &'a [[f32; 3]; KEYPOINTS],
    model: ModelRef<'a>,
}

#[derive(Serialize)]
struct ActivityWire<'a> {
    seq: u64,
    time: f64,
    label: &'a str,
    probabilities: Ordered<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decode: Option<&'a str>,
}

#[derive(Serialize)]
struct PresenceWire {
    time: f64,
    state: &'static str,
    motion: bool,
    confidence: f32,
}

#[derive(Serialize)]
struct StatsWire {
    time: f64,
    packet_rate_hz: f64,
    packets: u64,
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising these plain structs (string keys, numbers, strings) into a Vec cannot fail;
    // non-finite floats become `null`.
    serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec())
}

impl PoseMessage {
    /// `{"seq":…,"time":…,"keypoints":[[x,y,conf],…17],"model":{"file":…,"hash":…}}`
    pub fn to_json(&self) -> Vec<u8> {
        to_json(&PoseWire {
            seq: self.seq,
            time: self.time_unix_s,
            keypoints: &self.keypoints,
            model: ModelRef {
                file: &self.model_file,
                hash: &self.model_hash,
            },
        })
    }
}

impl ActivityMessage {
    /// `{"seq":…,"time":…,"label":…,"probabilities":{class:p,…},"decode":…}` (`decode` only
    /// when set)
    pub fn to_json(&self) -> Vec<u8> {
        to_json(&ActivityWire {
            seq: self.seq,
            time: self.time_unix_s,
            label: &self.label,
            probabilities: Ordered(&self.probabilities),
            decode: self.decode.as_deref(),
        })
    }
}

impl PresenceMessage {
    /// `{"time":…,"state":"present"|"absent","motion":bool,"confidence":…}`
    pub fn to_json(&self) -> Vec<u8> {
        to_json(&PresenceWire {
            time: self.time_unix_s,
            state: if self.present { "present" } else { "absent" },
            motion: self.motion,
            confidence: self.confidence,
        })
    }
}

impl StatsMessage {
    /// `{"time":…,"packet_rate_hz":…,"packets":…}`
    pub fn to_json(&self) -> Vec<u8> {
        to_json(&StatsWire {
            time: self.time_unix_s,
            packet_rate_hz: self.packet_rate_hz,
            packets: self.packets,
        })
    }
}

/// The retained Home Assistant discovery messages for one node, as `(topic, JSON payload)`:
/// binary_sensor presence (occupancy), binary_sensor motion, sensor activity, sensor packet
/// rate; all on one device and all with the availability topic.
pub fn discovery_configs(topics: &Topics, node: &NodeInfo) -> Vec<(String, Vec<u8>)> {
    let id = &node.id;
    let device = json!({
        "identifiers": [format!("csipose_{id}")],
        "name": node.name,
        "manufacturer": "csipose",
        "model": node.model,
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let common = |object: &str, name: &str| {
        json!({
            "name": name,
            "unique_id": format!("csipose_{id}_{object}"),
            "availability_topic": topics.availability(),
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device": device,
        })
    };
    let with = |mut base: serde_json::Value, extra: serde_json::Value| {
        if let (Some(b), serde_json::Value::Object(e)) = (base.as_object_mut(), extra) {
            b.extend(e);
        }
        base
    };
    let entries = [
        (
            "binary_sensor",
            "presence",
            with(
                common("presence", "Presence"),
                json!({
                    "device_class": "occupancy",
                    "state_topic": topics.presence(id),
                    "value_template": "{{ value_json.state }}",
                    "payload_on": "present",
                    "payload_off": "absent",
                }),
            ),
        ),
        (
            "binary_sensor",
            "motion",
            with(
                common("motion", "Motion"),
                json!({
                    "device_class": "motion",
                    "state_topic": topics.presence(id),
                    "value_template": "{{ 'ON' if value_json.motion else 'OFF' }}",
                    "payload_on": "ON",
                    "payload_off": "OFF",
                }),
            ),
        ),
        (
            "sensor",
            "activity",
            with(
                common("activity", "Activity"),
                json!({
                    "state_topic": topics.activity(id),
                    "value_template": "{{ value_json.label }}",
                    "json_attributes_topic": topics.activity(id),
                    "json_attributes_template": "{{ value_json.probabilities | tojson }}",
                    "icon": "mdi:run",
                }),
            ),
        ),
        (
            "sensor",
            "packet_rate",
            with(
                common("packet_rate", "Packet rate"),
                json!({
                    "state_topic": topics.stats(id),
                    "value_template": "{{ value_json.packet_rate_hz }}",
                    "unit_of_measurement": "packets/s",
                    "state_class": "measurement",
                    "entity_category": "diagnostic",
                    "icon": "mdi:wifi",
                }),
            ),
        ),
    ];
    entries
        .into_iter()
        .map(|(component, object, cfg)| {
            (
                topics.discovery_config(component, id, object),
                to_json(&cfg),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parse(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn node_ids_are_checked() {
        assert!(NodeId::new("esp32-kitchen_1").is_ok());
        for bad in ["", "a/b", "a+", "a#", "ä", "a b", &"x".repeat(65)] {
            assert!(NodeId::new(bad).is_err(), "{bad:?}");
        }
        assert!(check_prefix("home/csipose").is_ok());
        for bad in ["", "/a", "a/", "a/+", "#"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn payloads_have_the_documented_json() {
        let mut keypoints = [[0f32; 3]; KEYPOINTS];
        for (i, k) in keypoints.iter_mut().enumerate() {
            *k = [i as f32 / 20.0, 0.5, 0.9];
        }
        let pose = PoseMessage {
            seq: 7,
            time_unix_s: 1_765_000_000.25,
            keypoints,
            model_file: "micro-int8.csm".into(),
            model_hash: "sha256:ab".into(),
        };
        let v = parse(&pose.to_json());
        assert_eq!(v["seq"], 7);
        assert_eq!(v["time"], 1_765_000_000.25);
        assert_eq!(v["keypoints"].as_array().unwrap().len(), 17);
        assert_eq!(v["keypoints"][2], json!([0.1, 0.5, 0.9]));
        assert_eq!(
            v["model"],
            json!({"file": "micro-int8.csm", "hash": "sha256:ab"})
        );

        let act = ActivityMessage {
            seq: 3,
            time_unix_s: 1.5,
            label: "walk".into(),
            probabilities: vec![("walk".into(), 0.75), ("sit".into(), 0.25)],
            decode: None,
        };
        let text = String::from_utf8(act.to_json()).unwrap();
        assert_eq!(
            text,
            r#"{"seq":3,"time":1.5,"label":"walk","probabilities":{"walk":0.75,"sit":0.25}}"#
        );
        let decoded = ActivityMessage {
            decode: Some("forward".into()),
            ..act.clone()
        };
        assert_eq!(
            String::from_utf8(decoded.to_json()).unwrap(),
            r#"{"seq":3,"time":1.5,"label":"walk","probabilities":{"walk":0.75,"sit":0.25},"decode":"forward"}"#
        );

        let pres = PresenceMessage {
            time_unix_s: 2.0,
            present: true,
            motion: false,
            confidence: 0.5,
        };
        assert_eq!(
            parse(&pres.to_json()),
            json!({"time": 2.0, "state": "present", "motion": false, "confidence": 0.5})
        );
        let absent = PresenceMessage {
            present: false,
            confidence: f32::NAN,
            ..pres
        };
        let v = parse(&absent.to_json());
        assert_eq!(v["state"], "absent");
        assert_eq!(v["confidence"], Value::Null);

        let stats = StatsMessage {
            time_unix_s: 3.0,
            packet_rate_hz: 99.5,
            packets: 1000,
        };
        assert_eq!(
            parse(&stats.to_json()),
            json!({"time": 3.0, "packet_rate_hz": 99.5, "packets": 1000})
        );
    }

    #[test]
    fn discovery_gives_one_device_with_four_entities() {
        let topics = Topics::default();
        let node = NodeInfo {
            id: NodeId::new("n1").unwrap(),
            name: "Kitchen".into(),
            model: "ESP32".into(),
        };
        let cfgs = discovery_configs(&topics, &node);
        let names: Vec<&str> = cfgs.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            names,
            [
                "homeassistant/binary_sensor/csipose_n1/presence/config",
                "homeassistant/binary_sensor/csipose_n1/motion/config",
                "homeassistant/sensor/csipose_n1/activity/config",
                "homeassistant/sensor/csipose_n1/packet_rate/config",
            ]
        );
        let mut unique = std::collections::HashSet::new();
        for (_, payload) in &cfgs {
            let v = parse(payload);
            assert_eq!(v["availability_topic"], "csipose/status");
            assert_eq!(v["device"]["identifiers"], json!(["csipose_n1"]));
            assert_eq!(v["device"]["manufacturer"], "csipose");
            assert_eq!(v["device"]["name"], "Kitchen");
            assert_eq!(v["device"]["model"], "ESP32");
            assert!(unique.insert(v["unique_id"].as_str().unwrap().to_string()));
        }
        let presence = parse(&cfgs[0].1);
        assert_eq!(presence["device_class"], "occupancy");
        assert_eq!(presence["state_topic"], "csipose/n1/presence");
        assert_eq!(presence["payload_on"], "present");
        assert_eq!(parse(&cfgs[1].1)["device_class"], "motion");
        assert_eq!(parse(&cfgs[2].1)["state_topic"], "csipose/n1/activity");
        assert_eq!(parse(&cfgs[3].1)["state_topic"], "csipose/n1/stats");
    }
}
