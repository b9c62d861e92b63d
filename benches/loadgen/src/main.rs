//! px-load: an open-loop HTTP/1.1 load generator for the side-by-side harness.
//!
//! Requests are *scheduled* at a fixed rate (request k is due at start + k / rate) and
//! sent on whichever keep-alive connection is free; a request's latency runs from its due
//! time, not from when a connection became free to send it. A server that stalls
//! therefore shows the stall in every request scheduled behind it: the correction for
//! coordinated omission that wrk2 and oha `--latency-correction` make. One thread, mio
//! epoll, no pipelining. Prints one JSON object.
//!
//! Usage: px-load --addr 10.99.0.1:8080 --path /json --conns 64 --rate 50000 --secs 10
//!        (or --paths FILE: one path per line, sent in turn)

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::os::fd::AsRawFd;
use timerfd::{ClockId, SetTimeFlags, TimerFd, TimerState};

/// The send timer's token (connections are 0..conns).
const TIMER: Token = Token(usize::MAX);

#[derive(Parser, Debug)]
#[command(about = "Open-loop HTTP/1.1 load at a fixed rate, latency corrected for coordinated omission")]
struct Args {
    /// Server address (loopback or the testbed only).
    #[arg(long)]
    addr: SocketAddr,
    /// Request path.
    #[arg(long, default_value = "/json")]
    path: String,
    /// A file of request paths, one per line, used in turn instead of --path.
    #[arg(long)]
    paths: Option<std::path::PathBuf>,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 64)]
    conns: usize,
    /// Requests per second, all connections together.
    #[arg(long)]
    rate: u64,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

struct Conn {
    sock: TcpStream,
    /// Due time of the request in flight.
    due: Option<Instant>,
    rbuf: Vec<u8>,
    unsent: Vec<u8>,
}

enum Parsed {
    Incomplete,
    Done { status: u16, len: usize },
    Bad,
}

