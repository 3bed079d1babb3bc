//! The decoded frame every wire format yields: metadata the format carries (each optional)
//! and the CSI samples as `[antenna][subcarrier]`, in the sample type the format sent.

/// The wire formats [`crate::decode_datagram`] tells apart. `name()` strings are stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// RuView ADR-018 binary frames (magic `0xC511_00xx`).
    Adr018,
    /// Nexmon CSI UDP payloads (nexmon header magic `0x1111`).
    Nexmon,
    /// ESP32-CSI-Tool `CSI_DATA` text lines (`CSI_DATA,<role>,<mac>,...,[v v ...]`).
    Esp32CsiTool,
    /// espressif esp-csi `CSI_DATA` lines, classic chips (ESP32, S2, S3, C3): 24 columns.
    EspCsi,
    /// espressif esp-csi `CSI_DATA` lines, C5/C6 column set: 14 columns.
    EspCsiC5C6,
    /// The csipose live frame (FORMATS.md, "Live frame").
    Live,
}

impl Format {
    pub const ALL: [Format; 6] = [
        Format::Adr018,
        Format::Nexmon,
        Format::Esp32CsiTool,
        Format::EspCsi,
        Format::EspCsiC5C6,
        Format::Live,
    ];
    /// Stable name used in counters, logs and the API.
    pub fn name(self) -> &'static str {
        match self {
            Format::Adr018 => "adr018",
            Format::Nexmon => "nexmon",
            Format::Esp32CsiTool => "esp32_csi_tool",
            Format::EspCsi => "esp_csi",
            Format::EspCsiC5C6 => "esp_csi_c5c6",
            Format::Live => "live",
        }
    }
    /// The format a [`Format::name`] string names.
    pub fn from_name(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == s)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The sample type of a live frame's payload (its on-wire code in FORMATS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SampleType {
    /// (re, im) as two i8.
    ComplexI8,
    /// (re, im) as two little-endian i16.
    ComplexI16,
    /// (re, im) as two little-endian IEEE-754 f32.
    ComplexF32,
    /// Amplitude only, one little-endian f32.
    AmplitudeF32,
}

impl SampleType {
    /// The on-wire code (byte 5 of the live frame).
    pub fn code(self) -> u8 {
        match self {
            SampleType::ComplexI8 => 1,
            SampleType::ComplexI16 => 2,
            SampleType::ComplexF32 => 3,
            SampleType::AmplitudeF32 => 4,
        }
    }
    pub fn from_code(c: u8) -> Option<SampleType> {
        match c {
            1 => Some(SampleType::ComplexI8),
            2 => Some(SampleType::ComplexI16),
            3 => Some(SampleType::ComplexF32),
            4 => Some(SampleType::AmplitudeF32),
            _ => None,
        }
    }
    /// Bytes per sample on the wire.
    pub fn bytes(self) -> usize {
        match self {
            SampleType::ComplexI8 => 2,
            SampleType::ComplexI16 => 4,
            SampleType::ComplexF32 => 8,
            SampleType::AmplitudeF32 => 4,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            SampleType::ComplexI8 => "complex_i8",
            SampleType::ComplexI16 => "complex_i16",
            SampleType::ComplexF32 => "complex_f32",
            SampleType::AmplitudeF32 => "amplitude_f32",
        }
    }
}

/// CSI samples, `antennas × subcarriers` of them, antenna-major (`[a * subcarriers + s]`).
/// Complex samples are `[re, im]` whatever order the wire format used.
#[derive(Clone, Debug, PartialEq)]
pub enum Samples {
    ComplexI8(Vec<[i8; 2]>),
    ComplexI16(Vec<[i16; 2]>),
    ComplexF32(Vec<[f32; 2]>),
    AmplitudeF32(Vec<f32>),
}

