//! MQTT 3.1.1 packet encoding and decoding: the subset a publishing client needs (CONNECT with
//! last will, CONNACK, PUBLISH at QoS 0, SUBSCRIBE/SUBACK, PINGREQ/PINGRESP, DISCONNECT).
//!
//! Encoders check every length limit of the specification and refuse what they cannot encode.
//! The decoder reads one packet from the front of a byte buffer; it never panics, never reads
//! past the buffer, and never allocates more than the packet-size limit it is given, whatever
//! the bytes.

use std::fmt;

/// The largest remaining length MQTT can express (four varint bytes).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;
/// The longest UTF-8 string field (two-byte length prefix).
pub const MAX_STRING_LEN: usize = 65_535;

/// Why bytes from the broker could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("remaining length at byte {offset} is longer than 4 bytes")]
    RemainingLengthTooLong { offset: usize },
    #[error("packet of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("packet type {packet_type} is not one a broker sends to a client")]
    UnexpectedType { packet_type: u8 },
    #[error("{packet}: fixed-header flags {flags:#x} are reserved")]
    BadFlags { packet: &'static str, flags: u8 },
    #[error("{packet}: remaining length {len} is invalid ({why})")]
    BadLength {
        packet: &'static str,
        len: usize,
        why: &'static str,
    },
    #[error("{packet}: {why}")]
    Malformed {
        packet: &'static str,
        why: &'static str,
    },
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{field} is {len} bytes; MQTT allows at most {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field} {value:?} is not valid: {why}")]
    Invalid {
        field: &'static str,
        value: String,
        why: &'static str,
    },
}

/// Quality of service of a subscription or publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

/// A last-will message, published by the broker when the connection ends without DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// The fields of a CONNECT packet (always MQTT 3.1.1, clean session, will at QoS 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub client_id: String,
    /// Seconds; 0 disables the broker's keep-alive check.
    pub keep_alive_s: u16,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub will: Option<Will>,
}

/// A packet the broker sends to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    ConnAck {
        session_present: bool,
        /// 0 = accepted; 1–5 are the refusals of MQTT 3.1.1 §3.2.2.3.
        return_code: u8,
    },
    Publish {
        topic: String,
        payload: Vec<u8>,
        qos: u8,
        retain: bool,
        dup: bool,
        packet_id: Option<u16>,
    },
    PubAck {
        packet_id: u16,
    },
    SubAck {
        packet_id: u16,
        /// Per filter: granted QoS 0–2, or 0x80 for failure.
        return_codes: Vec<u8>,
    },
    UnsubAck {
        packet_id: u16,
    },
    PingResp,
}

impl Packet {
    /// The packet's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::ConnAck { .. } => "CONNACK",
            Packet::Publish { .. } => "PUBLISH",
            Packet::PubAck { .. } => "PUBACK",
            Packet::SubAck { .. } => "SUBACK",
            Packet::UnsubAck { .. } => "UNSUBACK",
            Packet::PingResp => "PINGRESP",
        }
    }
}

/// The text of a CONNACK refusal code.
pub fn connack_reason(code: u8) -> &'static str {
    match code {
        0 => "accepted",
        1 => "unacceptable protocol version",
        2 => "client identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => "unknown return code",
    }
}

impl fmt::Display for QoS {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", *self as u8)
    }
}

/// Appends the remaining-length varint of `len`.
pub fn encode_remaining_length(len: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if len > MAX_REMAINING_LENGTH {
        return Err(EncodeError::TooLong {
            field: "packet",
            len,
            max: MAX_REMAINING_LENGTH,
        });
    }
    let mut x = len;
    loop {
        let mut byte = (x % 128) as u8;
        x /= 128;
        if x > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if x == 0 {
            return Ok(());
        }
    }
}

/// Decodes the remaining-length varint at the start of `buf`: `Ok(None)` when more bytes are
/// needed, else the length and the number of bytes it took.
pub fn decode_remaining_length(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(i) else {
            return Ok(None);
        };
        value += ((byte & 0x7f) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err(DecodeError::RemainingLengthTooLong { offset: 1 })
}

fn put_str(field: &'static str, s: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if s.len() > MAX_STRING_LEN {
        return Err(EncodeError::TooLong {
            field,
            len: s.len(),
            max: MAX_STRING_LEN,
        });
    }
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
    Ok(())
}

