//! ESP32-CSI-Tool CSV (with or without its header row): the streaming reader and a writer.
//!
//! Each data row starts with `CSI_DATA`, has the radio metadata as comma-separated columns
//! (type, role, mac, rssi, rate, ..., len) and ends with the CSI as `[v0 v1 ...]`. The
//! values come in pairs `(imaginary, real)` per subcarrier, the order ESP-IDF documents and
//! csiread 1.4.1 reads. A UTF-8 byte-order mark at the start of the file is ignored. Lines
//! that are neither the header nor a `CSI_DATA` row (serial console noise, blank lines) are
//! skipped and counted by reason in [`Reader::skips`].

use crate::complex::Complex;
use crate::error::{CaptureError, Result};
use crate::skips::Skips;
use crate::source::Source;
use std::io::{Read, Write};

/// The ESP32-CSI-Tool column names, used when the file has no header row.
pub const COLUMNS: [&str; 26] = [
    "type",
    "role",
    "mac",
    "rssi",
    "rate",
    "sig_mode",
    "mcs",
    "bandwidth",
    "smoothing",
    "not_sounding",
    "aggregation",
    "stbc",
    "fec_coding",
    "sgi",
    "noise_floor",
    "ampdu_cnt",
    "channel",
    "secondary_channel",
    "local_timestamp",
    "ant",
    "sig_len",
    "rx_state",
    "real_time_set",
    "real_time",
    "len",
    "CSI_DATA",
];

/// [`Reader::skips`] reason for text lines that are not `CSI_DATA` rows.
pub const SKIP_NOT_CSI: &str = "lines that are not CSI_DATA rows (console output)";
/// [`Reader::skips`] reason for empty lines.
pub const SKIP_BLANK: &str = "blank lines";
/// [`Reader::skips`] reason for a line that yielded an error.
pub const SKIP_BAD_ROW: &str = "malformed lines";

/// The longest line accepted (a 64-subcarrier row is about 500 bytes).
pub const MAX_LINE: usize = 1 << 20;

/// One CSV row.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Byte offset of the row in the input.
    pub offset: u64,
    /// 1-based line number.
    pub line: u64,
    /// The metadata columns before the CSI array, as written (names in [`Reader::columns`]).
    pub fields: Vec<String>,
    pub rssi: i32,
    pub mac: String,
    /// One value per subcarrier: `re` is the second of each pair, `im` the first.
    pub csi: Vec<Complex>,
}

/// Streams the rows of an ESP32-CSI-Tool CSV file.
pub struct Reader<R> {
    src: Source<R>,
    line: Vec<u8>,
    line_no: u64,
    columns: Vec<String>,
    rssi_col: usize,
    mac_col: usize,
    skips: Skips,
    done: bool,
}

impl<R: Read> Reader<R> {
    pub fn new(input: R) -> Self {
        Reader {
            src: Source::new(input),
            line: Vec::new(),
            line_no: 0,
            columns: COLUMNS[..COLUMNS.len() - 1]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            rssi_col: 3,
            mac_col: 2,
            skips: Skips::new(),
            done: false,
        }
    }
    /// Names of the metadata columns (from the header row if there was one).
    pub fn columns(&self) -> &[String] {
        &self.columns
    }
    /// Lines read but not yielded as frames so far (neither header nor `CSI_DATA`, or
    /// malformed), all reasons together.
    pub fn skipped(&self) -> u64 {
        self.skips.total()
    }
    /// Lines read but not yielded as frames so far, by reason.
    pub fn skips(&self) -> &Skips {
        &self.skips
    }

