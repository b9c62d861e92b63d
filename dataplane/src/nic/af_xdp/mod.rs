//! AF_XDP backend in pure Rust over libc: one concern per file.
//!
//! - [`syscall`]: checked wrappers of bpf(2), socket options, bind, wakeups, poll.
//! - [`mmap`]: the shared ring mappings.
//! - [`ring`]: producer/consumer views of the fill, completion, RX and TX rings.
//! - [`umem`]: the frame memory (2 MiB hugepages on the NIC's NUMA node).
//! - [`bpf`]: the XSKMAP, the redirect program, and its BPF link.
//! - [`socket`]: [`XskQueue`], one socket per queue, implementing [`PacketIo`](super::PacketIo).
//!
//! [`XdpInterface::open`] checks the preconditions (root, the interface, its queue
//! count), opens one socket per queue, then loads and attaches the program. Dropping the
//! interface, or the process dying by any means, detaches the program: the link is an fd.

mod bpf;
mod mmap;
mod ring;
mod socket;
mod syscall;
mod umem;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use socket::XskQueue;

/// Wakes a queue's loop from its idle sleep (an eventfd in the loop's poll set): the
/// control thread rings it after posting an answer for that queue.
pub struct Doorbell {
    fd: std::os::fd::OwnedFd,
}

impl Doorbell {
    /// A new doorbell.
    pub fn new() -> io::Result<Doorbell> {
        Ok(Doorbell { fd: syscall::eventfd()? })
    }

    /// Wakes the loop (from any thread).
    pub fn ring(&self) {
        use std::os::fd::AsRawFd;
        syscall::eventfd_signal(self.fd.as_raw_fd());
    }

    /// Sleeps until the doorbell rings or `timeout` passes, whichever is first (for a
    /// backend with no file descriptor of its own to wait on: DPDK's poll-mode drivers).
    pub fn sleep(&self, timeout: std::time::Duration) {
        if let Err(e) = syscall::ppoll_in(self.raw(), timeout) {
            tracing::warn!("waiting on the doorbell failed: {e}");
        }
        syscall::eventfd_drain(self.raw());
    }

    fn raw(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }
}

use crate::mem::{HugepagePolicy, NumaNode};
use crate::nic::fault::FaultConfig;

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Native (driver) mode when the driver supports it, else generic.
    Auto,
    /// Driver mode (XDP_FLAGS_DRV_MODE) only.
    Native,
    /// Generic / SKB mode (XDP_FLAGS_SKB_MODE) only.
    Generic,
}

/// How the loop waits for frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PollMode {
    /// Spin while frames arrive closer together than a sleep and wake-up costs
    /// (`wake_cost_us`), for at most `idle_spin_us`; otherwise sleep in poll(2) as soon
    /// as a turn finds nothing.
    Adaptive,
    /// Never sleep: the core spins whatever the load (lowest wake-up latency, a whole
    /// core burnt even when idle).
    Spin,
}

/// How the sockets share frames with the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindMode {
    /// Zero-copy when the driver supports it, else copy.
    Auto,
    /// Copy mode (works on every driver, veth included).
    Copy,
    /// Zero-copy only.
    Zerocopy,
}

/// Who computes the TCP checksum of a frame we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TxChecksum {
    /// The transmit path, through AF_XDP TX metadata, where the kernel finishes it
    /// (copy mode, Linux ≥ 6.8): the frame leaves as Linux's own TCP segments do, with a
    /// partial checksum the device (or the kernel, for a device without the offload)
    /// completes. Elsewhere (zero-copy, older kernels) in software.
    Auto,
    /// Always in software, before the frame is queued.
    Software,
}

