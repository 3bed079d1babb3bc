//! Format detection and dispatch: one datagram (or one text line) in, one [`CsiFrame`] or
//! one [`Rejected`] out. Detection looks only at the content:
//! 1. bytes 0..4 = `C5 50 4C 46` → csipose live frame;
//! 2. u32 LE at 0 = `0xC51100xx` → RuView ADR-018 (raw CSI `…01`; `…02/04/06` ignored);
//! 3. bytes 0..2 = `11 11` → Nexmon UDP payload;
//! 4. text starting with `CSI_DATA` (after leading whitespace) → ESP32 line;
//! 5. anything else → [`Reject::UnknownFormat`] (or [`Reject::NotCsiLine`] for UTF-8 text).

use crate::frame::CsiFrame;
use crate::reject::{Reject, Rejected};
use crate::{adr018, esp, live, nexmon_udp};
use csipose_capture::nexmon::Chip;

/// The largest datagram accepted (and the receive buffer size to use).
pub const MAX_DATAGRAM: usize = 65_535;

/// Decoder settings.
#[derive(Clone, Copy, Debug, Default)]
pub struct DecodeOptions {
    /// Nexmon chip for payloads whose chip-version field is unknown (or to override it).
    pub nexmon_chip: Option<Chip>,
}

/// Decodes one datagram with default options.
pub fn decode_datagram(bytes: &[u8]) -> Result<CsiFrame, Rejected> {
    decode_datagram_with(bytes, &DecodeOptions::default())
}

/// Decodes one datagram.
pub fn decode_datagram_with(bytes: &[u8], opts: &DecodeOptions) -> Result<CsiFrame, Rejected> {
    if bytes.is_empty() {
        return Err(Rejected::new(None, Reject::Empty, "0 bytes"));
    }
    if bytes.len() > MAX_DATAGRAM {
        return Err(Rejected::new(
            None,
            Reject::TooLarge,
            format!("{} bytes, the limit is {MAX_DATAGRAM}", bytes.len()),
        ));
    }
    if live::is_live(bytes) {
        return live::LiveFrame::decode(bytes).map(live::LiveFrame::into_csi_frame);
    }
    if adr018::is_ruview(bytes) {
        return adr018::decode(bytes);
    }
    if bytes.len() >= 2 && bytes[..2] == nexmon_udp::MAGIC {
        return nexmon_udp::decode(bytes, opts.nexmon_chip);
    }
    let start = bytes
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    if bytes[start..].starts_with(esp::PREFIX.as_bytes()) {
        // One line per datagram: a trailing line ending is fine, an inner one is not.
        let mut end = bytes.len();
        while end > start && matches!(bytes[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        if let Some(i) = bytes[start..end].iter().position(|&c| c == b'\n') {
            return Err(Rejected::new(
                None,
                Reject::MultipleLines,
                format!("byte {}: a second line in one datagram", start + i + 1),
            ));
        }
        return esp::decode_line(&bytes[start..end]);
    }
    if std::str::from_utf8(bytes).is_ok() {
        return esp::decode_line(bytes);
    }
    Err(Rejected::new(
        None,
        Reject::UnknownFormat,
        format!(
            "byte 0: {:02x?} is no known format's signature",
            &bytes[..bytes.len().min(4)]
        ),
    ))
}

/// Decodes one text line from a byte stream (stdin, serial): ESP32 `CSI_DATA` rows.
/// Lines of other content are [`Reject::NotCsiLine`].
pub fn decode_line(line: &[u8]) -> Result<CsiFrame, Rejected> {
    if line.len() > MAX_DATAGRAM {
        return Err(Rejected::new(
            None,
            Reject::TooLarge,
            format!("line of {} bytes, the limit is {MAX_DATAGRAM}", line.len()),
        ));
    }
    esp::decode_line(line)
}