fn check_utf8_field(field: &'static str, s: &str) -> Result<(), EncodeError> {
    if s.contains('\0') {
        return Err(EncodeError::Invalid {
            field,
            value: s.to_string(),
            why: "contains a NUL character",
        });
    }
    Ok(())
}

/// Checks a topic name to publish to: non-empty, no wildcards, no NUL, at most 65,535 bytes.
pub fn check_topic_name(topic: &str) -> Result<(), EncodeError> {
    let why = if topic.is_empty() {
        "is empty"
    } else if topic.contains(['+', '#']) {
        "contains a wildcard (+ or #)"
    } else if topic.contains('\0') {
        "contains a NUL character"
    } else if topic.len() > MAX_STRING_LEN {
        "is longer than 65,535 bytes"
    } else {
        return Ok(());
    };
    Err(EncodeError::Invalid {
        field: "topic",
        value: topic.chars().take(80).collect(),
        why,
    })
}

/// Checks a topic filter to subscribe to: non-empty, `#` only as the whole last level, `+` only
/// as a whole level.
pub fn check_topic_filter(filter: &str) -> Result<(), EncodeError> {
    let bad = |why| {
        Err(EncodeError::Invalid {
            field: "topic filter",
            value: filter.chars().take(80).collect(),
            why,
        })
    };
    if filter.is_empty() {
        return bad("is empty");
    }
    if filter.len() > MAX_STRING_LEN {
        return bad("is longer than 65,535 bytes");
    }
    if filter.contains('\0') {
        return bad("contains a NUL character");
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return bad("# must be the whole last level");
        }
        if level.contains('+') && *level != "+" {
            return bad("+ must be a whole level");
        }
    }
    Ok(())
}

fn finish(first_byte: u8, body: Vec<u8>) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(first_byte);
    encode_remaining_length(body.len(), &mut out)?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Encodes CONNECT (protocol level 4, clean session).
pub fn encode_connect(c: &Connect) -> Result<Vec<u8>, EncodeError> {
    check_utf8_field("client id", &c.client_id)?;
    if c.password.is_some() && c.username.is_none() {
        return Err(EncodeError::Invalid {
            field: "password",
            value: "<hidden>".into(),
            why: "MQTT 3.1.1 allows a password only with a user name",
        });
    }
    let mut body = Vec::new();
    put_str("protocol name", b"MQTT", &mut body)?;
    body.push(4); // protocol level 3.1.1
    let mut flags = 0x02u8; // clean session
    if let Some(w) = &c.will {
        check_topic_name(&w.topic)?;
        flags |= 0x04; // will flag, will QoS 0
        if w.retain {
            flags |= 0x20;
        }
    }
    if let Some(u) = &c.username {
        check_utf8_field("user name", u)?;
        flags |= 0x80;
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&c.keep_alive_s.to_be_bytes());
    put_str("client id", c.client_id.as_bytes(), &mut body)?;
    if let Some(w) = &c.will {
        put_str("will topic", w.topic.as_bytes(), &mut body)?;
        put_str("will payload", &w.payload, &mut body)?;
    }
    if let Some(u) = &c.username {
        put_str("user name", u.as_bytes(), &mut body)?;
    }
    if let Some(p) = &c.password {
        put_str("password", p, &mut body)?;
    }
    finish(0x10, body)
}

/// Encodes PUBLISH at QoS 0.
pub fn encode_publish(topic: &str, payload: &[u8], retain: bool) -> Result<Vec<u8>, EncodeError> {
    check_topic_name(topic)?;
    let mut body = Vec::with_capacity(2 + topic.len() + payload.len());
    put_str("topic", topic.as_bytes(), &mut body)?;
    body.extend_from_slice(payload);
    finish(0x30 | u8::from(retain), body)
}

/// Encodes SUBSCRIBE for the given filters.
pub fn encode_subscribe(packet_id: u16, filters: &[(&str, QoS)]) -> Result<Vec<u8>, EncodeError> {
    if packet_id == 0 {
        return Err(EncodeError::Invalid {
            field: "packet id",
            value: "0".into(),
            why: "must be non-zero",
        });
    }
    if filters.is_empty() {
        return Err(EncodeError::Invalid {
            field: "topic filters",
            value: String::new(),
            why: "SUBSCRIBE needs at least one",
        });
    }
    let mut body = packet_id.to_be_bytes().to_vec();
    for (filter, qos) in filters {
        check_topic_filter(filter)?;
        put_str("topic filter", filter.as_bytes(), &mut body)?;
        body.push(*qos as u8);
    }
    finish(0x82, body)
}