/// `[af_xdp]`: the AF_XDP backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XdpConfig {
    /// Interface to take over (e.g. `px-app0`).
    pub iface: String,
    /// Our address with prefix length, e.g. `10.99.0.1/24`.
    pub ip: String,
    /// Next hop for addresses outside the prefix ("" for none).
    pub gateway: String,
    /// Our IPv6 address with prefix length, e.g. `fd99::1/64` ("" for IPv4 only).
    pub ip6: String,
    /// IPv6 next hop for addresses outside the prefix ("" for none).
    pub gateway6: String,
    /// `auto`, `native` or `generic`.
    pub attach_mode: AttachMode,
    /// `auto`, `copy` or `zerocopy`.
    pub bind_mode: BindMode,
    /// UMEM frame size (2048 or 4096): the largest frame.
    pub frame_bytes: u32,
    /// UMEM frames per queue (half go to the fill ring, half to TX).
    pub frames_per_queue: u32,
    /// Entries in each of the four rings (power of two).
    pub ring_size: u32,
    /// Most frames taken from the RX ring per loop turn.
    pub rx_batch: usize,
    /// TX descriptors queued before they are submitted to the kernel.
    pub tx_batch: usize,
    /// `auto` (the kernel finishes TCP checksums where it can) or `software`.
    pub tx_checksum: TxChecksum,
    /// `adaptive` or `spin`.
    pub polling: PollMode,
    /// What a sleep in poll(2) and the wake-up by the next frame cost this host (CPU
    /// and latency): when frames arrive further apart than this on average, the
    /// adaptive loop sleeps at once instead of spinning.
    pub wake_cost_us: u64,
    /// Longest spin without a frame before the loop sleeps in poll(2) on the socket
    /// (adaptive polling, while frames arrive closer together than `wake_cost_us`).
    pub idle_spin_us: u64,
    /// Longest sleep in poll(2) (timers and shutdown are checked at least this often).
    pub idle_sleep_ms: u64,
    /// Hugepages for the UMEM: `auto`, `require`, `off`.
    pub hugepages: HugepagePolicy,
    /// The kernel's preferred busy polling (Linux ≥ 5.11), while frames come closer
    /// than `busy_poll_gap_us`: the loop runs the queue's NAPI itself when its RX ring is
    /// empty, and the device's interrupts stay deferred while it does (the interface's
    /// `napi_defer_hard_irqs` and `gro_flush_timeout` are set while any of its queues busy
    /// polls, and put back to the values found at start otherwise and at exit).
    pub busy_poll: bool,
    /// `SO_BUSY_POLL`: how long one busy poll may spin in the kernel, µs.
    pub busy_poll_us: u32,
    /// `SO_BUSY_POLL_BUDGET`: frames one busy poll may process.
    pub busy_poll_budget: u32,
    /// The interface's `napi_defer_hard_irqs` while busy polling.
    pub napi_defer_hard_irqs: u32,
    /// The interface's `gro_flush_timeout` (ns) while busy polling: how long interrupts
    /// stay off after a busy poll (the loop must poll again within it).
    pub gro_flush_timeout_ns: u64,
    /// Busy poll only while frames arrive, on average, closer together than this (µs);
    /// 0: whenever the RX ring is empty. Below it, a busy poll usually finds frames
    /// within the deferral window; above it, the deferral would mostly make the NAPI
    /// thread wake up for nothing.
    pub busy_poll_gap_us: u64,
    /// Write every frame, both directions, to this pcap file (debugging).
    pub pcap: Option<PathBuf>,
    /// Seeded fault injection on receive (testing).
    pub faults: FaultConfig,
}

impl Default for XdpConfig {
    fn default() -> Self {
        XdpConfig {
            iface: String::new(),
            ip: String::new(),
            gateway: String::new(),
            ip6: String::new(),
            gateway6: String::new(),
            attach_mode: AttachMode::Auto,
            bind_mode: BindMode::Auto,
            frame_bytes: 4096,
            frames_per_queue: 4096,
            ring_size: 2048,
            rx_batch: 64,
            tx_batch: 64,
            tx_checksum: TxChecksum::Auto,
            polling: PollMode::Adaptive,
            wake_cost_us: 10,
            idle_spin_us: 200,
            idle_sleep_ms: 100,
            hugepages: HugepagePolicy::Auto,
            busy_poll: true,
            busy_poll_us: 20,
            busy_poll_budget: 64,
            napi_defer_hard_irqs: 2,
            gro_flush_timeout_ns: 20_000,
            busy_poll_gap_us: 10,
            pcap: None,
            faults: FaultConfig::default(),
        }
    }
}