impl Samples {
    pub fn len(&self) -> usize {
        match self {
            Samples::ComplexI8(v) => v.len(),
            Samples::ComplexI16(v) => v.len(),
            Samples::ComplexF32(v) => v.len(),
            Samples::AmplitudeF32(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn sample_type(&self) -> SampleType {
        match self {
            Samples::ComplexI8(_) => SampleType::ComplexI8,
            Samples::ComplexI16(_) => SampleType::ComplexI16,
            Samples::ComplexF32(_) => SampleType::ComplexF32,
            Samples::AmplitudeF32(_) => SampleType::AmplitudeF32,
        }
    }
    /// |z| of every sample (amplitudes are returned as they are).
    pub fn amplitudes(&self) -> Vec<f32> {
        fn mag(re: f32, im: f32) -> f32 {
            re.hypot(im)
        }
        match self {
            Samples::ComplexI8(v) => v.iter().map(|c| mag(c[0] as f32, c[1] as f32)).collect(),
            Samples::ComplexI16(v) => v.iter().map(|c| mag(c[0] as f32, c[1] as f32)).collect(),
            Samples::ComplexF32(v) => v.iter().map(|c| mag(c[0], c[1])).collect(),
            Samples::AmplitudeF32(v) => v.clone(),
        }
    }
    /// Complex values as `[re, im]` f64, or `None` for amplitude-only samples.
    pub fn complex_f64(&self) -> Option<Vec<[f64; 2]>> {
        match self {
            Samples::ComplexI8(v) => Some(v.iter().map(|c| [c[0] as f64, c[1] as f64]).collect()),
            Samples::ComplexI16(v) => Some(v.iter().map(|c| [c[0] as f64, c[1] as f64]).collect()),
            Samples::ComplexF32(v) => Some(v.iter().map(|c| [c[0] as f64, c[1] as f64]).collect()),
            Samples::AmplitudeF32(_) => None,
        }
    }
    /// The narrowest exact complex representation of `[re, im]` values: int8 when every part
    /// is an integer in i8 range, int16 when in i16 range, else f32 (rounded).
    pub fn from_complex_f64(values: &[[f64; 2]]) -> Samples {
        let all = |lo: f64, hi: f64| {
            values
                .iter()
                .flatten()
                .all(|&x| x.fract() == 0.0 && (lo..=hi).contains(&x))
        };
        if all(-128.0, 127.0) {
            Samples::ComplexI8(values.iter().map(|c| [c[0] as i8, c[1] as i8]).collect())
        } else if all(-32768.0, 32767.0) {
            Samples::ComplexI16(values.iter().map(|c| [c[0] as i16, c[1] as i16]).collect())
        } else {
            Samples::ComplexF32(values.iter().map(|c| [c[0] as f32, c[1] as f32]).collect())
        }
    }
}

/// One decoded CSI frame. Fields a format does not carry are `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct CsiFrame {
    pub format: Format,
    /// Node id the frame names (ADR-018 `node_id`, live frame `node`); else `None` and the
    /// receiver identifies the node by its source address.
    pub node_id: Option<u32>,
    /// Live frame session (changes when the sender restarts its stream).
    pub session: Option<u32>,
    /// The sender's sequence number (ADR-018 `seq`, Nexmon `sequence` (u16),
    /// esp-csi `id`/`seq`, live frame `seq`).
    pub seq: Option<u64>,
    /// Device timestamp in nanoseconds (live frame; ESP32 `local_timestamp` µs × 1000).
    pub device_time_ns: Option<u64>,
    pub rssi_dbm: Option<i16>,
    pub noise_floor_dbm: Option<i16>,
    /// Centre frequency (ADR-018).
    pub freq_mhz: Option<u32>,
    /// WiFi channel (ESP32 lines; Nexmon chanspec's low byte).
    pub channel: Option<u16>,
    /// Transmitter MAC (Nexmon, ESP32 lines).
    pub mac: Option<[u8; 6]>,
    /// Nexmon receive core (each core arrives as its own datagram).
    pub core: Option<u8>,
    /// Nexmon spatial stream.
    pub spatial_stream: Option<u8>,
    pub antennas: u16,
    pub subcarriers: u16,
    /// `antennas × subcarriers` samples, antenna-major.
    pub samples: Samples,
}

impl CsiFrame {
    /// A frame with only the format, shape and samples set.
    pub fn new(format: Format, antennas: u16, subcarriers: u16, samples: Samples) -> Self {
        CsiFrame {
            format,
            node_id: None,
            session: None,
            seq: None,
            device_time_ns: None,
            rssi_dbm: None,
            noise_floor_dbm: None,
            freq_mhz: None,
            channel: None,
            mac: None,
            core: None,
            spatial_stream: None,
            antennas,
            subcarriers,
            samples,
        }
    }
    /// `antennas × subcarriers` amplitudes, antenna-major.
    pub fn amplitudes(&self) -> Vec<f32> {
        self.samples.amplitudes()
    }
}
