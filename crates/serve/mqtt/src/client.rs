//! A blocking MQTT 3.1.1 client over `std::net::TcpStream`: connect (with last will), publish at
//! QoS 0, subscribe, ping, receive and disconnect. Every socket operation has a timeout, and
//! incoming packets are bounded in size, so a silent or hostile broker yields an error, never a
//! hang, a panic or an unbounded allocation.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::packet::{self, Connect, DecodeError, EncodeError, Packet, QoS};

/// What went wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("MQTT broker {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("MQTT broker {addr}: cannot resolve the address: {why}")]
    Resolve { addr: String, why: String },
    #[error("MQTT broker {addr}: sent bytes that are not MQTT 3.1.1 at stream offset {offset}: {source}")]
    Decode {
        addr: String,
        offset: u64,
        #[source]
        source: DecodeError,
    },
    #[error("MQTT broker {addr}: {source}")]
    Encode {
        addr: String,
        #[source]
        source: EncodeError,
    },
    #[error("MQTT broker {addr}: refused the connection: {reason} (CONNACK code {code})")]
    Refused {
        addr: String,
        code: u8,
        reason: &'static str,
    },
    #[error("MQTT broker {addr}: expected {expected}, got {got}")]
    Protocol {
        addr: String,
        expected: &'static str,
        got: &'static str,
    },
    #[error("MQTT broker {addr}: no {waiting_for} within {timeout:?}")]
    Timeout {
        addr: String,
        waiting_for: &'static str,
        timeout: Duration,
    },
    #[error("MQTT broker {addr}: closed the connection")]
    Closed { addr: String },
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect: Connect,
    /// Limit for TCP connect and for the CONNACK.
    pub connect_timeout: Duration,
    /// Socket write timeout: a broker that stops reading turns a write into an error after this.
    pub write_timeout: Duration,
    /// Largest packet accepted from the broker (fixed header included).
    pub max_incoming_packet: usize,
}

impl ClientOptions {
    /// Defaults: 5 s connect timeout, 5 s write timeout, 1 MiB incoming packets.
    pub fn new(connect: Connect) -> Self {
        ClientOptions {
            connect,
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            max_incoming_packet: 1 << 20,
        }
    }
}

