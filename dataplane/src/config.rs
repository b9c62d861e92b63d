//! The appliance configuration: a TOML file (see `nic-config/`) mapped onto these
//! structs. Every key has a default; an unknown key or a bad value is an error that names
//! the key and the reason. docs/configuration.md is the reference table.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::http::HttpLimits;
use crate::mem::{HugepagePolicy, HUGEPAGE_BYTES, PAGE_BYTES};
use crate::nic::af_xdp::XdpConfig;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key, or a value of the wrong type.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A value is out of range or conflicts with another key.
    #[error("config key `{key}`: {reason}")]
    Invalid {
        /// Dotted key, e.g. `arena.chunk_bytes`.
        key: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), reason: reason.into() }
}

/// Which I/O path serves traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// Kernel TCP sockets, one SO_REUSEPORT listener and epoll loop per queue.
    Kernel,
    /// AF_XDP rings with the userspace TCP engine.
    AfXdp,
    /// A DPDK port with the userspace TCP engine (built with the cargo feature `dpdk`).
    Dpdk,
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`: what to serve, where, on how many queues.
    pub server: ServerConfig,
    /// `[http]`: request limits and buffering.
    pub http: HttpLimits,
    /// `[arena]`: per-connection arenas and the per-core pool.
    pub arena: ArenaConfig,
    /// `[kernel]`: the kernel-socket backend.
    pub kernel: KernelConfig,
    /// `[af_xdp]`: the AF_XDP backend.
    pub af_xdp: XdpConfig,
    /// `[dpdk]`: the DPDK backend.
    pub dpdk: crate::nic::dpdk::DpdkConfig,
    /// `[tcp]`: the userspace TCP engine (AF_XDP backend).
    pub tcp: crate::tcp::TcpConfig,
    /// `[control]`: the control thread and the I/O threads.
    pub control: ControlConfig,
    /// `[handlers]`: async handlers (deadline, requests in flight).
    pub handlers: HandlersConfig,
    /// `[demo]`: the demo app's upstream for `/demo/upstream/...`.
    pub demo: DemoConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[wiki]`: the Parallelopedia app.
    pub wiki: WikiConfig,
    /// `[db]`: the PostgreSQL database of the tfb app's database routes.
    pub db: DbConfig,
    /// `[admin]`: the admin listener (`/stats`), off the data path.
    pub admin: AdminConfig,
}

/// `[admin]`: a kernel-socket listener for operators, served by its own thread and never
/// on the data port. It reads snapshots each core publishes once per loop turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// `IP:port` of the admin listener (empty: off). If the address cannot be bound, the
    /// appliance serves anyway and logs a warning.
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { listen: "127.0.0.1:9180".into() }
    }
}

/// `[db]`: the PostgreSQL database the tfb app's `/db`, `/queries`, `/updates`,
/// `/fortunes` and `/cached-queries` use, through a pool of connections on every core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbConfig {
    /// `IP:port` of the server (empty: no database; those routes answer 503). With the
    /// AF_XDP backend it must be reachable across the NIC (scripts/db.sh puts it on the
    /// testbed's client side, 10.99.0.2:5432).
    pub address: String,
    /// Role.
    pub user: String,
    /// Its password (SCRAM-SHA-256, md5 or cleartext, whichever the server asks for).
    pub password: String,
    /// Database.
    pub name: String,
    /// Connections per core. Each is a PostgreSQL backend process and carries many
    /// requests at once (pipelined), so a few per core keep the server's cores busy.
    pub connections_per_core: usize,
    /// Time allowed to connect and authenticate.
    pub connect_timeout_ms: u64,
    /// Time a request waits for the database before 503 (a connection with batches and
    /// no answer for this long is closed and opened again).
    pub query_timeout_ms: u64,
    /// First wait before reconnecting after a failure; it doubles up to
    /// `reconnect_max_ms`.
    pub reconnect_min_ms: u64,
    /// Longest wait between reconnection attempts (how soon service resumes once the
    /// database is back, at worst).
    pub reconnect_max_ms: u64,
    /// Batches in flight per connection at most (more wait in the connection's queue).
    pub max_pipeline: usize,
    /// `fail` (a start-up that cannot authenticate, or finds no database or schema,
    /// is refused with the reason) or `warn` (log it and serve; the routes answer 503
    /// until the database is right).
    pub on_start_error: String,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            address: String::new(),
            user: "benchmarkdbuser".into(),
            password: "benchmarkdbpass".into(),
            name: "hello_world".into(),
            connections_per_core: 2,
            connect_timeout_ms: 3000,
            query_timeout_ms: 2000,
            reconnect_min_ms: 50,
            reconnect_max_ms: 1000,
            max_pipeline: 256,
            on_start_error: "fail".into(),
        }
    }
}