fn parse_response(buf: &[u8]) -> Parsed {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > 64 << 10 { Parsed::Bad } else { Parsed::Incomplete };
    };
    let head = &buf[..end];
    let Ok(text) = std::str::from_utf8(head) else { return Parsed::Bad };
    let mut lines = text.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok());
    let Some(status) = status else { return Parsed::Bad };
    let mut length = 0usize;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                match v.trim().parse() {
                    Ok(n) => length = n,
                    Err(_) => return Parsed::Bad,
                }
            }
        }
    }
    let total = end + 4 + length;
    if buf.len() < total {
        Parsed::Incomplete
    } else {
        Parsed::Done { status, len: total }
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.rate == 0 || a.conns == 0 {
        bail!("--rate and --conns must be above 0");
    }
    let paths: Vec<String> = match &a.paths {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("reading {}", f.display()))?
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => vec![a.path.clone()],
    };
    if paths.is_empty() {
        bail!("--paths file is empty");
    }
    let requests: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| format!("GET {p} HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\n\r\n", a.addr).into_bytes())
        .collect();
    let mut next_req = 0usize;
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(a.conns);
    for i in 0..a.conns {
        let std = std::net::TcpStream::connect(a.addr).with_context(|| format!("connecting to {}", a.addr))?;
        std.set_nodelay(true)?;
        std.set_nonblocking(true)?;
        let mut sock = TcpStream::from_std(std);
        // Readable only: a 60-byte request always fits an idle socket's send buffer, so
        // write interest (one more event per ACK) is asked for only while bytes wait.
        poll.registry().register(&mut sock, Token(i), Interest::READABLE)?;
        conns.push(Conn { sock, due: None, rbuf: Vec::with_capacity(4096), unsent: Vec::new() });
    }
    // epoll's timeout has millisecond granularity (mio rounds up): a timerfd wakes us
    // for the next due request to the microsecond, so sends are not late by up to 1 ms.
    let mut timer = TimerFd::new_custom(ClockId::Monotonic, true, true)?;
    poll.registry().register(&mut SourceFd(&timer.as_raw_fd()), TIMER, Interest::READABLE)?;
    let mut idle: Vec<usize> = (0..a.conns).rev().collect();
    let mut backlog: VecDeque<Instant> = VecDeque::new();
    let mut events = Events::with_capacity(1024);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(a.warmup);
    let stop_at = measure_from + Duration::from_secs_f64(a.secs);
    let interval_ns = 1e9 / a.rate as f64;
    let mut scheduled: u64 = 0;
    let mut in_flight = 0usize;
    let mut armed_for: Option<Instant> = None;
    let mut lat_us: Vec<u32> = Vec::with_capacity((a.rate as f64 * a.secs) as usize + 1024);
    let (mut completed, mut errors, mut non_2xx) = (0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let now = Instant::now();
        // Schedule every request due by now (open loop: independent of the server).
        if now < stop_at {
            loop {
                let due = start + Duration::from_nanos((scheduled as f64 * interval_ns) as u64);
                if due > now {
                    break;
                }
                backlog.push_back(due);
                scheduled += 1;
            }
        }
        // Send what is due on free connections.
        while let (Some(&due), Some(&c)) = (backlog.front(), idle.last()) {
            backlog.pop_front();
            idle.pop();
            let conn = &mut conns[c];
            conn.due = Some(due);
            let request = &requests[next_req];
            next_req = (next_req + 1) % requests.len();
            in_flight += 1;
            match conn.sock.write(request) {
                Ok(n) if n == request.len() => {}
                Ok(n) => conn.unsent = request[n..].to_vec(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.unsent = request.clone(),
                Err(_) => {
                    errors += 1;
                    conn.due = None;
                    in_flight -= 1;
                }
            }
            if !conn.unsent.is_empty() {
                poll.registry().reregister(&mut conn.sock, Token(c), Interest::READABLE | Interest::WRITABLE)?;
            }
        }
        if now >= stop_at && (in_flight == 0 || now >= stop_at + Duration::from_secs(2)) {
            errors += in_flight as u64; // no answer within 2 s of the end
            break;
        }
        let next_due = start + Duration::from_nanos((scheduled as f64 * interval_ns) as u64);
        let wait = next_due.saturating_duration_since(Instant::now());
        let timeout = if now >= stop_at {
            Some(Duration::from_millis(10))
        } else if wait.is_zero() {
            Some(Duration::ZERO)
        } else {
            // One timerfd_settime per scheduled request, not one per wake-up: a wake-up
            // for a response leaves the timer armed for the same due time.
            if armed_for != Some(next_due) {
                timer.set_state(TimerState::Oneshot(wait), SetTimeFlags::Default);
                armed_for = Some(next_due);
            }
            None
        };
        poll.poll(&mut events, timeout)?;
        for ev in events.iter() {
            if ev.token() == TIMER {
                timer.read();
                armed_for = None;
                continue;
            }
            let c = ev.token().0;
            let conn = &mut conns[c];
            if ev.is_writable() && !conn.unsent.is_empty() {
                if let Ok(n) = conn.sock.write(&conn.unsent) {
                    conn.unsent.drain(..n);
                }
                if conn.unsent.is_empty() {
                    poll.registry().reregister(&mut conn.sock, Token(c), Interest::READABLE)?;
                }
            }
            if !ev.is_readable() {
                continue;
            }
            loop {
                match conn.sock.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        conn.rbuf.extend_from_slice(&buf[..n]);
                        // A short read emptied the socket: more data raises a new edge,
                        // so the read that would only say WouldBlock is saved.
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
            loop {
                match parse_response(&conn.rbuf) {
                    Parsed::Incomplete => break,
                    Parsed::Bad => {
                        errors += 1;
                        conn.rbuf.clear();
                        break;
                    }
                    Parsed::Done { status, len } => {
                        conn.rbuf.drain(..len);
                        let Some(due) = conn.due.take() else {
                            errors += 1; // an answer nobody asked for
                            continue;
                        };
                        let done = Instant::now();
                        if !(200..300).contains(&status) {
                            non_2xx += 1;
                        }
                        if due >= measure_from {
                            completed += 1;
                            lat_us.push(done.duration_since(due).as_micros().min(u32::MAX as u128) as u32);
                        }
                        idle.push(c);
                        in_flight -= 1;
                    }
                }
            }
        }
    }
    lat_us.sort_unstable();
    let report = serde_json::json!({
        "target_rps": a.rate,
        "conns": a.conns,
        "secs": a.secs,
        "completed": completed,
        "achieved_rps": completed as f64 / a.secs,
        "errors": errors,
        "unsent": backlog.len(),
        "non_2xx": non_2xx,
        "p50_us": percentile(&lat_us, 50.0),
        "p90_us": percentile(&lat_us, 90.0),
        "p99_us": percentile(&lat_us, 99.0),
        "p999_us": percentile(&lat_us, 99.9),
        "max_us": lat_us.last().copied().unwrap_or(0),
    });
    println!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_complete_and_partial_responses() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 404";
        assert!(matches!(parse_response(r), Parsed::Done { status: 200, len: 43 }));
        assert!(matches!(parse_response(&r[..40]), Parsed::Incomplete));
        assert!(matches!(parse_response(b"HTTP/1.1 xx\r\n\r\n"), Parsed::Bad));
    }

    #[test]
    fn percentiles_pick_the_right_rank() {
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&v, 50.0), 500);
        assert_eq!(percentile(&v, 99.0), 990);
        assert_eq!(percentile(&v, 99.9), 999);
        assert_eq!(percentile(&[], 99.0), 0);
    }
}