impl XdpConfig {
    /// Range checks; the error names the key (relative to `[af_xdp]`) and the reason.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.frame_bytes != 2048 && self.frame_bytes != 4096 {
            return Err(("frame_bytes", format!("must be 2048 or 4096, got {}", self.frame_bytes)));
        }
        if !self.ring_size.is_power_of_two() || !(64..=32768).contains(&self.ring_size) {
            return Err(("ring_size", format!("must be a power of two from 64 to 32768, got {}", self.ring_size)));
        }
        if self.frames_per_queue < 2 * self.ring_size {
            return Err(("frames_per_queue", format!("must be at least 2 × ring_size ({})", 2 * self.ring_size)));
        }
        if self.rx_batch == 0 || self.rx_batch > self.ring_size as usize {
            return Err(("rx_batch", "must be 1..=ring_size".into()));
        }
        if self.tx_batch == 0 || self.tx_batch > self.ring_size as usize {
            return Err(("tx_batch", "must be 1..=ring_size".into()));
        }
        if self.busy_poll && !(1..=65535).contains(&self.busy_poll_budget) {
            return Err(("busy_poll_budget", format!("must be 1..=65535, got {}", self.busy_poll_budget)));
        }
        if self.busy_poll && self.busy_poll_us > 1_000_000 {
            return Err(("busy_poll_us", format!("must be at most 1000000, got {}", self.busy_poll_us)));
        }
        if self.busy_poll && self.busy_poll_gap_us > 1_000_000 {
            return Err(("busy_poll_gap_us", format!("must be at most 1000000, got {}", self.busy_poll_gap_us)));
        }
        Ok(())
    }
}

/// Why the AF_XDP backend could not start. Each message names the cause and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XdpError {
    /// The process lacks capabilities AF_XDP needs (named).
    #[error(
        "AF_XDP needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF (or root); this process lacks {0}: run px-appliance \
         as root, give it those capabilities (deploy/px-appliance.service), or use --backend kernel"
    )]
    NotRoot(String),
    /// The kernel has no AF_XDP sockets.
    #[error("this kernel has no AF_XDP sockets ({0}): it needs CONFIG_XDP_SOCKETS=y; use --backend kernel here")]
    NoAfXdp(io::Error),
    /// socket(AF_XDP) failed otherwise.
    #[error("socket(AF_XDP) failed: {0}")]
    Socket(io::Error),
    /// No such interface.
    #[error("no network interface {iface:?} ({source}); list them with `ip link` (scripts/testbed.sh up creates px-app0 in netns px-app)")]
    NoInterface {
        /// Name given.
        iface: String,
        /// if_nametoindex error.
        source: io::Error,
    },
    /// More queues asked for than the interface has.
    #[error("--queues {asked} but {iface} has {has} RX queue(s); raise them with `ethtool -L {iface} combined {asked}` (on the testbed: scripts/testbed.sh up --queues {asked})")]
    TooManyQueues {
        /// Interface.
        iface: String,
        /// Queues requested.
        asked: usize,
        /// Queues the interface has.
        has: usize,
    },
    /// Another AF_XDP socket is bound to the queue.
    #[error(
        "queue {queue} of {iface} is already bound by another AF_XDP socket (is another px-appliance running on it?)"
    )]
    QueueBusy {
        /// Interface.
        iface: String,
        /// Queue.
        queue: u32,
    },
    /// UMEM memory could not be mapped.
    #[error("UMEM: {0}")]
    Umem(String),
    /// Registering the UMEM would lock more memory than RLIMIT_MEMLOCK allows.
    #[error(
        "queue {queue}: the UMEM ({mib} MiB) is more locked memory than RLIMIT_MEMLOCK allows: raise the limit \
         (LimitMEMLOCK=infinity in the unit, ulimit -l unlimited) or grant CAP_IPC_LOCK"
    )]
    MemlockLimit {
        /// Queue.
        queue: u32,
        /// UMEM size, MiB.
        mib: usize,
    },
    /// A setup step failed.
    #[error("queue {queue}: {what} failed: {source}")]
    Setup {
        /// The step.
        what: &'static str,
        /// Queue.
        queue: u32,
        /// Cause.
        source: io::Error,
    },
    /// Loading or attaching the XDP program failed.
    #[error("XDP program: {what} failed: {source}")]
    Program {
        /// The step.
        what: &'static str,
        /// Cause.
        source: io::Error,
    },
}

