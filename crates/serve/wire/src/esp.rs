//! ESP32 `CSI_DATA` text lines, three column sets, told apart by the second column and the
//! column count:
//! - ESP32-CSI-Tool: `CSI_DATA,<role>,mac,rssi,rate,sig_mode,mcs,bandwidth,smoothing,
//!   not_sounding,aggregation,stbc,fec_coding,sgi,noise_floor,ampdu_cnt,channel,
//!   secondary_channel,local_timestamp,ant,sig_len,rx_state[,real_time_set,real_time],len,
//!   [v v ...]` — the role (`AP`/`STA`) is not a number; 22 or 24 columns before the array;
//!   its `len` counts the driver buffer, not the printed values, so it is not checked;
//! - esp-csi, classic chips: `CSI_DATA,id,mac,rssi,rate,sig_mode,mcs,bandwidth,smoothing,
//!   not_sounding,aggregation,stbc,fec_coding,sgi,noise_floor,ampdu_cnt,channel,
//!   secondary_channel,local_timestamp,ant,sig_len,rx_state,len,first_word,"[v,v,...]"` —
//!   23 columns before the array;
//! - esp-csi, C5/C6: `CSI_DATA,seq,mac,rssi,rate,noise_floor,fft_gain,agc_gain,channel,
//!   local_timestamp,sig_len,rx_state,len,first_word,"[v,v,...]"` — 13 columns.
//!
//! Values are int8 pairs `(imag, real)` per subcarrier (the order ESP-IDF documents);
//! esp-csi's `len` must equal the number of values. `local_timestamp` (µs) becomes the
//! device time. One antenna; `values / 2` subcarriers.

use crate::frame::{CsiFrame, Format, Samples};
use crate::reject::{Reject, Rejected};

/// The row prefix.
pub const PREFIX: &str = "CSI_DATA";

fn rej(format: Option<Format>, reason: Reject, detail: String) -> Rejected {
    Rejected::new(format, reason, detail)
}

