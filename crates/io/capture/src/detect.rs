//! Format auto-detection from the first bytes of a capture, with an error that says what
//! each format check recognised and why it refused.

use crate::{atheros, intel5300};

/// The capture formats csipose reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Intel5300,
    Nexmon,
    Esp32,
    Atheros,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "intel5300" | "intel" | "iwl5300" => Some(Format::Intel5300),
            "nexmon" => Some(Format::Nexmon),
            "esp32" => Some(Format::Esp32),
            "atheros" => Some(Format::Atheros),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Format::Intel5300 => "intel5300",
            Format::Nexmon => "nexmon",
            Format::Esp32 => "esp32",
            Format::Atheros => "atheros",
        }
    }
}

/// How many leading bytes [`detect`] wants to see (it works with fewer).
pub const DETECT_BYTES: usize = 4096;

/// Identifies the format from the first bytes of a file. The error lists, per format,
/// what was seen and why it did not qualify.
pub fn detect(head: &[u8]) -> Result<Format, String> {
    if head.is_empty() {
        return Err("the file is empty".into());
    }
    let mut why = Vec::new();
    // pcap
    if head.len() >= 4 {
        let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        match magic {
            0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1 => return Ok(Format::Nexmon),
            0x0a0d_0d0a => why.push(
                "nexmon: recognised a pcapng file, but the reader takes classic pcap (convert with `editcap -F pcap`)".to_string(),
            ),
            _ => why.push(format!("nexmon: no pcap magic (first 4 bytes {magic:#010x})")),
        }
    }
    // ESP32 CSV: a `CSI_DATA` row or the header first, or a text file whose first lines
    // (serial console output before the tool starts) lead to one.
    let body = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let text = String::from_utf8_lossy(&body[..body.len().min(DETECT_BYTES)]);
    let t = text.trim_start();
    if t.starts_with("CSI_DATA") || t.starts_with("type,") {
        return Ok(Format::Esp32);
    }
    let printable = body
        .iter()
        .take(256)
        .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if printable {
        if text.lines().any(|l| {
            l.trim_start().starts_with("CSI_DATA,") || l.trim_start().starts_with("type,role,")
        }) {
            return Ok(Format::Esp32);
        }
        why.push("esp32: the file is text but has no `CSI_DATA` row or `type,role,...` header in its first 4096 bytes".into());
    } else {
        why.push("esp32: not text".into());
    }
    // Intel 5300: walk records until the first bfee one and check it strictly.
    match check_intel(head) {
        Ok(()) => return Ok(Format::Intel5300),
        Err(m) => why.push(format!("intel5300: {m}")),
    }
    match atheros::detect_endian(head) {
        Some(_) => return Ok(Format::Atheros),
        None => why.push(
            "atheros: the first record's length is not 25 + csi_len + payload_len in either byte order".into(),
        ),
    }
    Err(format!("unknown capture format; {}", why.join("; ")))
}

fn check_intel(head: &[u8]) -> Result<(), String> {
    let mut at = 0usize;
    let mut skipped = 0;
    while at + 3 <= head.len() {
        let len = u16::from_be_bytes([head[at], head[at + 1]]) as usize;
        let code = head[at + 2];
        if len == 0 {
            return Err(format!("record at byte {at} has length 0"));
        }
        if code != intel5300::CODE_BFEE {
            if skipped > 16 {
                return Err("no 0xbb (bfee) record among the first records".into());
            }
            skipped += 1;
            at += 2 + len;
            continue;
        }
        let body = &head[at + 3..head.len().min(at + 2 + len)];
        if body.len() < intel5300::BFEE_HEADER {
            return Err(format!(
                "bfee record at byte {at} is cut before its header ends"
            ));
        }
        let (nrx, ntx) = (body[8] as usize, body[9] as usize);
        if !(1..=3).contains(&nrx) || !(1..=3).contains(&ntx) {
            return Err(format!(
                "record at byte {at} has code 0xbb but Nrx={nrx} Ntx={ntx}"
            ));
        }
        let plen = u16::from_le_bytes([body[16], body[17]]) as usize;
        if plen != intel5300::payload_len(nrx, ntx) || len != 1 + intel5300::BFEE_HEADER + plen {
            return Err(format!(
                "record at byte {at} has code 0xbb but its lengths ({len}, payload {plen}) do not fit Nrx={nrx} Ntx={ntx}"
            ));
        }
        return Ok(());
    }
    Err(format!(
        "first record (length {}, code {:#04x}) is not a bfee record",
        u16::from_be_bytes([head[0], *head.get(1).unwrap_or(&0)]),
        head.get(2).copied().unwrap_or(0)
    ))
}
