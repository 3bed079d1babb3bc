//! Ingest: the UDP receive loop and the text-line loop (stdin, serial). Every datagram or
//! line is counted as received and then as decoded (per format) or rejected (per reason);
//! datagrams over [`crate::MAX_DATAGRAM`] bytes are rejected as `too_large` before decoding.
//! Decoded packets update the node table and go to the bounded inference queue, which drops
//! its oldest packet (counted) rather than ever blocking this loop.

use std::io::BufRead;
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use csipose_wire::{decode_datagram, decode_line, CsiFrame, LineSplitter, Rejected};

use crate::decode::{packet, SourceIds};
use crate::nodes::{Seen, SeqEvent};
use crate::{unix_now, Shared, MAX_DATAGRAM, MAX_LINE};

/// Asks the kernel for a receive buffer of `bytes` (best effort): `SO_RCVBUFFORCE` where the
/// process may exceed the system limit (Linux, CAP_NET_ADMIN), else `SO_RCVBUF`, which the
/// kernel caps at `net.core.rmem_max`.
pub fn enlarge_receive_buffer(sock: &UdpSocket, bytes: usize) {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let v: libc::c_int = bytes.min(i32::MAX as usize) as libc::c_int;
        let set = |opt: libc::c_int| {
            // SAFETY: setsockopt on a socket this process owns, with a pointer to a c_int
            // that lives for the call and its exact size.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    &v as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            }
        };
        #[cfg(target_os = "linux")]
        if set(libc::SO_RCVBUFFORCE) == 0 {
            return;
        }
        set(libc::SO_RCVBUF);
    }
    #[cfg(not(unix))]
    let _ = (sock, bytes);
}

/// Receives datagrams until the server stops.
pub fn udp_loop(s: &Shared, sock: UdpSocket) {
    // One byte more than the limit, so that an over-long datagram is seen as such.
    let mut buf = vec![0u8; 65_536];
    let mut sources = SourceIds::default();
    while !s.stopping() {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(v) => v,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                // e.g. ICMP errors surfacing on Linux; count and go on.
                s.stats.with(|c| {
                    *c.rejected
                        .entry(format!("recv_error:{:?}", e.kind()))
                        .or_default() += 1
                });
                continue;
            }
        };
        let received = Instant::now();
        let received_unix = unix_now();
        let bytes = &buf[..n];
        s.stats.with(|c| c.datagrams += 1);
        record(s, bytes, csipose_wire::record::now_ns(), from);
        if n > MAX_DATAGRAM {
            reject(s, "too_large");
            continue;
        }
        match decode_datagram(bytes) {
            Ok(frame) => accept(
                s,
                &frame,
                Some(from),
                &from.to_string(),
                &mut sources,
                received,
                received_unix,
            ),
            Err(r) => reject_wire(s, &r),
        }
    }
}

/// Reads text lines (ESP32 `CSI_DATA` rows) until the stream ends or the server stops.
pub fn line_loop(s: &Shared, mut input: impl BufRead, source: &str) {
    let mut splitter = LineSplitter::new(MAX_LINE);
    let mut sources = SourceIds::default();
    loop {
        if s.stopping() {
            return;
        }
        let chunk = match input.fill_buf() {
            Ok([]) => break,
            Ok(c) => c.to_vec(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("{source}: read error: {e}; no more lines from it");
                break;
            }
        };
        input.consume(chunk.len());
        splitter.feed(&chunk, |line| handle_line(s, line, source, &mut sources));
    }
    splitter.finish(|line| handle_line(s, line, source, &mut sources));
}

fn handle_line(s: &Shared, line: Result<&[u8], Rejected>, source: &str, sources: &mut SourceIds) {
    let received = Instant::now();
    let received_unix = unix_now();
    s.stats.with(|c| c.lines += 1);
    match line.and_then(decode_line) {
        Ok(frame) => accept(s, &frame, None, source, sources, received, received_unix),
        Err(r) => reject_wire(s, &r),
    }
}

fn reject(s: &Shared, reason: &str) {
    s.stats
        .with(|c| *c.rejected.entry(reason.to_string()).or_default() += 1);
}

fn reject_wire(s: &Shared, r: &Rejected) {
    reject(s, r.reason.reason());
}

fn record(s: &Shared, bytes: &[u8], recv_ns: u64, from: SocketAddr) {
    let mut rec = s.recorder.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = rec.as_mut() {
        match r.write(bytes, recv_ns, from) {
            Ok(()) => s.stats.with(|c| c.recorded += 1),
            Err(e) => {
                eprintln!("recording {}: {e:#}; recording stopped", r.path.display());
                if let Some(r) = rec.take() {
                    let _ = r.finish();
                }
            }
        }
    }
}

fn accept(
    s: &Shared,
    frame: &CsiFrame,
    from: Option<SocketAddr>,
    source: &str,
    sources: &mut SourceIds,
    received: Instant,
    received_unix: f64,
) {
    let node = match frame.node_id {
        Some(id) => id,
        None => match sources.id(source) {
            Some(id) => id,
            None => return reject(s, "too_many_sources"),
        },
    };
    let mut p = packet(frame, node, received, received_unix);
    let obs = {
        let mut nodes = s.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.observe(&Seen {
            node,
            addr: from,
            format: p.format,
            seq: p.seq,
            session: frame.session,
            rssi: p.rssi,
            antennas: p.antennas,
            subcarriers: p.subcarriers,
            at: received,
            at_unix: received_unix,
        })
    };
    let Some(obs) = obs else {
        return reject(s, "too_many_nodes");
    };
    s.stats
        .with(|c| *c.decoded.entry(p.format).or_default() += 1);
    match obs.seq {
        // A duplicate carries nothing new for the model; it is counted on the node.
        SeqEvent::Duplicate => {
            s.stats.skip("duplicate");
            return;
        }
        SeqEvent::Reboot => p.reset = true,
        _ => {}
    }
    if s.queue.push(p) {
        s.stats.with(|c| c.queue_dropped += 1);
    }
}