/// Column positions (in the fields after `CSI_DATA`) of one column set.
struct Cols {
    format: Format,
    seq: Option<usize>,
    mac: usize,
    rssi: usize,
    noise_floor: usize,
    channel: usize,
    local_timestamp: usize,
    len: Option<usize>,
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for o in out.iter_mut() {
        *o = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Decodes one text line (without or with its line ending).
pub fn decode_line(line: &[u8]) -> Result<CsiFrame, Rejected> {
    let Ok(text) = std::str::from_utf8(line) else {
        let at = std::str::from_utf8(line)
            .err()
            .map(|e| e.valid_up_to())
            .unwrap_or(0);
        return Err(rej(
            None,
            Reject::NotUtf8,
            format!("byte {at}: not UTF-8 text"),
        ));
    };
    let text = text.trim();
    if !text.starts_with(PREFIX) {
        let shown: String = text.chars().take(40).collect();
        return Err(rej(
            None,
            Reject::NotCsiLine,
            format!("byte 0: line does not start with {PREFIX}: {shown:?}"),
        ));
    }
    let Some(open) = text.find('[') else {
        return Err(rej(
            None,
            Reject::BadCsiArray,
            "CSI_DATA row without a '[' CSI array".into(),
        ));
    };
    let head = text[..open].trim_end();
    let head = head.strip_suffix('"').unwrap_or(head).trim_end();
    let head = head.strip_suffix(',').unwrap_or(head);
    let fields: Vec<&str> = head.split(',').map(str::trim).collect();
    if fields.first() != Some(&PREFIX) {
        return Err(rej(
            None,
            Reject::NotCsiLine,
            format!("byte 0: first column is {:?}, not {PREFIX}", fields.first()),
        ));
    }
    let meta = &fields[1..];
    let n = meta.len();
    let numeric_second = meta.first().is_some_and(|s| s.parse::<i64>().is_ok());
    let cols = if !numeric_second {
        if n != 22 && n != 24 {
            return Err(rej(
                Some(Format::Esp32CsiTool),
                Reject::BadColumnCount,
                format!("{n} columns before the CSI array; ESP32-CSI-Tool rows have 22 or 24"),
            ));
        }
        Cols {
            format: Format::Esp32CsiTool,
            seq: None,
            mac: 1,
            rssi: 2,
            noise_floor: 13,
            channel: 15,
            local_timestamp: 17,
            len: None,
        }
    } else if n == 23 {
        Cols {
            format: Format::EspCsi,
            seq: Some(0),
            mac: 1,
            rssi: 2,
            noise_floor: 13,
            channel: 15,
            local_timestamp: 17,
            len: Some(21),
        }
    } else if n == 13 {
        Cols {
            format: Format::EspCsiC5C6,
            seq: Some(0),
            mac: 1,
            rssi: 2,
            noise_floor: 4,
            channel: 7,
            local_timestamp: 8,
            len: Some(11),
        }
    } else {
        return Err(rej(
            None,
            Reject::BadColumnCount,
            format!(
                "{n} columns before the CSI array; esp-csi rows have 23 (classic) or 13 (C5/C6)"
            ),
        ));
    };
    let fmt = Some(cols.format);
    let close = match text[open..].find(']') {
        Some(i) => open + i,
        None => {
            return Err(rej(
                fmt,
                Reject::BadCsiArray,
                format!("byte {open}: CSI array is not closed with ']'"),
            ))
        }
    };
    let tail = text[close + 1..].trim();
    let quoted = text[..open].trim_end().ends_with('"');
    if !(tail.is_empty() || (quoted && tail == "\"")) {
        return Err(rej(
            fmt,
            Reject::BadCsiArray,
            format!("byte {}: unexpected text after the CSI array", close + 1),
        ));
    }
    let int = |i: usize, name: &str| -> Result<i64, Rejected> {
        meta[i].parse::<i64>().map_err(|_| {
            rej(
                fmt,
                Reject::BadField,
                format!("column {} ({name}) is {:?}, not an integer", i + 2, meta[i]),
            )
        })
    };
    let seq = match cols.seq {
        Some(i) => Some(int(i, "seq")?),
        None => None,
    };
    let mac = parse_mac(meta[cols.mac]).ok_or_else(|| {
        rej(
            fmt,
            Reject::BadField,
            format!(
                "column {} (mac) is {:?}, not a MAC address",
                cols.mac + 2,
                meta[cols.mac]
            ),
        )
    })?;
    let rssi = int(cols.rssi, "rssi")?;
    let noise = int(cols.noise_floor, "noise_floor")?;
    let channel = int(cols.channel, "channel")?;
    let ts = int(cols.local_timestamp, "local_timestamp")?;
    let declared = match cols.len {
        Some(i) => Some(int(i, "len")?),
        None => None,
    };
    let mut values: Vec<i8> = Vec::with_capacity((close - open) / 2);
    let mut at = open + 1;
    for tok in text[open + 1..close].split([' ', ',']) {
        if !tok.is_empty() {
            let v = tok.parse::<i64>().ok().filter(|v| (-128..=127).contains(v));
            match v {
                Some(v) => values.push(v as i8),
                None => {
                    return Err(rej(
                        fmt,
                        Reject::BadCsiValue,
                        format!("byte {at}: CSI value {tok:?} is not an integer in -128..=127"),
                    ))
                }
            }
        }
        at += tok.len() + 1;
    }
    if let Some(len) = declared {
        if len != values.len() as i64 {
            return Err(rej(
                fmt,
                Reject::LenMismatch,
                format!(
                    "len column says {len}, the array holds {} values",
                    values.len()
                ),
            ));
        }
    }
    if values.is_empty() || values.len() / 2 > u16::MAX as usize {
        return Err(rej(
            fmt,
            Reject::BadDimensions,
            format!("{} CSI values", values.len()),
        ));
    }
    if !values.len().is_multiple_of(2) {
        return Err(rej(
            fmt,
            Reject::OddCsiValues,
            format!("{} CSI values: not (imag, real) pairs", values.len()),
        ));
    }
    let samples: Vec<[i8; 2]> = values.chunks_exact(2).map(|p| [p[1], p[0]]).collect();
    let sc = samples.len() as u16;
    let mut f = CsiFrame::new(cols.format, 1, sc, Samples::ComplexI8(samples));
    let clamp16 = |v: i64| v.clamp(i16::MIN as i64, i16::MAX as i64) as i16;
    f.seq = seq.and_then(|s| u64::try_from(s).ok());
    f.mac = Some(mac);
    f.rssi_dbm = Some(clamp16(rssi));
    f.noise_floor_dbm = Some(clamp16(noise));
    f.channel = u16::try_from(channel).ok();
    f.device_time_ns = u64::try_from(ts).ok().and_then(|t| t.checked_mul(1000));
    Ok(f)
}
