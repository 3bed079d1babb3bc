//! Recording files: the raw datagrams a server received, with receive time and source
//! address, so that `replay` can send the same stream again bit-exactly.
//!
//! [`RecordWriter`] appends one record per datagram with a single `write` (a killed process
//! loses nothing already appended), calls `fsync` at most once per `sync_interval` (so a
//! machine crash loses at most that much when [`RecordWriter::tick`] or appends come at
//! least that often), and rotates into numbered part files at a size limit:
//! `{prefix}-00000.csirec`, `{prefix}-00001.csirec`, ... Part files are created new, never
//! overwritten. [`RecordReader`] reads every complete record and reports a cut-off last
//! record (see [`RecordReader::truncation`]) instead of failing.
//!
//! File layout (little-endian; FORMATS.md, "Recording file"):
//! header, 32 bytes: magic `89 43 53 49 52 45 43 0A` (`\x89CSIREC\n`), u16 version = 1,
//! u16 header length = 32, u32 part number, u64 creation time (ns since the Unix epoch),
//! u32 reserved = 0, u32 CRC32 of bytes 0..28; then records: u64 receive time (ns since the
//! Unix epoch), u8 address family (4 or 6), u8 reserved = 0, u16 source port, 16 bytes
//! source address (IPv4 in the first 4, the rest 0), u32 datagram length n (≤ 65535),
//! n datagram bytes, u32 CRC32 of the record's bytes before it.

use crate::decode::MAX_DATAGRAM;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// File magic.
pub const MAGIC: [u8; 8] = *b"\x89CSIREC\n";
/// Version written and read.
pub const VERSION: u16 = 1;
/// File header bytes.
pub const HEADER: usize = 32;
/// Record bytes besides the datagram (32 before, 4 CRC after).
pub const RECORD_OVERHEAD: usize = 36;
/// The file-name extension of part files.
pub const EXTENSION: &str = "csirec";

/// A recording error: the file, the byte offset and what was wrong.
#[derive(Debug)]
pub struct RecordError {
    pub path: PathBuf,
    pub offset: u64,
    pub msg: String,
}

impl RecordError {
    fn new(path: &Path, offset: u64, msg: impl Into<String>) -> Self {
        RecordError {
            path: path.to_path_buf(),
            offset,
            msg: msg.into(),
        }
    }
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: byte {}: {}",
            self.path.display(),
            self.offset,
            self.msg
        )
    }
}

impl std::error::Error for RecordError {}

/// One recorded datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Receive time, ns since the Unix epoch.
    pub recv_time_ns: u64,
    pub source: SocketAddr,
    pub data: Vec<u8>,
}

/// Now, in ns since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Writer settings.
#[derive(Clone, Copy, Debug)]
pub struct RecordOptions {
    /// Rotate to a new part file when the next record would make the part larger than this
    /// (a part always takes at least one record).
    pub max_part_bytes: u64,
    /// Longest time between `fsync`s while there are unsynced records.
    pub sync_interval: Duration,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            max_part_bytes: 256 * 1024 * 1024,
            sync_interval: Duration::from_secs(1),
        }
    }
}

/// Appends datagrams to a recording (see the module docs).
pub struct RecordWriter {
    prefix: PathBuf,
    opts: RecordOptions,
    file: File,
    part: u32,
    part_bytes: u64,
    paths: Vec<PathBuf>,
    records: u64,
    bytes: u64,
    dirty: bool,
    last_sync: Instant,
    buf: Vec<u8>,
}

/// The path of part `part` of the recording `prefix`.
pub fn part_path(prefix: &Path, part: u32) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(format!("-{part:05}.{EXTENSION}"));
    PathBuf::from(s)
}

