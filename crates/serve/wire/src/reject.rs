//! Why a datagram or line was not accepted: [`Reject`] (a closed set of reasons with stable
//! names for counters and the API) and [`Rejected`] (the reason, the format it was taken
//! for, and a human-readable detail naming the byte offset).

use crate::frame::Format;

/// A reason a datagram or line was refused (or, for [`Reject::IgnoredType`], counted and
/// deliberately not decoded). [`Reject::reason`] strings are stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    /// Zero bytes.
    Empty,
    /// Longer than [`crate::MAX_DATAGRAM`] (or than the line limit for text).
    TooLarge,
    /// No known format's signature.
    UnknownFormat,
    /// A RuView frame type that is counted and ignored (magics `0xC5110002`, `…04`, `…06`).
    IgnoredType,
    /// A RuView magic (`0xC51100xx`) of a type csipose does not know.
    UnknownType,
    /// Shorter than the format's fixed header.
    Truncated,
    /// The length does not match what the header announces.
    BadLength,
    /// Antenna or subcarrier count zero or above the format's limit.
    BadDimensions,
    /// Live frame: a version csipose does not read.
    BadVersion,
    /// Live frame: an unknown sample-type code.
    BadSampleType,
    /// Live frame: reserved bytes not zero.
    BadReserved,
    /// Live frame: CRC32 mismatch.
    BadCrc,
    /// A float sample that is NaN or infinite.
    NonFinite,
    /// Nexmon: the chip version is not one csipose decodes (and none was configured).
    UnknownChip,
    /// Text: not UTF-8.
    NotUtf8,
    /// Text: a line that is not a `CSI_DATA` row (a header row, console noise).
    NotCsiLine,
    /// Text: more than one line in one datagram.
    MultipleLines,
    /// Text: the column count fits no known column set.
    BadColumnCount,
    /// Text: a metadata column that does not parse.
    BadField,
    /// Text: the CSI array is missing or not closed.
    BadCsiArray,
    /// Text: a CSI value that is not an integer in i8 range.
    BadCsiValue,
    /// Text: an odd number of CSI values (they come in (imag, real) pairs).
    OddCsiValues,
    /// Text: the `len` column disagrees with the number of CSI values.
    LenMismatch,
}

impl Reject {
    pub const ALL: [Reject; 23] = [
        Reject::Empty,
        Reject::TooLarge,
        Reject::UnknownFormat,
        Reject::IgnoredType,
        Reject::UnknownType,
        Reject::Truncated,
        Reject::BadLength,
        Reject::BadDimensions,
        Reject::BadVersion,
        Reject::BadSampleType,
        Reject::BadReserved,
        Reject::BadCrc,
        Reject::NonFinite,
        Reject::UnknownChip,
        Reject::NotUtf8,
        Reject::NotCsiLine,
        Reject::MultipleLines,
        Reject::BadColumnCount,
        Reject::BadField,
        Reject::BadCsiArray,
        Reject::BadCsiValue,
        Reject::OddCsiValues,
        Reject::LenMismatch,
    ];
    /// Stable snake_case name (counter keys, API, logs).
    pub fn reason(self) -> &'static str {
        match self {
            Reject::Empty => "empty",
            Reject::TooLarge => "too_large",
            Reject::UnknownFormat => "unknown_format",
            Reject::IgnoredType => "ignored_type",
            Reject::UnknownType => "unknown_type",
            Reject::Truncated => "truncated",
            Reject::BadLength => "bad_length",
            Reject::BadDimensions => "bad_dimensions",
            Reject::BadVersion => "bad_version",
            Reject::BadSampleType => "bad_sample_type",
            Reject::BadReserved => "bad_reserved",
            Reject::BadCrc => "bad_crc",
            Reject::NonFinite => "non_finite",
            Reject::UnknownChip => "unknown_chip",
            Reject::NotUtf8 => "not_utf8",
            Reject::NotCsiLine => "not_csi_line",
            Reject::MultipleLines => "multiple_lines",
            Reject::BadColumnCount => "bad_column_count",
            Reject::BadField => "bad_field",
            Reject::BadCsiArray => "bad_csi_array",
            Reject::BadCsiValue => "bad_csi_value",
            Reject::OddCsiValues => "odd_csi_values",
            Reject::LenMismatch => "len_mismatch",
        }
    }
    pub fn from_reason(s: &str) -> Option<Reject> {
        Reject::ALL.into_iter().find(|r| r.reason() == s)
    }
    /// True for datagrams that are valid but deliberately not decoded (not an error).
    pub fn is_ignored(self) -> bool {
        matches!(self, Reject::IgnoredType)
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// A refused datagram or line: the reason, the format it was recognised as (`None`: not
/// recognised), and a detail naming the byte offset and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub format: Option<Format>,
    pub reason: Reject,
    pub detail: String,
}

impl Rejected {
    pub fn new(format: Option<Format>, reason: Reject, detail: impl Into<String>) -> Self {
        Rejected {
            format,
            reason,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.format {
            Some(fm) => write!(f, "{fm}: {}: {}", self.reason, self.detail),
            None => write!(f, "{}: {}", self.reason, self.detail),
        }
    }
}

impl std::error::Error for Rejected {}