    fn next_frame(&mut self) -> Option<Result<Frame>> {
        loop {
            let start = self.src.pos();
            let newline = match self.src.read_line(&mut self.line, MAX_LINE) {
                Ok(None) => return None,
                Ok(Some(newline)) => newline,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            self.line_no += 1;
            let Ok(text) = std::str::from_utf8(&self.line) else {
                return Some(Err(CaptureError::invalid(
                    start,
                    format!("line {} is not UTF-8 text", self.line_no),
                )));
            };
            // A byte-order mark (as some editors and Windows tools write) opens the file.
            let (text, bom) = match text.strip_prefix('\u{feff}') {
                Some(rest) if self.line_no == 1 => (rest, 3),
                _ => (text, 0),
            };
            let lead = bom + (text.len() - text.trim_start().len());
            let text = text.trim();
            if text.starts_with("type,") {
                let names: Vec<String> = text.split(',').map(|s| s.trim().to_string()).collect();
                let meta = &names[..names.len().saturating_sub(1)];
                self.rssi_col = meta.iter().position(|n| n == "rssi").unwrap_or(3);
                self.mac_col = meta.iter().position(|n| n == "mac").unwrap_or(2);
                self.columns = meta.to_vec();
                continue;
            }
            if !text.starts_with("CSI_DATA") {
                if !newline && !text.is_empty() {
                    // A last line cut before its end cannot be told from console noise;
                    // report it rather than drop it silently.
                    let got = self.line.len() as u64;
                    return Some(Err(CaptureError::truncated(start, got + 1, got)));
                }
                self.skips.add(if text.is_empty() {
                    SKIP_BLANK
                } else {
                    SKIP_NOT_CSI
                });
                continue;
            }
            let line_no = self.line_no;
            return Some(
                parse_row(text, self.rssi_col, self.mac_col)
                    .map(|(fields, rssi, mac, csi)| Frame {
                        offset: start,
                        line: line_no,
                        fields,
                        rssi,
                        mac,
                        csi,
                    })
                    .map_err(|(at, msg)| {
                        if newline {
                            CaptureError::invalid(
                                start + (lead + at) as u64,
                                format!("line {line_no}: {msg}"),
                            )
                        } else {
                            // The input ended inside this row: a cut-off last record.
                            let got = self.line.len() as u64;
                            CaptureError::truncated(start, got + 1, got)
                        }
                    }),
            );
        }
    }
}

type Row = (Vec<String>, i32, String, Vec<Complex>);

fn parse_row(
    text: &str,
    rssi_col: usize,
    mac_col: usize,
) -> std::result::Result<Row, (usize, String)> {
    let open = text
        .find('[')
        .ok_or((0, "CSI_DATA row without a '[' CSI array".to_string()))?;
    let close = text[open..]
        .find(']')
        .map(|i| i + open)
        .ok_or((open, "CSI array is not closed with ']'".to_string()))?;
    let head = text[..open].trim_end().trim_end_matches(',');
    let fields: Vec<String> = head.split(',').map(|s| s.trim().to_string()).collect();
    let rssi = fields
        .get(rssi_col)
        .and_then(|s| s.parse::<i32>().ok())
        .ok_or((
            0,
            format!("column {} (rssi) is not an integer", rssi_col + 1),
        ))?;
    let mac = fields.get(mac_col).cloned().unwrap_or_default();
    let mut values = Vec::new();
    let body = &text[open + 1..close];
    let mut at = open + 1;
    for tok in body.split([' ', ',']) {
        if !tok.is_empty() {
            let v: i32 = tok
                .parse()
                .map_err(|_| (at, format!("CSI value {tok:?} is not an integer")))?;
            values.push(v);
        }
        at += tok.len() + 1;
    }
    if values.len() % 2 != 0 {
        return Err((
            open,
            format!(
                "odd number of CSI values ({}): not (imag, real) pairs",
                values.len()
            ),
        ));
    }
    let csi = values
        .chunks_exact(2)
        .map(|p| Complex::new(p[1] as f64, p[0] as f64))
        .collect();
    Ok((fields, rssi, mac, csi))
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Frame>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_frame();
        match &r {
            None => self.done = true,
            Some(Err(e)) => self.skips.add_error(e, SKIP_BAD_ROW),
            Some(Ok(_)) => {}
        }
        r
    }
}

/// Writes rows in ESP32-CSI-Tool layout, with the header row if `header` is true. Each
/// frame's `fields` are written as they are (the `rssi`/`mac` columns must agree with them).
pub fn write_frames<W: Write>(mut out: W, frames: &[Frame], header: bool) -> std::io::Result<()> {
    if header {
        writeln!(out, "{}", COLUMNS.join(","))?;
    }
    for f in frames {
        write!(out, "{},[", f.fields.join(","))?;
        for c in &f.csi {
            write!(out, "{} {} ", c.im as i64, c.re as i64)?;
        }
        writeln!(out, "]")?;
    }
    Ok(())
}