/// PINGREQ.
pub const PINGREQ: [u8; 2] = [0xc0, 0x00];
/// DISCONNECT.
pub const DISCONNECT: [u8; 2] = [0xe0, 0x00];

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

/// Decodes one packet from the front of `buf`. `Ok(None)`: the packet is not complete yet (read
/// more and call again). `Ok(Some((packet, n)))`: `n` bytes were consumed. Packets larger than
/// `max_packet` bytes in all are refused before anything is allocated.
pub fn decode(buf: &[u8], max_packet: usize) -> Result<Option<(Packet, usize)>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let Some((len, varint_len)) = decode_remaining_length(&buf[1..])? else {
        return Ok(None);
    };
    let total = 1 + varint_len + len;
    if total > max_packet {
        return Err(DecodeError::TooLarge {
            len: total,
            limit: max_packet,
        });
    }
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[1 + varint_len..total];
    let packet_type = first >> 4;
    let flags = first & 0x0f;
    let need_flags = |packet: &'static str, want: u8| {
        if flags == want {
            Ok(())
        } else {
            Err(DecodeError::BadFlags { packet, flags })
        }
    };
    let need_len = |packet: &'static str, want: usize| {
        if len == want {
            Ok(())
        } else {
            Err(DecodeError::BadLength {
                packet,
                len,
                why: "not the fixed length of this packet",
            })
        }
    };
    let packet = match packet_type {
        2 => {
            need_flags("CONNACK", 0)?;
            need_len("CONNACK", 2)?;
            if body[0] & 0xfe != 0 {
                return Err(DecodeError::Malformed {
                    packet: "CONNACK",
                    why: "acknowledge flags use reserved bits",
                });
            }
            Packet::ConnAck {
                session_present: body[0] & 1 == 1,
                return_code: body[1],
            }
        }
        3 => {
            let qos = (flags >> 1) & 3;
            if qos == 3 {
                return Err(DecodeError::BadFlags {
                    packet: "PUBLISH",
                    flags,
                });
            }
            let malformed = |why| DecodeError::Malformed {
                packet: "PUBLISH",
                why,
            };
            let topic_len = u16_at(body, 0).ok_or(malformed("shorter than its topic length"))?;
            let topic_end = 2 + topic_len as usize;
            let topic = body
                .get(2..topic_end)
                .ok_or(malformed("topic runs past the packet"))?;
            let topic = std::str::from_utf8(topic).map_err(|_| malformed("topic is not UTF-8"))?;
            if topic.is_empty() || topic.contains(['+', '#', '\0']) {
                return Err(malformed("topic is empty or has a wildcard or NUL"));
            }
            let (packet_id, payload_start) = if qos > 0 {
                let id = u16_at(body, topic_end).ok_or(malformed("packet id missing"))?;
                if id == 0 {
                    return Err(malformed("packet id is 0"));
                }
                (Some(id), topic_end + 2)
            } else {
                (None, topic_end)
            };
            Packet::Publish {
                topic: topic.to_string(),
                payload: body[payload_start..].to_vec(),
                qos,
                retain: flags & 1 == 1,
                dup: flags & 8 == 8,
                packet_id,
            }
        }
        4 => {
            need_flags("PUBACK", 0)?;
            need_len("PUBACK", 2)?;
            Packet::PubAck {
                packet_id: u16::from_be_bytes([body[0], body[1]]),
            }
        }
        9 => {
            need_flags("SUBACK", 0)?;
            if len < 3 {
                return Err(DecodeError::BadLength {
                    packet: "SUBACK",
                    len,
                    why: "needs a packet id and at least one return code",
                });
            }
            let return_codes = body[2..].to_vec();
            if return_codes.iter().any(|&c| c > 2 && c != 0x80) {
                return Err(DecodeError::Malformed {
                    packet: "SUBACK",
                    why: "return code is not 0, 1, 2 or 0x80",
                });
            }
            Packet::SubAck {
                packet_id: u16::from_be_bytes([body[0], body[1]]),
                return_codes,
            }
        }
        11 => {
            need_flags("UNSUBACK", 0)?;
            need_len("UNSUBACK", 2)?;
            Packet::UnsubAck {
                packet_id: u16::from_be_bytes([body[0], body[1]]),
            }
        }
        13 => {
            need_flags("PINGRESP", 0)?;
            need_len("PINGRESP", 0)?;
            Packet::PingResp
        }
        t => return Err(DecodeError::UnexpectedType { packet_type: t }),
    };
    Ok(Some((packet, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_round_trips_at_the_boundaries() {
        for len in [
            0usize,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            MAX_REMAINING_LENGTH,
        ] {
            let mut v = Vec::new();
            encode_remaining_length(len, &mut v).unwrap();
            let expect_bytes = match len {
                0..=127 => 1,
                128..=16_383 => 2,
                16_384..=2_097_151 => 3,
                _ => 4,
            };
            assert_eq!(v.len(), expect_bytes, "len {len}");
            assert_eq!(decode_remaining_length(&v).unwrap(), Some((len, v.len())));
            // Any prefix is "incomplete", never an error or a wrong value.
            assert_eq!(decode_remaining_length(&v[..v.len() - 1]).unwrap(), None);
        }
        assert!(encode_remaining_length(MAX_REMAINING_LENGTH + 1, &mut Vec::new()).is_err());
        assert_eq!(
            decode_remaining_length(&[0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(DecodeError::RemainingLengthTooLong { offset: 1 })
        );
    }

    #[test]
    fn connect_matches_the_specification_example_bytes() {
        let c = Connect {
            client_id: "id".into(),
            keep_alive_s: 60,
            username: Some("u".into()),
            password: Some(b"p".to_vec()),
            will: Some(Will {
                topic: "a/s".into(),
                payload: b"offline".to_vec(),
                retain: true,
            }),
        };
        let bytes = encode_connect(&c).unwrap();
        let mut want = vec![0x10, 0];
        want.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4]);
        want.push(0x80 | 0x40 | 0x20 | 0x04 | 0x02);
        want.extend_from_slice(&[0, 60]);
        want.extend_from_slice(&[0, 2, b'i', b'd']);
        want.extend_from_slice(&[0, 3, b'a', b'/', b's']);
        want.extend_from_slice(&[0, 7]);
        want.extend_from_slice(b"offline");
        want.extend_from_slice(&[0, 1, b'u', 0, 1, b'p']);
        want[1] = (want.len() - 2) as u8;
        assert_eq!(bytes, want);
    }

    #[test]
    fn connect_refuses_a_password_without_a_user_name() {
        let c = Connect {
            client_id: "x".into(),
            keep_alive_s: 0,
            username: None,
            password: Some(b"p".to_vec()),
            will: None,
        };
        assert!(encode_connect(&c).is_err());
    }

    #[test]
    fn publish_encodes_retain_and_refuses_wildcards() {
        let p = encode_publish("a/b", b"hi", true).unwrap();
        assert_eq!(p, [0x31, 7, 0, 3, b'a', b'/', b'b', b'h', b'i']);
        let p = encode_publish("a", b"", false).unwrap();
        assert_eq!(p, [0x30, 3, 0, 1, b'a']);
        assert!(encode_publish("a/+", b"", false).is_err());
        assert!(encode_publish("a/#", b"", false).is_err());
        assert!(encode_publish("", b"", false).is_err());
        assert!(encode_publish(&"x".repeat(70_000), b"", false).is_err());
    }

    #[test]
    fn publish_with_a_large_payload_uses_a_multi_byte_length() {
        let payload = vec![7u8; 300];
        let p = encode_publish("t", &payload, false).unwrap();
        // 303 = 0b10_0101111 -> [0xaf, 0x02]
        assert_eq!(&p[..3], &[0x30, 0xaf, 0x02]);
        let (pk, n) = decode(&p, 1 << 20).unwrap().unwrap();
        assert_eq!(n, p.len());
        match pk {
            Packet::Publish {
                topic,
                payload: got,
                ..
            } => {
                assert_eq!(topic, "t");
                assert_eq!(got, payload);
            }
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn subscribe_encodes_and_checks_filters() {
        let s = encode_subscribe(7, &[("a/#", QoS::AtMostOnce)]).unwrap();
        assert_eq!(s, [0x82, 8, 0, 7, 0, 3, b'a', b'/', b'#', 0]);
        assert!(encode_subscribe(1, &[("a/#/b", QoS::AtMostOnce)]).is_err());
        assert!(encode_subscribe(1, &[("a+", QoS::AtMostOnce)]).is_err());
        assert!(encode_subscribe(0, &[("a", QoS::AtMostOnce)]).is_err());
        assert!(encode_subscribe(1, &[]).is_err());
        assert!(check_topic_filter("+/x/#").is_ok());
    }

    #[test]
    fn decodes_broker_packets_and_reports_incomplete_ones() {
        assert_eq!(
            decode(&[0x20, 2, 0, 0], 64).unwrap(),
            Some((
                Packet::ConnAck {
                    session_present: false,
                    return_code: 0
                },
                4
            ))
        );
        assert_eq!(decode(&[0x20, 2, 0], 64).unwrap(), None);
        assert_eq!(decode(&[], 64).unwrap(), None);
        assert_eq!(decode(&[0xd0, 0], 64).unwrap(), Some((Packet::PingResp, 2)));
        assert_eq!(
            decode(&[0x90, 3, 0, 9, 0x80, 0xd0], 64).unwrap(),
            Some((
                Packet::SubAck {
                    packet_id: 9,
                    return_codes: vec![0x80]
                },
                5
            ))
        );
        // QoS 1 PUBLISH with packet id.
        let bytes = [0x3b, 7, 0, 1, b't', 0, 5, b'o', b'k'];
        assert_eq!(
            decode(&bytes, 64).unwrap(),
            Some((
                Packet::Publish {
                    topic: "t".into(),
                    payload: b"ok".to_vec(),
                    qos: 1,
                    retain: true,
                    dup: true,
                    packet_id: Some(5)
                },
                9
            ))
        );
    }

    #[test]
    fn refuses_malformed_packets_with_a_reason() {
        assert!(matches!(
            decode(&[0x21, 2, 0, 0], 64),
            Err(DecodeError::BadFlags { .. })
        ));
        assert!(matches!(
            decode(&[0x20, 3, 0, 0, 0], 64),
            Err(DecodeError::BadLength { .. })
        ));
        assert!(matches!(
            decode(&[0x10, 0], 64),
            Err(DecodeError::UnexpectedType { packet_type: 1 })
        ));
        assert!(matches!(
            decode(&[0x36, 3, 0, 1, b't'], 64),
            Err(DecodeError::BadFlags { .. })
        ));
        assert!(matches!(
            decode(&[0x30, 3, 0, 5, b't'], 64),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            decode(&[0x30, 4, 0, 2, 0xff, 0xfe], 64),
            Err(DecodeError::Malformed { .. })
        ));
        // Size limit applies before the body has arrived.
        assert_eq!(
            decode(&[0x30, 0xff, 0xff, 0x7f], 1024),
            Err(DecodeError::TooLarge {
                len: 1 + 3 + 2_097_151,
                limit: 1024
            })
        );
    }

    /// xorshift64*: a deterministic byte source for the robustness test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    fn check_decode_contract(buf: &[u8], limit: usize) {
        if let Ok(Some((_, n))) = decode(buf, limit) {
            assert!(n >= 2 && n <= buf.len() && n <= limit, "{buf:?}");
        }
    }

    #[test]
    fn random_and_mutated_bytes_never_panic_and_never_overrun() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let valid: Vec<Vec<u8>> = vec![
            vec![0x20, 2, 0, 0],
            vec![0xd0, 0],
            vec![0x90, 3, 0, 1, 0],
            vec![0xb0, 2, 0, 1],
            vec![0x40, 2, 0, 1],
            encode_publish("csipose/n/pose", b"{\"seq\":1}", true).unwrap(),
            vec![0x3b, 7, 0, 1, b't', 0, 5, b'o', b'k'],
        ];
        let mut buf = Vec::new();
        for round in 0..200_000u32 {
            buf.clear();
            if round % 2 == 0 {
                let len = (rng.next() % 24) as usize;
                let high_type = rng.next() % 16;
                for i in 0..len {
                    let mut b = rng.next() as u8;
                    if i == 0 {
                        b = (b & 0x0f) | ((high_type as u8) << 4);
                    }
                    buf.push(b);
                }
            } else {
                buf.extend_from_slice(&valid[(rng.next() % valid.len() as u64) as usize]);
                let flips = 1 + rng.next() % 3;
                for _ in 0..flips {
                    let i = (rng.next() % buf.len() as u64) as usize;
                    buf[i] ^= 1 << (rng.next() % 8);
                }
                if rng.next().is_multiple_of(4) {
                    let cut = (rng.next() % (buf.len() as u64 + 1)) as usize;
                    buf.truncate(cut);
                }
            }
            let limit = [2usize, 8, 64, 1 << 20][(rng.next() % 4) as usize];
            check_decode_contract(&buf, limit);
        }
        // Every valid packet decodes to itself, whole.
        for v in &valid {
            let (_, n) = decode(v, 1 << 20).unwrap().unwrap();
            assert_eq!(n, v.len());
        }
    }
}