/// `[wiki]`: the Parallelopedia app (mounted with `server.apps = [..., "wiki"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WikiConfig {
    /// Index directory written by `px-appliance wiki-index` (required with the wiki app).
    pub dir: String,
    /// How page bytes of a plain dump are read: `io_uring` (the core's own ring, one
    /// submission per loop turn; the I/O threads where the kernel refuses io_uring),
    /// `threads` (the I/O threads, `control.io_threads`) or `inline` (`pread` on the
    /// core: it waits for the disk).
    pub page_reads: String,
    /// A multistream (.bz2) dump: decompressed streams each core keeps, MiB.
    pub stream_cache_mb: u64,
    /// `/offsets` answers each core keeps (prefix and limit → JSON), MiB; 0: none.
    pub offsets_cache_mb: u64,
    /// The title index and page table: copied into hugepages (`auto`: when enough are
    /// free, else mapped, populated and locked; `require`; `off`: mapped and locked).
    pub hugepages: crate::mem::HugepagePolicy,
}

impl Default for WikiConfig {
    fn default() -> Self {
        WikiConfig {
            dir: String::new(),
            page_reads: "io_uring".into(),
            stream_cache_mb: 64,
            offsets_cache_mb: 8,
            hugepages: crate::mem::HugepagePolicy::Auto,
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// I/O path.
    pub backend: Backend,
    /// Address the kernel backend listens on.
    pub listen: SocketAddr,
    /// Number of queues, each served by one pinned core loop.
    pub queues: usize,
    /// CPUs the queues are pinned to, queue i → `cores[i % len]`; empty: queue i → CPU i
    /// modulo the CPU count.
    pub cores: Vec<usize>,
    /// Apps to mount (`tfb`, `demo`).
    pub apps: Vec<String>,
    /// On SIGINT/SIGTERM, how long in-flight responses may take before the loops exit.
    pub shutdown_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            backend: Backend::Kernel,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            queues: 1,
            cores: Vec::new(),
            apps: vec!["tfb".into(), "bytes".into()],
            shutdown_timeout_ms: 4000,
        }
    }
}

/// `[arena]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArenaConfig {
    /// Bytes per chunk lent to a connection (power of two, 4 KiB..=2 MiB).
    pub chunk_bytes: usize,
    /// Most arena bytes one connection may hold; beyond it the request gets 503.
    pub max_bytes_per_conn: usize,
    /// Arena memory mapped per core at start (multiple of 2 MiB), prefaulted.
    pub pool_bytes_per_core: usize,
    /// `auto`, `require` or `off`.
    pub hugepages: HugepagePolicy,
}

const _: () = assert!(DEFAULT_POOL_BYTES.is_multiple_of(HUGEPAGE_BYTES));
const _: () = assert!(HUGEPAGE_BYTES.is_multiple_of(DEFAULT_CHUNK_BYTES));
const DEFAULT_CHUNK_BYTES: usize = 64 << 10;
const DEFAULT_POOL_BYTES: usize = 64 << 20;

impl Default for ArenaConfig {
    fn default() -> Self {
        ArenaConfig {
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            max_bytes_per_conn: 4 << 20,
            pool_bytes_per_core: DEFAULT_POOL_BYTES,
            hugepages: HugepagePolicy::Auto,
        }
    }
}

/// `[kernel]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KernelConfig {
    /// listen(2) backlog per listener.
    pub listen_backlog: i32,
    /// Per-core receive buffer, one read's maximum.
    pub read_buf_bytes: usize,
    /// Most readiness events taken per loop turn.
    pub events_per_turn: usize,
    /// Most reads of one connection per turn before others get a go.
    pub reads_per_turn_max: usize,
    /// Most accepts per turn.
    pub accepts_per_turn_max: usize,
    /// Most client connections per core; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Most client connections one source address may hold on a core; one more is
    /// answered 503 and closed (0: no limit).
    pub max_connections_per_source: usize,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            listen_backlog: 4096,
            read_buf_bytes: 64 << 10,
            events_per_turn: 1024,
            reads_per_turn_max: 8,
            accepts_per_turn_max: 256,
            max_connections: 1 << 20,
            max_connections_per_source: 0,
        }
    }
}