fn header_bytes(part: u32, created_ns: u64) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_le_bytes());
    h[10..12].copy_from_slice(&(HEADER as u16).to_le_bytes());
    h[12..16].copy_from_slice(&part.to_le_bytes());
    h[16..24].copy_from_slice(&created_ns.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

impl RecordWriter {
    /// Starts a recording: creates `{prefix}-00000.csirec` (refusing to overwrite anything).
    pub fn create(prefix: impl AsRef<Path>, opts: RecordOptions) -> Result<Self, RecordError> {
        let prefix = prefix.as_ref().to_path_buf();
        if opts.max_part_bytes < (HEADER + RECORD_OVERHEAD) as u64 {
            return Err(RecordError::new(
                &prefix,
                0,
                format!(
                    "part size limit {} is below one record",
                    opts.max_part_bytes
                ),
            ));
        }
        let (file, path) = Self::open_part(&prefix, 0)?;
        Ok(RecordWriter {
            prefix,
            opts,
            file,
            part: 0,
            part_bytes: HEADER as u64,
            paths: vec![path],
            records: 0,
            bytes: HEADER as u64,
            dirty: true,
            last_sync: Instant::now(),
            buf: Vec::new(),
        })
    }

    fn open_part(prefix: &Path, part: u32) -> Result<(File, PathBuf), RecordError> {
        let path = part_path(prefix, part);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| RecordError::new(&path, 0, format!("cannot create: {e}")))?;
        file.write_all(&header_bytes(part, now_ns()))
            .and_then(|_| file.sync_data())
            .map_err(|e| RecordError::new(&path, 0, format!("cannot write: {e}")))?;
        // The new name must survive a crash too.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok((file, path))
    }

    /// Appends one datagram received at `recv_time_ns` from `source`.
    pub fn append(
        &mut self,
        recv_time_ns: u64,
        source: SocketAddr,
        data: &[u8],
    ) -> Result<(), RecordError> {
        if data.len() > MAX_DATAGRAM {
            return Err(RecordError::new(
                self.current_path(),
                self.part_bytes,
                format!("datagram of {} bytes exceeds {MAX_DATAGRAM}", data.len()),
            ));
        }
        let len = (RECORD_OVERHEAD + data.len()) as u64;
        if self.part_bytes > HEADER as u64 && self.part_bytes + len > self.opts.max_part_bytes {
            self.rotate()?;
        }
        self.buf.clear();
        self.buf.extend_from_slice(&recv_time_ns.to_le_bytes());
        let (family, port, addr) = match source {
            SocketAddr::V4(a) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.ip().octets());
                (4u8, a.port(), b)
            }
            SocketAddr::V6(a) => (6u8, a.port(), a.ip().octets()),
        };
        self.buf.push(family);
        self.buf.push(0);
        self.buf.extend_from_slice(&port.to_le_bytes());
        self.buf.extend_from_slice(&addr);
        self.buf
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(data);
        let crc = crc32fast::hash(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        let offset = self.part_bytes;
        let path = self.paths[self.paths.len() - 1].clone();
        self.file
            .write_all(&self.buf)
            .map_err(|e| RecordError::new(&path, offset, format!("cannot write: {e}")))?;
        self.part_bytes += len;
        self.bytes += len;
        self.records += 1;
        self.dirty = true;
        self.tick()
    }

    /// Calls `fsync` if records are unsynced and `sync_interval` has passed since the last.
    /// Call it about once per second while idle, so the last records reach the disk.
    pub fn tick(&mut self) -> Result<(), RecordError> {
        if self.dirty && self.last_sync.elapsed() >= self.opts.sync_interval {
            self.sync()?;
        }
        Ok(())
    }

    /// `fsync`s now.
    pub fn sync(&mut self) -> Result<(), RecordError> {
        let offset = self.part_bytes;
        self.file.sync_data().map_err(|e| {
            RecordError::new(self.current_path(), offset, format!("cannot fsync: {e}"))
        })?;
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), RecordError> {
        self.sync()?;
        let part = self
            .part
            .checked_add(1)
            .ok_or_else(|| RecordError::new(self.current_path(), 0, "too many part files"))?;
        let (file, path) = Self::open_part(&self.prefix, part)?;
        self.file = file;
        self.part = part;
        self.part_bytes = HEADER as u64;
        self.bytes += HEADER as u64;
        self.paths.push(path);
        Ok(())
    }

    /// Syncs and closes; returns the part files written, in order.
    pub fn finish(mut self) -> Result<Vec<PathBuf>, RecordError> {
        self.sync()?;
        Ok(std::mem::take(&mut self.paths))
    }

    /// The part file being written.
    pub fn current_path(&self) -> &Path {
        &self.paths[self.paths.len() - 1]
    }
    /// Every part file so far, in order.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }
    /// Records appended.
    pub fn records(&self) -> u64 {
        self.records
    }
    /// Bytes written over all parts (headers included).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// The file header of a recording part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub version: u16,
    pub part: u32,
    pub created_ns: u64,
}

/// Where a part file ended inside a record (a killed writer's last, partial record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// Offset of the partial record.
    pub offset: u64,
    /// Bytes of it present.
    pub got: u64,
    /// Bytes it needed (when its length field was complete).
    pub needed: Option<u64>,
}

/// Reads one recording part file.
pub struct RecordReader<R> {
    input: R,
    path: PathBuf,
    header: FileHeader,
    pos: u64,
    truncation: Option<Truncation>,
    done: bool,
}