/// The interface's interrupt deferral for preferred busy polling (`napi_defer_hard_irqs`,
/// `gro_flush_timeout`): set while at least one of its queues busy polls, the values
/// found at start while none does, and at exit. Deferral on at light load would cost a
/// timer interrupt and a NAPI wake-up or two per burst of frames for nothing (measured:
/// 10k json req/s, 26 µs of CPU per request with it always on, 17 with it off).
pub(crate) struct Deferral {
    /// (sysfs file, value while busy polling, value found at start).
    settings: Vec<(PathBuf, String, String)>,
    /// Queues busy polling now.
    engaged: std::sync::Mutex<usize>,
}

impl Deferral {
    /// One queue starts (`on`) or stops busy polling: the first to start sets the
    /// deferral, the last to stop puts the values found at start back.
    pub(crate) fn engage(&self, on: bool) {
        let mut n = self.engaged.lock().unwrap_or_else(|e| e.into_inner());
        let before = *n;
        *n = if on { before + 1 } else { before.saturating_sub(1) };
        if (before == 0) != (*n == 0) {
            self.write(on);
        }
    }

    fn write(&self, on: bool) {
        for (path, busy, found) in &self.settings {
            let value = if on { busy } else { found };
            if let Err(e) = std::fs::write(path, value) {
                tracing::warn!("busy polling: setting {} to {value}: {e}", path.display());
            }
        }
    }
}

/// The program attached to an interface; detached when dropped.
pub struct XdpInterface {
    /// Interface settings changed while busy polling, put back on drop.
    deferral: Option<Arc<Deferral>>,
    _link: bpf::Link,
    _program: bpf::Program,
    _map: bpf::XskMap,
    /// The interface's index.
    pub ifindex: u32,
    /// "native" or "generic".
    pub attach_mode: &'static str,
}

impl Drop for XdpInterface {
    fn drop(&mut self) {
        if let Some(d) = &self.deferral {
            d.write(false);
        }
    }
}

/// RX queues of `iface` as sysfs lists them.
pub fn rx_queue_count(iface: &str) -> io::Result<usize> {
    let n = std::fs::read_dir(format!("/sys/class/net/{iface}/queues"))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    Ok(n)
}

/// The NUMA node of `iface`'s device (`-1` or absent → node 0).
pub fn iface_numa_node(iface: &str) -> NumaNode {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/device/numa_node"))
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|&n| n >= 0)
        .map_or(0, |n| n as NumaNode)
}

/// The interface's MAC address from sysfs.
pub fn iface_mac(iface: &str) -> io::Result<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() != 6 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad MAC {text:?}")));
    }
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad MAC"))?;
    }
    Ok(mac)
}

/// The capabilities AF_XDP needs: (name, bit) — NET_ADMIN to attach the XDP program
/// and configure the device, NET_RAW for the AF_XDP sockets, BPF for the program and
/// its map (SYS_ADMIN stands in for BPF, as on kernels before 5.8).
pub const CAPABILITIES: [(&str, u32); 3] = [("CAP_NET_ADMIN", 12), ("CAP_NET_RAW", 13), ("CAP_BPF", 39)];

/// Opens (and closes) one AF_XDP socket: `Ok(false)` if the kernel has no AF_XDP
/// (`EAFNOSUPPORT`), another error as it came (`EPERM` without CAP_NET_RAW).
pub fn probe_socket() -> io::Result<bool> {
    match syscall::xsk_socket() {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Which of [`CAPABILITIES`] this process's effective set lacks (from /proc/self/status).
pub fn missing_capabilities() -> Vec<&'static str> {
    let eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string())))
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| eff & (1u64 << bit) != 0;
    CAPABILITIES.iter().filter(|(name, bit)| !(has(*bit) || (*name == "CAP_BPF" && has(21)))).map(|(n, _)| *n).collect()
}

