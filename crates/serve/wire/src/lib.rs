//! Live CSI on the wire: decoding one datagram (or one text line) of any supported format
//! into a [`CsiFrame`], with a stable [`Reject`] reason for everything refused; the csipose
//! live frame ([`live`]); recording files ([`record`]); and replay of captures, datasets and
//! recordings as live UDP traffic with injected faults ([`replay`]).
//!
//! Formats, detected from each datagram's content ([`decode_datagram`]):
//! - RuView / ADR-018 raw CSI frames ([`adr018`]);
//! - Nexmon CSI UDP payloads ([`nexmon_udp`]);
//! - ESP32 text lines: ESP32-CSI-Tool and espressif esp-csi, both column sets ([`esp`]);
//! - the csipose live frame ([`live`], documented byte by byte in FORMATS.md, "Live frame").
//!
//! Decoders never panic and never allocate more than a small multiple of the input's length.

pub mod adr018;
pub mod counters;
pub mod decode;
pub mod esp;
pub mod frame;
pub mod lines;
pub mod live;
pub mod nexmon_udp;
pub mod record;
pub mod reject;
pub mod replay;

pub use counters::Counters;
pub use decode::{decode_datagram, decode_datagram_with, decode_line, DecodeOptions, MAX_DATAGRAM};
pub use frame::{CsiFrame, Format, SampleType, Samples};
pub use lines::LineSplitter;
pub use live::LiveFrame;
pub use record::{Record, RecordError, RecordOptions, RecordReader, RecordWriter};
pub use reject::{Reject, Rejected};