impl RecordReader<BufReader<File>> {
    /// Opens a part file and checks its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, RecordError> {
        let path = path.as_ref();
        let f =
            File::open(path).map_err(|e| RecordError::new(path, 0, format!("cannot open: {e}")))?;
        RecordReader::new(BufReader::new(f), path)
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Whether `b` starts with the recording magic.
pub fn is_recording(b: &[u8]) -> bool {
    b.len() >= MAGIC.len() && b[..MAGIC.len()] == MAGIC
}

impl<R: Read> RecordReader<R> {
    /// Wraps a stream; `path` names it in errors.
    pub fn new(mut input: R, path: impl AsRef<Path>) -> Result<Self, RecordError> {
        let path = path.as_ref();
        let mut h = [0u8; HEADER];
        let n = read_full(&mut input, &mut h)
            .map_err(|e| RecordError::new(path, 0, format!("read error: {e}")))?;
        if !is_recording(&h[..n]) {
            return Err(RecordError::new(
                path,
                0,
                "not a csipose recording (magic \\x89CSIREC\\n missing)",
            ));
        }
        if n < HEADER {
            return Err(RecordError::new(
                path,
                0,
                format!("header cut off: {n} of {HEADER} bytes"),
            ));
        }
        let version = u16::from_le_bytes([h[8], h[9]]);
        if version != VERSION {
            return Err(RecordError::new(
                path,
                8,
                format!("version {version}; this build reads {VERSION}"),
            ));
        }
        let hlen = u16::from_le_bytes([h[10], h[11]]);
        if hlen as usize != HEADER {
            return Err(RecordError::new(
                path,
                10,
                format!("header length {hlen}, expected {HEADER}"),
            ));
        }
        let crc = u32::from_le_bytes([h[28], h[29], h[30], h[31]]);
        if crc != crc32fast::hash(&h[..28]) {
            return Err(RecordError::new(path, 28, "header CRC32 mismatch"));
        }
        let header = FileHeader {
            version,
            part: u32::from_le_bytes([h[12], h[13], h[14], h[15]]),
            created_ns: u64::from_le_bytes(h[16..24].try_into().unwrap_or([0; 8])),
        };
        Ok(RecordReader {
            input,
            path: path.to_path_buf(),
            header,
            pos: HEADER as u64,
            truncation: None,
            done: false,
        })
    }
    pub fn header(&self) -> &FileHeader {
        &self.header
    }
    /// After iteration: the cut-off last record, if the file ended inside one.
    pub fn truncation(&self) -> Option<Truncation> {
        self.truncation
    }
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn next_record(&mut self) -> Option<Result<Record, RecordError>> {
        let start = self.pos;
        let mut head = [0u8; 32];
        let n = match read_full(&mut self.input, &mut head) {
            Ok(n) => n,
            Err(e) => {
                return Some(Err(RecordError::new(
                    &self.path,
                    start,
                    format!("read error: {e}"),
                )))
            }
        };
        if n == 0 {
            return None;
        }
        if n < head.len() {
            self.truncation = Some(Truncation {
                offset: start,
                got: n as u64,
                needed: None,
            });
            return None;
        }
        let len = u32::from_le_bytes([head[28], head[29], head[30], head[31]]) as usize;
        if len > MAX_DATAGRAM {
            return Some(Err(RecordError::new(
                &self.path,
                start + 28,
                format!("record length {len} exceeds {MAX_DATAGRAM}"),
            )));
        }
        let mut rest = vec![0u8; len + 4];
        let got = match read_full(&mut self.input, &mut rest) {
            Ok(n) => n,
            Err(e) => {
                return Some(Err(RecordError::new(
                    &self.path,
                    start,
                    format!("read error: {e}"),
                )))
            }
        };
        let total = (RECORD_OVERHEAD + len) as u64;
        if got < rest.len() {
            self.truncation = Some(Truncation {
                offset: start,
                got: (32 + got) as u64,
                needed: Some(total),
            });
            return None;
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.update(&rest[..len]);
        let want = u32::from_le_bytes([rest[len], rest[len + 1], rest[len + 2], rest[len + 3]]);
        if crc.finalize() != want {
            return Some(Err(RecordError::new(
                &self.path,
                start,
                format!("record CRC32 mismatch ({len}-byte datagram)"),
            )));
        }
        let port = u16::from_le_bytes([head[10], head[11]]);
        let ip = match head[8] {
            4 => IpAddr::V4(Ipv4Addr::new(head[12], head[13], head[14], head[15])),
            6 => {
                let o: [u8; 16] = head[12..28].try_into().unwrap_or([0; 16]);
                IpAddr::V6(Ipv6Addr::from(o))
            }
            f => {
                return Some(Err(RecordError::new(
                    &self.path,
                    start + 8,
                    format!("address family {f} is neither 4 nor 6"),
                )))
            }
        };
        rest.truncate(len);
        self.pos += total;
        Some(Ok(Record {
            recv_time_ns: u64::from_le_bytes(head[..8].try_into().unwrap_or([0; 8])),
            source: SocketAddr::new(ip, port),
            data: rest,
        }))
    }
}

impl<R: Read> Iterator for RecordReader<R> {
    type Item = Result<Record, RecordError>;
    /// Records in order; ends at the end of the file, at a cut-off last record (see
    /// [`RecordReader::truncation`]) or after the first error (a damaged record cannot be
    /// skipped reliably).
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_record();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}