/// `[control]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Capacity of the control thread's job queue, of the I/O threads' queue, and of
    /// each core's answer queue.
    pub queue_depth: usize,
    /// Threads that run jobs which may block (`Ctx::call_blocking`: the wiki app's cold
    /// page reads); 0 runs them on the control thread.
    pub io_threads: usize,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig { queue_depth: 1024, io_threads: 4 }
    }
}

/// `[handlers]`: async handlers, run by each core's executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HandlersConfig {
    /// Time an async handler has to answer before the request is answered 504 and its
    /// future dropped (what it held is released).
    pub deadline_ms: u64,
    /// Async requests in flight on one core before new ones are answered 503 with
    /// `Retry-After: 1`. Each costs its future's memory (a few hundred bytes for the
    /// demo's handlers) plus the request copied out of the connection's buffer.
    pub max_in_flight_per_core: usize,
    /// File reads in flight on one core's io_uring (its ring has this many entries);
    /// more wait for a free slot. Each costs 64 bytes of ring plus its buffer while in
    /// flight.
    pub file_reads_per_core: usize,
}

impl Default for HandlersConfig {
    fn default() -> Self {
        HandlersConfig {
            deadline_ms: 5000,
            max_in_flight_per_core: 16_384,
            file_reads_per_core: crate::app::exec::DEFAULT_FILE_READS,
        }
    }
}

/// `[demo]`: the demo app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// `host:port` of the HTTP server `/demo/upstream/{*path}` relays (empty: the route
    /// answers 503 saying it is not configured).
    pub upstream: String,
    /// Time allowed to connect to the upstream. Above the 1 s initial RTO, so one lost
    /// SYN or SYN-ACK is retransmitted before the request fails.
    pub upstream_connect_timeout_ms: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig { upstream: String::new(), upstream_connect_timeout_ms: 3000 }
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter (`info`, `px_dataplane=debug`); `RUST_LOG` wins when set.
    pub level: String,
    /// `text` (one human-readable line per event) or `json` (one JSON object per line,
    /// for journald or a log shipper).
    pub format: LogFormat,
}

