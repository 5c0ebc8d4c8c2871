//! `net`: TCP round trips and throughput between two copies of the workload.
//!
//! `net --listen PORT` serves on 0.0.0.0:PORT, one connection after another, until killed;
//! it prints `ISOLAB-READY` once it listens. `net --peer HOST:PORT --n N --mib M` connects,
//! sends a header (N and the byte count, 8 bytes each, little-endian), then makes N round
//! trips of one byte each way (TCP_NODELAY on both ends), then sends M MiB in 64 KiB writes
//! and waits for the server's one-byte receipt, which it sends once it has read them all.
//! Each round trip is timed alone; the throughput is the bytes over the time from the first
//! write to the receipt (MB = 10^6 bytes).

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::json::Object;

const CHUNK: usize = 64 << 10;
/// How long the client retries a refused connection: a server started a moment ago may not
/// listen yet.
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);

pub fn serve(port: u16) -> Result<Object, String> {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
        .map_err(|e| format!("listening on port {port}: {e}"))?;
    crate::out::stdout("ISOLAB-READY\n").map_err(|e| format!("writing to stdout: {e}"))?;
    loop {
        let (stream, _) = listener
            .accept()
            .map_err(|e| format!("accepting on port {port}: {e}"))?;
        // A client that goes away mid-run ends its connection, not the server.
        let _ = answer(stream);
    }
}

/// One client: its header, its round trips, its bulk bytes, the receipt.
fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut header = [0u8; 16];
    match stream.read_exact(&mut header) {
        // A connection that only checks that the server listens.
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
        other => other?,
    }
    let rounds = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
    let mut bytes = u64::from_le_bytes(header[8..].try_into().expect("8 bytes"));
    let mut byte = [0u8; 1];
    for _ in 0..rounds {
        stream.read_exact(&mut byte)?;
        stream.write_all(&byte)?;
    }
    let mut buf = vec![0u8; CHUNK];
    while bytes > 0 {
        let want = buf.len().min(usize::try_from(bytes).unwrap_or(usize::MAX));
        let n = stream.read(&mut buf[..want])?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        bytes -= n as u64;
    }
    stream.write_all(b"k")
}

fn connect(peer: SocketAddr) -> Result<TcpStream, String> {
    let deadline = Instant::now() + CONNECT_PATIENCE;
    loop {
        match TcpStream::connect(peer) {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("connecting to {peer}: {e}")),
        }
    }
}

pub fn ping(peer: SocketAddr, rounds: u64, mib: u64) -> Result<Object, String> {
    let mut stream = connect(peer)?;
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| format!("{what} {peer}: {e}")
    };
    stream
        .set_nodelay(true)
        .map_err(io("setting TCP_NODELAY to"))?;
    let bytes = mib << 20;
    let mut header = [0u8; 16];
    header[..8].copy_from_slice(&rounds.to_le_bytes());
    header[8..].copy_from_slice(&bytes.to_le_bytes());
    stream.write_all(&header).map_err(io("writing to"))?;

    let mut rtts: Vec<u64> = Vec::with_capacity(usize::try_from(rounds).unwrap_or(0));
    let mut byte = [b'p'];
    for _ in 0..rounds {
        let start = Instant::now();
        stream.write_all(&byte).map_err(io("writing to"))?;
        stream.read_exact(&mut byte).map_err(io("reading from"))?;
        rtts.push(crate::nanos(start.elapsed()));
    }
    rtts.sort_unstable();

    let buf = vec![0x5au8; CHUNK];
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        stream.write_all(&buf[..n]).map_err(io("writing to"))?;
        left -= n as u64;
    }
    stream
        .read_exact(&mut byte)
        .map_err(io("reading the receipt from"))?;
    let elapsed_ns = crate::nanos(start.elapsed());

    Ok(Object::mode("net")
        .with("peer", peer.to_string())
        .with("n", rounds)
        .with("rtt_min_ns", rtts[0])
        .with("rtt_median_ns", percentile(&rtts, 50))
        .with("rtt_p99_ns", percentile(&rtts, 99))
        .with("mib", mib)
        .with("elapsed_ns", elapsed_ns)
        .with(
            "mb_s",
            bytes as f64 / 1e6 / (elapsed_ns.max(1) as f64 / 1e9),
        ))
}

/// The nearest-rank percentile of sorted, non-empty `values`.
fn percentile(values: &[u64], p: usize) -> u64 {
    let rank = (values.len() * p).div_ceil(100).max(1);
    values[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&[7], 99), 7);
    }

    #[test]
    fn a_client_and_a_server_exchange_over_loopback() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let peer = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            answer(stream).unwrap();
        });
        let figures = ping(peer, 20, 1).unwrap().render();
        server.join().unwrap();
        assert!(figures.starts_with("{\"mode\":\"net\""), "{figures}");
        assert!(figures.contains("\"n\":20"), "{figures}");
        assert!(figures.contains("\"rtt_median_ns\":"), "{figures}");
    }
}
