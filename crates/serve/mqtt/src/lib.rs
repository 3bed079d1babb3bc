//! MQTT output of the csipose sensing server (`csipose serve --mqtt HOST:PORT`).
//!
//! - [`packet`]: MQTT 3.1.1 packet encoding and a decoder that never panics on any bytes.
//! - [`client`]: a blocking client over `std::net::TcpStream` (no async runtime).
//! - [`messages`]: the topic layout, the payload types the server fills, and the Home
//!   Assistant discovery configs.
//! - [`publisher`]: [`Publisher`], a background thread with a bounded latest-value-wins queue,
//!   last will, reconnect with backoff, and counters for `/metrics`.
//!
//! # Using it from the server
//!
//! ```no_run
//! use csipose_mqtt::{NodeId, NodeInfo, PresenceMessage, Publisher, PublisherConfig};
//! use std::time::Duration;
//!
//! let publisher = Publisher::start(PublisherConfig::new("127.0.0.1:1883"))?; // validates
//! let node = NodeId::new("esp32-kitchen")?;
//! publisher.announce(NodeInfo { id: node.clone(), name: "Kitchen".into(), model: "ESP32-S3".into() })?;
//! publisher.presence(&node, &PresenceMessage {
//!     time_unix_s: 1_765_000_000.0, present: true, motion: false, confidence: 0.93,
//! })?; // never blocks: queued for the publisher thread
//! let m = publisher.metrics(); // sent, dropped_*, reconnects, connected, queued
//! print!("{}", m.to_prometheus());
//! publisher.shutdown(Duration::from_secs(1)); // publishes "offline", disconnects
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Topics and payloads (JSON, UTF-8; see FORMATS.md, "MQTT")
//!
//! | topic | payload | retained |
//! |---|---|---|
//! | `csipose/status` | `online` / `offline` (last will) | yes |
//! | `csipose/<node>/pose` | [`PoseMessage`]: `{"seq","time","keypoints":[[x,y,conf]×17],"model":{"file","hash"}}` | no |
//! | `csipose/<node>/activity` | [`ActivityMessage`]: `{"seq","time","label","probabilities":{class:p}}` | no |
//! | `csipose/<node>/presence` | [`PresenceMessage`]: `{"time","state":"present"/"absent","motion","confidence"}` | yes |
//! | `csipose/<node>/stats` | [`StatsMessage`]: `{"time","packet_rate_hz","packets"}` | no |
//! | `homeassistant/{binary_sensor,sensor}/csipose_<node>/<object>/config` | discovery config | yes |
//!
//! `time` is Unix time in seconds; non-finite numbers are written as `null`. The prefixes
//! `csipose` and `homeassistant` are [`Topics`] fields.

pub mod client;
pub mod messages;
pub mod packet;
pub mod publisher;

pub use client::{Client, ClientError, ClientOptions};
pub use messages::{
    discovery_configs, ActivityMessage, NameError, NodeId, NodeInfo, PoseMessage, PresenceMessage,
    StatsMessage, Topics, KEYPOINTS, OFFLINE, ONLINE,
};
pub use packet::{Connect, Packet, QoS, Will};
pub use publisher::{
    check_broker, ConfigError, Metrics, PublishError, Publisher, PublisherConfig, MAX_NODES,
};