impl XdpInterface {
    /// Opens `queues` sockets on `cfg.iface` (queue i's UMEM on its interface's NUMA
    /// node) and attaches the redirect program.
    pub fn open(cfg: &XdpConfig, queues: usize) -> Result<(XdpInterface, Vec<XskQueue>), XdpError> {
        let missing = missing_capabilities();
        if !missing.is_empty() {
            return Err(XdpError::NotRoot(missing.join(", ")));
        }
        let ifindex = syscall::if_index(&cfg.iface)
            .map_err(|source| XdpError::NoInterface { iface: cfg.iface.clone(), source })?;
        let has = rx_queue_count(&cfg.iface).unwrap_or(1).max(1);
        if queues > has {
            return Err(XdpError::TooManyQueues { iface: cfg.iface.clone(), asked: queues, has });
        }
        match syscall::xsk_socket() {
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => return Err(XdpError::NoAfXdp(e)),
            Err(e) => return Err(XdpError::Socket(e)),
            Ok(_) => {}
        }
        let node = iface_numa_node(&cfg.iface);
        let map = bpf::XskMap::create(has as u32)
            .map_err(|source| XdpError::Program { what: "creating the XSKMAP", source })?;
        let mut socks = Vec::with_capacity(queues);
        for q in 0..queues as u32 {
            let s = XskQueue::open(ifindex, q, cfg, Some(node)).map_err(|e| match e {
                XdpError::Setup { what: "bind", queue, source } if source.raw_os_error() == Some(libc::EBUSY) => {
                    XdpError::QueueBusy { iface: cfg.iface.clone(), queue }
                }
                e => e,
            })?;
            map.set(q, s.fd()).map_err(|source| XdpError::Program { what: "XSKMAP update", source })?;
            socks.push(s);
        }
        let program = bpf::Program::load(&map).map_err(|source| XdpError::Program { what: "BPF_PROG_LOAD", source })?;
        let (link, attach_mode) = match cfg.attach_mode {
            AttachMode::Native => (bpf::Link::attach(&program, ifindex, bpf::XDP_FLAGS_DRV_MODE), "native"),
            AttachMode::Generic => (bpf::Link::attach(&program, ifindex, bpf::XDP_FLAGS_SKB_MODE), "generic"),
            AttachMode::Auto => match bpf::Link::attach(&program, ifindex, bpf::XDP_FLAGS_DRV_MODE) {
                Ok(l) => (Ok(l), "native"),
                Err(e) => {
                    tracing::info!("native XDP attach failed ({e}); using generic mode");
                    (bpf::Link::attach(&program, ifindex, bpf::XDP_FLAGS_SKB_MODE), "generic")
                }
            },
        };
        let link = link.map_err(|source| XdpError::Program { what: "BPF_LINK_CREATE", source })?;
        let mut deferral = None;
        if cfg.busy_poll {
            let mut settings = Vec::new();
            for (name, value) in [
                ("napi_defer_hard_irqs", cfg.napi_defer_hard_irqs.to_string()),
                ("gro_flush_timeout", cfg.gro_flush_timeout_ns.to_string()),
            ] {
                let path = PathBuf::from(format!("/sys/class/net/{}/{name}", cfg.iface));
                // Written once now, to learn early (and warn once) if this process may not.
                match std::fs::read_to_string(&path) {
                    Ok(found) => match std::fs::write(&path, found.trim()) {
                        Ok(()) => settings.push((path, value, found.trim().to_string())),
                        Err(e) => tracing::warn!("busy polling: cannot write {}: {e}", path.display()),
                    },
                    Err(e) => tracing::warn!("busy polling: {}: {e}", path.display()),
                }
            }
            let d = Arc::new(Deferral { settings, engaged: std::sync::Mutex::new(0) });
            for s in &mut socks {
                s.set_deferral(d.clone());
            }
            deferral = Some(d);
            tracing::info!(
                "{}: preferred busy polling ({} µs, budget {}) while frames come closer than {} µs, with napi_defer_hard_irqs {} and gro_flush_timeout {} ns meanwhile",
                cfg.iface,
                cfg.busy_poll_us,
                cfg.busy_poll_budget,
                cfg.busy_poll_gap_us,
                cfg.napi_defer_hard_irqs,
                cfg.gro_flush_timeout_ns
            );
        }
        Ok((XdpInterface { deferral, _link: link, _program: program, _map: map, ifindex, attach_mode }, socks))
    }
}