/// How log lines are written (on stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, fields, message.
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Text }
    }
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and validates TOML text (`path` is for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges and cross-key conflicts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.queues == 0 || s.queues > 1024 {
            return Err(invalid("server.queues", format!("must be 1..=1024, got {}", s.queues)));
        }
        if s.apps.is_empty() {
            return Err(invalid("server.apps", "at least one app must be mounted"));
        }
        if s.shutdown_timeout_ms == 0 {
            return Err(invalid("server.shutdown_timeout_ms", "must be positive"));
        }
        self.http.validate().map_err(|(k, r)| invalid(&format!("http.{k}"), r))?;
        if !matches!(self.wiki.page_reads.as_str(), "io_uring" | "threads" | "inline") {
            return Err(invalid(
                "wiki.page_reads",
                format!("must be \"io_uring\", \"threads\" or \"inline\", got {:?}", self.wiki.page_reads),
            ));
        }
        if self.wiki.offsets_cache_mb > 4096 {
            return Err(invalid(
                "wiki.offsets_cache_mb",
                format!("must be at most 4096 (MiB per core), got {}", self.wiki.offsets_cache_mb),
            ));
        }
        if s.apps.iter().any(|a| a == "wiki") && self.wiki.dir.is_empty() {
            return Err(invalid(
                "wiki.dir",
                "the wiki app needs an index directory (--wiki-dir DIR, built by `px-appliance wiki-index`)",
            ));
        }
        let a = &self.arena;
        if !a.chunk_bytes.is_power_of_two() || !(PAGE_BYTES..=HUGEPAGE_BYTES).contains(&a.chunk_bytes) {
            return Err(invalid(
                "arena.chunk_bytes",
                format!("must be a power of two from 4096 to 2097152, got {}", a.chunk_bytes),
            ));
        }
        if a.pool_bytes_per_core == 0 || !a.pool_bytes_per_core.is_multiple_of(HUGEPAGE_BYTES) {
            return Err(invalid(
                "arena.pool_bytes_per_core",
                format!("must be a positive multiple of 2097152, got {}", a.pool_bytes_per_core),
            ));
        }
        if a.max_bytes_per_conn < a.chunk_bytes {
            return Err(invalid("arena.max_bytes_per_conn", "must be at least arena.chunk_bytes"));
        }
        let k = &self.kernel;
        if k.read_buf_bytes < 1024 {
            return Err(invalid("kernel.read_buf_bytes", "must be at least 1024"));
        }
        for (key, v) in [
            ("kernel.events_per_turn", k.events_per_turn),
            ("kernel.reads_per_turn_max", k.reads_per_turn_max),
            ("kernel.accepts_per_turn_max", k.accepts_per_turn_max),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be positive"));
            }
        }
        if k.listen_backlog <= 0 {
            return Err(invalid("kernel.listen_backlog", "must be positive"));
        }
        self.af_xdp.validate().map_err(|(k, r)| invalid(&format!("af_xdp.{k}"), r))?;
        self.tcp.validate().map_err(|(k, r)| invalid(&format!("tcp.{k}"), r))?;
        if self.server.backend == Backend::AfXdp {
            if self.af_xdp.iface.is_empty() {
                return Err(invalid("af_xdp.iface", "required with backend af-xdp (or --iface IF)"));
            }
            crate::net::NetConfig::parse_cidr(&self.af_xdp.ip).map_err(|r| invalid("af_xdp.ip", r))?;
            if !self.af_xdp.ip6.is_empty() {
                crate::net::NetConfig::parse_cidr6(&self.af_xdp.ip6).map_err(|r| invalid("af_xdp.ip6", r))?;
            }
            if !self.af_xdp.gateway6.is_empty() && self.af_xdp.gateway6.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(invalid("af_xdp.gateway6", format!("{:?} is not an IPv6 address", self.af_xdp.gateway6)));
            }
        }
        self.dpdk.validate().map_err(|(k, r)| invalid(&format!("dpdk.{k}"), r))?;
        if self.server.backend == Backend::Dpdk {
            crate::net::NetConfig::parse_cidr(&self.dpdk.ip).map_err(|r| invalid("dpdk.ip", r))?;
            if !self.dpdk.ip6.is_empty() {
                crate::net::NetConfig::parse_cidr6(&self.dpdk.ip6).map_err(|r| invalid("dpdk.ip6", r))?;
            }
        }
        if self.control.io_threads > 256 {
            return Err(invalid("control.io_threads", format!("must be 0..=256, got {}", self.control.io_threads)));
        }
        if self.handlers.deadline_ms == 0 {
            return Err(invalid("handlers.deadline_ms", "must be positive"));
        }
        if self.handlers.max_in_flight_per_core == 0 {
            return Err(invalid("handlers.max_in_flight_per_core", "must be positive"));
        }
        if !(8..=32_768).contains(&self.handlers.file_reads_per_core) {
            return Err(invalid(
                "handlers.file_reads_per_core",
                format!("must be 8..=32768, got {}", self.handlers.file_reads_per_core),
            ));
        }
        if !self.demo.upstream.is_empty() && self.demo.upstream.parse::<SocketAddr>().is_err() {
            return Err(invalid("demo.upstream", format!("must be an IP:port address, got {:?}", self.demo.upstream)));
        }
        if self.control.queue_depth == 0 {
            return Err(invalid("control.queue_depth", "must be positive"));
        }
        self.validate_admin()?;
        self.validate_db()
    }

    fn validate_admin(&self) -> Result<(), ConfigError> {
        let l = &self.admin.listen;
        if !l.is_empty() && l.parse::<SocketAddr>().is_err() {
            return Err(invalid("admin.listen", format!("must be an IP:port address or empty (off), got {l:?}")));
        }
        Ok(())
    }

    fn validate_db(&self) -> Result<(), ConfigError> {
        let db = &self.db;
        if !db.address.is_empty() && db.address.parse::<SocketAddr>().is_err() {
            return Err(invalid("db.address", format!("must be an IP:port address, got {:?}", db.address)));
        }
        for (key, v) in [("db.user", &db.user), ("db.password", &db.password), ("db.name", &db.name)] {
            if v.contains('\0') {
                return Err(invalid(key, "must not contain NUL"));
            }
        }
        if db.user.is_empty() || db.name.is_empty() {
            return Err(invalid(if db.user.is_empty() { "db.user" } else { "db.name" }, "must not be empty"));
        }
        if !(1..=64).contains(&db.connections_per_core) {
            return Err(invalid("db.connections_per_core", format!("must be 1..=64, got {}", db.connections_per_core)));
        }
        for (key, v) in [
            ("db.connect_timeout_ms", db.connect_timeout_ms),
            ("db.query_timeout_ms", db.query_timeout_ms),
            ("db.reconnect_min_ms", db.reconnect_min_ms),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be positive"));
            }
        }
        if db.reconnect_max_ms < db.reconnect_min_ms {
            return Err(invalid("db.reconnect_max_ms", "must be at least db.reconnect_min_ms"));
        }
        if db.max_pipeline == 0 {
            return Err(invalid("db.max_pipeline", "must be positive"));
        }
        if !matches!(db.on_start_error.as_str(), "fail" | "warn") {
            return Err(invalid("db.on_start_error", format!("must be fail or warn, got {:?}", db.on_start_error)));
        }
        Ok(())
    }

    /// The CPU queue `q` is pinned to.
    pub fn core_for_queue(&self, q: usize, cpus: usize) -> usize {
        match self.server.cores.as_slice() {
            [] => q % cpus.max(1),
            cores => cores[q % cores.len()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(t, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_names_the_key() {
        let e = parse("[http]\nmax_uri_byts = 10\n").unwrap_err().to_string();
        assert!(e.contains("max_uri_byts"), "{e}");
        let e = parse("[srever]\n").unwrap_err().to_string();
        assert!(e.contains("srever"), "{e}");
    }

    #[test]
    fn bad_values_name_key_and_reason() {
        let e = parse("[arena]\nchunk_bytes = 5000\n").unwrap_err().to_string();
        assert!(e.contains("arena.chunk_bytes") && e.contains("power of two"), "{e}");
        let e = parse("[http]\nmax_headers = 500\n").unwrap_err().to_string();
        assert!(e.contains("http.max_headers"), "{e}");
        let e = parse("[server]\nqueues = 0\n").unwrap_err().to_string();
        assert!(e.contains("server.queues"), "{e}");
        let e = parse("[server]\nbackend = \"dpdk\"\n").unwrap_err().to_string();
        assert!(e.contains("dpdk.ip"), "{e}");
        let e = parse("[server]\nbackend = \"dpdx\"\n").unwrap_err().to_string();
        assert!(e.contains("dpdx") && e.contains("backend"), "{e}");
        let e = parse("[dpdk]\nmbufs_per_queue = 100\n").unwrap_err().to_string();
        assert!(e.contains("dpdk.mbufs_per_queue") && e.contains("at least"), "{e}");
        let e = parse("[server]\nqueues = \"two\"\n").unwrap_err().to_string();
        assert!(e.contains("queues"), "{e}");
    }

    #[test]
    fn tcp_recovery_keys_parse_and_bad_values_name_the_key() {
        let c = parse("[tcp]\ncongestion = \"newreno\"\nsack = false\nkeepalive_idle_ms = 5000\nhystart = false\n")
            .unwrap();
        assert_eq!(
            (c.tcp.congestion, c.tcp.sack, c.tcp.keepalive_idle_ms, c.tcp.hystart),
            (crate::tcp::Congestion::Newreno, false, 5000, false)
        );
        assert_eq!(Config::default().tcp.congestion, crate::tcp::Congestion::Cubic);
        assert!(Config::default().tcp.hystart);
        let e = parse("[tcp]\nhystart = \"yes\"\n").unwrap_err().to_string();
        assert!(e.contains("hystart"), "{e}");
        let e = parse("[tcp]\ncongestion = \"bbr\"\n").unwrap_err().to_string();
        assert!(e.contains("congestion") && e.contains("bbr"), "{e}");
        let e = parse("[tcp]\nkeepalive_idle_ms = 1000\nkeepalive_probes = 0\n").unwrap_err().to_string();
        assert!(e.contains("tcp.keepalive_interval_ms"), "{e}");
        let e = parse(
            "[server]\nbackend = \"af-xdp\"\n[af_xdp]\niface = \"x\"\nip = \"10.0.0.1/24\"\nip6 = \"ff02::1/64\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("af_xdp.ip6") && e.contains("unicast"), "{e}");
    }

    #[test]
    fn shipped_configs_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nic-config");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "toml") {
                Config::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                n += 1;
            }
        }
        assert!(n > 0);
    }

    #[test]
    fn queue_to_core_mapping() {
        let mut c = Config::default();
        assert_eq!(c.core_for_queue(3, 2), 1);
        c.server.cores = vec![5, 7];
        assert_eq!(c.core_for_queue(2, 2), 5);
    }
}
