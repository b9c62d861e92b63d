//! The admin listener: a kernel socket for operators, on its own thread, never on the
//! data path. `GET /stats` answers JSON built from the snapshots the cores publish
//! ([`super::gauge`]); the cores never wait for it. `GET /healthz` answers 200 while
//! the appliance serves and 503 once it drains (for load balancers and routers that
//! withdraw it). One request per connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::gauge::LoopGauge;

/// A running admin listener; stops when dropped.
pub(crate) struct Admin {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

/// What `/stats` describes besides the gauges.
pub(crate) struct About {
    pub backend: &'static str,
    pub started: Instant,
    /// Set when shutdown begins: `/healthz` then answers 503.
    pub draining: Arc<AtomicBool>,
}

impl Admin {
    /// Binds `listen` and serves it; `None` (with a warning) if it cannot be bound, since
    /// the data path matters more than the admin view.
    pub(crate) fn start(listen: &str, gauges: Arc<[LoopGauge]>, about: About) -> Option<Admin> {
        let addr: SocketAddr = listen.parse().ok()?;
        let listener = match TcpListener::bind(addr) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("admin listener not started on {addr}: {e} (set [admin] listen, or \"\" for off)");
                return None;
            }
        };
        let addr = listener.local_addr().ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("px-admin".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if flag.load(Ordering::Acquire) {
                        break;
                    }
                    if let Ok(s) = conn {
                        let _ = answer(s, &gauges, &about);
                    }
                }
            })
            .ok()?;
        tracing::info!("admin listener on http://{addr}/stats (and /healthz)");
        Some(Admin { stop, addr, thread: Some(thread) })
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the blocking accept; the thread sees the flag and ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(mut s: TcpStream, gauges: &[LoopGauge], about: &About) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 4096];
    let mut len = 0;
    while len < buf.len() {
        let n = s.read(&mut buf[len..])?;
        if n == 0 {
            break;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = std::str::from_utf8(&buf[..len]).unwrap_or("");
    let mut words = head.split_ascii_whitespace();
    const JSON: &str = "application/json";
    let (status, kind, body) = match (words.next(), words.next()) {
        (Some("GET"), Some("/stats")) => ("200 OK", JSON, stats_json(gauges, about)),
        (Some("GET"), Some("/healthz")) if about.draining.load(Ordering::Acquire) => {
            ("503 Service Unavailable", "text/plain", "draining\n".to_string())
        }
        (Some("GET"), Some("/healthz")) => ("200 OK", "text/plain", "serving\n".to_string()),
        (Some("GET"), Some(_)) => {
            ("404 Not Found", JSON, "{\"error\":\"not found; try /stats or /healthz\"}\n".to_string())
        }
        _ => ("400 Bad Request", JSON, "{\"error\":\"GET /stats or /healthz\"}\n".to_string()),
    };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// `/stats`: uptime, version, backend, and per queue the loop's published figures.
pub(crate) fn stats_json(gauges: &[LoopGauge], about: &About) -> String {
    let mut out = format!(
        "{{\"version\":\"{}\",\"backend\":\"{}\",\"uptime_ms\":{},\"queues\":[",
        env!("CARGO_PKG_VERSION"),
        about.backend,
        about.started.elapsed().as_millis()
    );
    for (i, g) in gauges.iter().enumerate() {
        let l = g.read();
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"queue\":{i},\"requests\":{},\"responses\":{},\"connections\":{},\"arena_chunks_free\":{},\
             \"loop\":{{\"busy_ns\":{},\"busy_turns\":{},\"idle_turns\":{}}}}}",
            l.requests, l.responses, l.connections, l.arena_chunks_free, l.busy_ns, l.busy_turns, l.idle_turns
        ));
    }
    out.push_str("]}\n");
    out
}