/// One connection to a broker.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    addr: String,
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`, for error messages.
    offset: u64,
    max_incoming: usize,
    write_timeout: Duration,
    next_packet_id: u16,
    /// Publications that arrived while waiting for something else, in order.
    pending: std::collections::VecDeque<Packet>,
}

/// Resolves `HOST:PORT` and connects with a timeout, trying each address in turn.
pub fn tcp_connect(addr: &str, timeout: Duration) -> Result<TcpStream, ClientError> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| ClientError::Resolve {
            addr: addr.into(),
            why: e.to_string(),
        })?
        .collect();
    let mut last = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(source) => ClientError::Io {
            addr: addr.into(),
            source,
        },
        None => ClientError::Resolve {
            addr: addr.into(),
            why: "no addresses".into(),
        },
    })
}

impl Client {
    /// Connects to `addr` (`HOST:PORT`), sends CONNECT and waits for an accepting CONNACK.
    pub fn connect(addr: &str, opts: &ClientOptions) -> Result<Client, ClientError> {
        let stream = tcp_connect(addr, opts.connect_timeout)?;
        Client::handshake(stream, addr, opts)
    }

    /// Sends CONNECT over an already open stream and waits for CONNACK.
    pub fn handshake(
        stream: TcpStream,
        addr: &str,
        opts: &ClientOptions,
    ) -> Result<Client, ClientError> {
        let io_err = |source| ClientError::Io {
            addr: addr.into(),
            source,
        };
        stream.set_nodelay(true).map_err(io_err)?;
        let mut c = Client {
            stream,
            addr: addr.into(),
            buf: Vec::new(),
            offset: 0,
            max_incoming: opts.max_incoming_packet.max(16),
            write_timeout: opts.write_timeout.max(Duration::from_millis(1)),
            next_packet_id: 1,
            pending: Default::default(),
        };
        let bytes = packet::encode_connect(&opts.connect).map_err(|e| c.encode_err(e))?;
        c.write(&bytes)?;
        match c.recv_packet(opts.connect_timeout, "CONNACK")? {
            Packet::ConnAck { return_code: 0, .. } => Ok(c),
            Packet::ConnAck { return_code, .. } => Err(ClientError::Refused {
                addr: addr.into(),
                code: return_code,
                reason: packet::connack_reason(return_code),
            }),
            other => Err(ClientError::Protocol {
                addr: addr.into(),
                expected: "CONNACK",
                got: other.name(),
            }),
        }
    }

    fn encode_err(&self, source: EncodeError) -> ClientError {
        ClientError::Encode {
            addr: self.addr.clone(),
            source,
        }
    }

    /// The broker address this client was given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// A reader for the incoming side of this connection, for a thread of its own: it takes
    /// over any bytes already buffered and blocks on reads (no read timeout).
    pub fn split_reader(&mut self) -> Result<PacketReader, ClientError> {
        let io_err = |source| ClientError::Io {
            addr: self.addr.clone(),
            source,
        };
        let stream = self.stream.try_clone().map_err(io_err)?;
        stream.set_read_timeout(None).map_err(io_err)?;
        let mut r = PacketReader::new(stream, self.max_incoming);
        r.buf = std::mem::take(&mut self.buf);
        r.offset = self.offset;
        Ok(r)
    }

    /// Shuts the socket down both ways (unblocks a reader thread); the client is unusable after.
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Writes all of `bytes` within the write timeout in all: a broker that reads a trickle
    /// (partial writes that each finish just before the socket timeout) still fails in time.
    fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let deadline = Instant::now() + self.write_timeout;
        let mut rest = bytes;
        while !rest.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = || ClientError::Timeout {
                addr: self.addr.clone(),
                waiting_for: "room to write (the broker is not reading)",
                timeout: self.write_timeout,
            };
            if left.is_zero() {
                return Err(timeout());
            }
            let io_err = |source| ClientError::Io {
                addr: self.addr.clone(),
                source,
            };
            self.stream
                .set_write_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(io_err)?;
            match self.stream.write(rest) {
                Ok(0) => return Err(io_err(io::ErrorKind::WriteZero.into())),
                Ok(n) => rest = &rest[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(timeout())
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(())
    }

    /// Publishes at QoS 0.
    pub fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        retain: bool,
    ) -> Result<(), ClientError> {
        let bytes =
            packet::encode_publish(topic, payload, retain).map_err(|e| self.encode_err(e))?;
        self.write(&bytes)
    }

    /// Sends PINGREQ (the answer arrives through [`Client::recv`]).
    pub fn ping(&mut self) -> Result<(), ClientError> {
        self.write(&packet::PINGREQ)
    }

    /// Sends SUBSCRIBE without waiting for the SUBACK (when another thread reads); returns the
    /// packet id.
    pub fn send_subscribe(&mut self, filters: &[(&str, QoS)]) -> Result<u16, ClientError> {
        let id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        let bytes = packet::encode_subscribe(id, filters).map_err(|e| self.encode_err(e))?;
        self.write(&bytes)?;
        Ok(id)
    }

    /// Subscribes and waits up to `timeout` for the SUBACK; returns the granted QoS per filter
    /// (0x80 = refused). Publications that arrive meanwhile are kept for [`Client::recv`].
    pub fn subscribe(
        &mut self,
        filters: &[(&str, QoS)],
        timeout: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        let id = self.send_subscribe(filters)?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout {
                    addr: self.addr.clone(),
                    waiting_for: "SUBACK",
                    timeout,
                });
            }
            match self.recv_packet(left, "SUBACK")? {
                Packet::SubAck {
                    packet_id,
                    return_codes,
                } if packet_id == id => return Ok(return_codes),
                p @ Packet::Publish { .. } => self.pending.push_back(p),
                _ => {}
            }
        }
    }

    /// Waits up to `timeout` for the next packet from the broker (`Ok(None)` on timeout).
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Packet>, ClientError> {
        if let Some(p) = self.pending.pop_front() {
            return Ok(Some(p));
        }
        match self.recv_packet(timeout, "packet") {
            Ok(p) => Ok(Some(p)),
            Err(ClientError::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn recv_packet(
        &mut self,
        timeout: Duration,
        waiting_for: &'static str,
    ) -> Result<Packet, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            match packet::decode(&self.buf, self.max_incoming) {
                Ok(Some((p, n))) => {
                    self.buf.drain(..n);
                    self.offset += n as u64;
                    return Ok(p);
                }
                Ok(None) => {}
                Err(source) => {
                    return Err(ClientError::Decode {
                        addr: self.addr.clone(),
                        offset: self.offset,
                        source,
                    })
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout {
                    addr: self.addr.clone(),
                    waiting_for,
                    timeout,
                });
            }
            self.fill(Some(left))?;
        }
    }

    /// Reads whatever the socket has (at most 64 KiB) into the buffer.
    fn fill(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        let io_err = |addr: &str, source| ClientError::Io {
            addr: addr.into(),
            source,
        };
        self.stream
            .set_read_timeout(timeout.map(|t| t.max(Duration::from_millis(1))))
            .map_err(|e| io_err(&self.addr, e))?;
        let mut chunk = [0u8; 65_536];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(ClientError::Closed {
                addr: self.addr.clone(),
            }),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(io_err(&self.addr, e)),
        }
    }

    /// Sends DISCONNECT (the broker then discards the last will) and shuts the socket down.
    pub fn send_disconnect(&mut self) -> Result<(), ClientError> {
        let r = self.write(&packet::DISCONNECT);
        let _ = self.stream.shutdown(Shutdown::Both);
        r
    }

    /// Sends DISCONNECT (the broker then discards the last will) and closes the socket.
    pub fn disconnect(mut self) -> Result<(), ClientError> {
        let r = self.write(&packet::DISCONNECT);
        let _ = self.stream.shutdown(Shutdown::Both);
        r
    }

    /// Closes the socket without DISCONNECT: the broker publishes the last will.
    pub fn abort(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Reads packets from a stream on its own (the publisher's reader thread): same decoding and
/// limits as [`Client`], blocking reads.
#[derive(Debug)]
pub struct PacketReader {
    stream: TcpStream,
    buf: Vec<u8>,
    offset: u64,
    max_incoming: usize,
}

impl PacketReader {
    /// A reader over `stream`, refusing packets larger than `max_incoming` bytes.
    pub fn new(stream: TcpStream, max_incoming: usize) -> Self {
        PacketReader {
            stream,
            buf: Vec::new(),
            offset: 0,
            max_incoming: max_incoming.max(16),
        }
    }

    /// The next packet; blocks until one arrives, the stream closes or the socket fails.
    pub fn next_packet(&mut self, addr: &str) -> Result<Packet, ClientError> {
        loop {
            match packet::decode(&self.buf, self.max_incoming) {
                Ok(Some((p, n))) => {
                    self.buf.drain(..n);
                    self.offset += n as u64;
                    return Ok(p);
                }
                Ok(None) => {}
                Err(source) => {
                    return Err(ClientError::Decode {
                        addr: addr.into(),
                        offset: self.offset,
                        source,
                    })
                }
            }
            let mut chunk = [0u8; 16_384];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ClientError::Closed { addr: addr.into() }),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ClientError::Io {
                        addr: addr.into(),
                        source,
                    })
                }
            }
        }
    }
}
