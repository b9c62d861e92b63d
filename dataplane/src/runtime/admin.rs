//! The admin listener: a kernel socket for operators, on its own thread, never on the
//! data path. `GET /stats` answers JSON and `GET /metrics` Prometheus's text format,
//! both built from the reports the cores publish when asked ([`super::gauge`],
//! [`super::expose`]): the admin thread asks every core, rings its doorbell, and waits
//! at most [`REPORT_WAIT`] for the answers; a core that does not answer in time (a
//! handler hogging it) is shown with its previous report, marked not fresh. The cores
//! never wait for it. `GET /healthz` answers 200 while the appliance serves and 503
//! once it drains (for load balancers and routers that withdraw it). One request per
//! connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::expose::{self, QueueView};
use super::gauge::LoopGauge;
use crate::transport::Doorbell;

/// How long a scrape waits for the cores' fresh reports.
pub(crate) const REPORT_WAIT: Duration = Duration::from_millis(250);

/// A running admin listener; stops when dropped.
pub(crate) struct Admin {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

/// What `/stats` describes besides the gauges.
pub(crate) struct About {
    pub backend: &'static str,
    /// AF_XDP: the attach mode and whether the sockets got zero-copy.
    pub xdp_mode: Option<String>,
    pub started: Instant,
    /// Set when shutdown begins: `/healthz` then answers 503.
    pub draining: Arc<AtomicBool>,
    /// The configuration in force, as JSON (the database password left out).
    pub config: serde_json::Value,
    /// Route labels, index as in each core's latency table.
    pub routes: Vec<&'static str>,
}

/// The cores' gauges and how to wake them.
pub(crate) struct Cores {
    pub gauges: Arc<[LoopGauge]>,
    pub bells: Vec<Doorbell>,
}

impl Cores {
    /// Asks every core for a fresh report and waits for the answers (at most
    /// [`REPORT_WAIT`]).
    fn views(&self) -> Vec<QueueView> {
        let gens: Vec<u64> = self.gauges.iter().map(LoopGauge::ask).collect();
        for bell in &self.bells {
            bell();
        }
        let until = Instant::now() + REPORT_WAIT;
        while Instant::now() < until && !self.gauges.iter().zip(&gens).all(|(g, &gen)| g.answered(gen)) {
            std::thread::sleep(Duration::from_micros(200));
        }
        self.gauges
            .iter()
            .zip(gens)
            .enumerate()
            .map(|(queue, (g, gen))| QueueView { queue, gauge: g.read(), report: g.report(), fresh: g.answered(gen) })
            .collect()
    }
}

impl Admin {
    /// Binds `listen` and serves it; `None` (with a warning) if it cannot be bound, since
    /// the data path matters more than the admin view.
    pub(crate) fn start(listen: &str, cores: Cores, about: About) -> Option<Admin> {
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
                        let _ = answer(s, &cores, &about);
                    }
                }
            })
            .ok()?;
        tracing::info!("admin listener on http://{addr}/stats (and /metrics, /healthz)");
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

fn answer(mut s: TcpStream, cores: &Cores, about: &About) -> std::io::Result<()> {
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
    const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
    let (status, kind, body) = match (words.next(), words.next()) {
        (Some("GET"), Some("/stats")) => ("200 OK", JSON, expose::stats_json(about, &cores.views())),
        (Some("GET"), Some("/metrics")) => ("200 OK", PROMETHEUS, expose::metrics_text(about, &cores.views())),
        (Some("GET"), Some("/healthz")) if about.draining.load(Ordering::Acquire) => {
            ("503 Service Unavailable", "text/plain", "draining\n".to_string())
        }
        (Some("GET"), Some("/healthz")) => ("200 OK", "text/plain", "serving\n".to_string()),
        (Some("GET"), Some(_)) => {
            ("404 Not Found", JSON, "{\"error\":\"not found; try /stats, /metrics or /healthz\"}\n".to_string())
        }
        _ => ("400 Bad Request", JSON, "{\"error\":\"GET /stats, /metrics or /healthz\"}\n".to_string()),
    };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
