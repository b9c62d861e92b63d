//! DPDK backend (cargo feature `dpdk`): the system's DPDK (≥ 22.11, through the
//! `px-nic-dpdk-sys` bindings) behind the same [`PacketIo`](super::PacketIo) trait as
//! AF_XDP, so the network, TCP and HTTP layers above do not know which one runs.
//!
//! - [`eal`]: the Environment Abstraction Layer, initialised once per process from
//!   `[dpdk]`; the port (configured with one RX/TX queue pair per core loop, RSS across
//!   them where the driver has it) and its mbuf pool (one, on the port's NUMA socket).
//! - [`queue`]: [`DpdkQueue`], one queue pair driven by one core loop: bursts in, frames
//!   built straight into mbufs out, every mbuf freed or sent.
//!
//! The configuration and the errors are compiled in every build, so a `[dpdk]` section
//! or `--backend dpdk` given to a binary built without the feature gets a clear error
//! rather than a parse failure.

#[cfg(feature = "dpdk")]
pub mod eal;
#[cfg(feature = "dpdk")]
pub mod queue;

#[cfg(feature = "dpdk")]
pub use eal::{Eal, Port};
#[cfg(feature = "dpdk")]
pub use queue::DpdkQueue;

use std::path::PathBuf;

/// The DPDK release this binary was built against (pkg-config's libdpdk version), or
/// None when it was built without the `dpdk` feature.
#[cfg(feature = "dpdk")]
pub const BUILT_AGAINST: Option<&str> = Some(nic_dpdk_sys::BUILT_AGAINST);
/// The DPDK release this binary was built against, or None without the `dpdk` feature.
#[cfg(not(feature = "dpdk"))]
pub const BUILT_AGAINST: Option<&str> = None;

use serde::{Deserialize, Serialize};

use crate::mem::HugepagePolicy;
use crate::nic::af_xdp::PollMode;
use crate::nic::fault::FaultConfig;

/// `[dpdk]`: the DPDK backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DpdkConfig {
    /// EAL arguments after ours (devices, cores, logging), e.g.
    /// `["--vdev", "net_af_packet0,iface=px-app0,qpairs=2"]`; `--dpdk-args` replaces them.
    pub eal_args: Vec<String>,
    /// The port to serve: a name as DPDK knows it (a PCI address such as
    /// `0000:01:00.0`, or a virtual device's name such as `net_af_packet0`); "" for the
    /// only port (the first, with a note, if there are several).
    pub port: String,
    /// Our address with prefix length, e.g. `10.99.0.1/24`.
    pub ip: String,
    /// Next hop for addresses outside the prefix ("" for none).
    pub gateway: String,
    /// Our IPv6 address with prefix length ("" for IPv4 only).
    pub ip6: String,
    /// IPv6 next hop ("" for none).
    pub gateway6: String,
    /// Hugepages for DPDK's memory: `auto` (when enough are free, else `--no-huge`
    /// with a log line), `require`, `off` (`--no-huge`: ordinary pages, for tests).
    pub hugepages: HugepagePolicy,
    /// Memory EAL takes at start (MiB, `-m`); 0: as much as the mbuf pool needs plus
    /// 64 MiB for EAL's own structures.
    pub memory_mb: u32,
    /// Memory channels per socket (`-n`); 0: EAL's default.
    pub memory_channels: u32,
    /// RX descriptors per queue (adjusted to what the driver allows).
    pub rx_descriptors: u16,
    /// TX descriptors per queue (adjusted to what the driver allows).
    pub tx_descriptors: u16,
    /// mbufs in the pool per queue (the pool holds queues × this).
    pub mbufs_per_queue: u32,
    /// Per-core mbuf cache of the pool.
    pub mbuf_cache: u32,
    /// Most frames taken per RX burst (one per loop turn).
    pub rx_burst: usize,
    /// Frames gathered before a TX burst is handed to the driver.
    pub tx_burst: usize,
    /// `adaptive` (nap when frames are sparse: a poll-mode driver has no interrupt to
    /// wake the loop, so it naps `idle_sleep_us` at a time) or `spin`.
    pub polling: PollMode,
    /// As `af_xdp.wake_cost_us`: the arrival gap above which the adaptive loop naps at once.
    pub wake_cost_us: u64,
    /// As `af_xdp.idle_spin_us`: longest spin without a frame before napping.
    pub idle_spin_us: u64,
    /// One nap (adaptive polling): the added latency of the first frame after a quiet spell.
    pub idle_sleep_us: u64,
    /// Write every frame, both directions, to this pcap file (debugging).
    pub pcap: Option<PathBuf>,
    /// Seeded fault injection (testing).
    pub faults: FaultConfig,
}

impl Default for DpdkConfig {
    fn default() -> Self {
        DpdkConfig {
            eal_args: Vec::new(),
            port: String::new(),
            ip: String::new(),
            gateway: String::new(),
            ip6: String::new(),
            gateway6: String::new(),
            hugepages: HugepagePolicy::Auto,
            memory_mb: 0,
            memory_channels: 0,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            mbufs_per_queue: 8191,
            mbuf_cache: 256,
            rx_burst: 64,
            tx_burst: 64,
            polling: PollMode::Adaptive,
            wake_cost_us: 10,
            idle_spin_us: 200,
            idle_sleep_us: 100,
            pcap: None,
            faults: FaultConfig::default(),
        }
    }
}

/// Frames in flight a queue can hold beyond its descriptors: a burst each way.
const SLACK_PER_QUEUE: u32 = 2 * 64;

impl DpdkConfig {
    /// Range checks; the error names the key (relative to `[dpdk]`) and the reason.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1..=512).contains(&self.rx_burst) {
            return Err(("rx_burst", format!("must be 1..=512, got {}", self.rx_burst)));
        }
        if !(1..=512).contains(&self.tx_burst) {
            return Err(("tx_burst", format!("must be 1..=512, got {}", self.tx_burst)));
        }
        if self.rx_descriptors < 64 || self.tx_descriptors < 64 {
            return Err(("rx_descriptors", "rx_descriptors and tx_descriptors must be at least 64".into()));
        }
        if self.mbuf_cache > 512 {
            return Err(("mbuf_cache", format!("must be at most 512 (DPDK's limit), got {}", self.mbuf_cache)));
        }
        let need = self.min_mbufs_per_queue();
        if self.mbufs_per_queue < need {
            return Err((
                "mbufs_per_queue",
                format!(
                    "must cover a queue's RX and TX descriptors, a burst each way and the cache: at least {need}, got {}",
                    self.mbufs_per_queue
                ),
            ));
        }
        if self.idle_sleep_us == 0 {
            return Err(("idle_sleep_us", "must be positive".into()));
        }
        Ok(())
    }

    /// The fewest mbufs a queue can run with.
    pub fn min_mbufs_per_queue(&self) -> u32 {
        u32::from(self.rx_descriptors) + u32::from(self.tx_descriptors) + self.mbuf_cache + SLACK_PER_QUEUE
    }

    /// Bytes the mbuf pool takes for `queues` queues (one mbuf: its header, headroom
    /// and a 2 KiB data room).
    pub fn pool_bytes(&self, queues: usize) -> u64 {
        u64::from(self.mbufs_per_queue) * queues as u64 * MBUF_BYTES
    }
}

/// Data room of an mbuf: a 1518-byte frame and DPDK's 128-byte headroom fit.
pub const MBUF_DATA_ROOM: u16 = 2048 + 128;
/// An mbuf in the pool: its 128-byte header, the data room, and the pool's own header.
pub const MBUF_BYTES: u64 = 128 + MBUF_DATA_ROOM as u64 + 64;

/// Why the DPDK backend could not start. Each message names the cause and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DpdkError {
    /// The binary was built without the `dpdk` feature.
    #[error(
        "this px-appliance was built without DPDK: build it with `cargo build --release --features dpdk` (needs \
         Debian's libdpdk-dev and libclang-dev), or use --backend af-xdp"
    )]
    NotBuilt,
    /// EAL was initialised already in this process.
    #[error("DPDK's EAL is initialised once per process, and it already was")]
    AlreadyInitialised,
    /// rte_eal_init failed.
    #[error("DPDK EAL initialisation failed: {reason} (EAL arguments: {args}); {hint}")]
    Eal {
        /// rte_strerror text.
        reason: String,
        /// The arguments given.
        args: String,
        /// What to try.
        hint: &'static str,
    },
    /// Hugepages were required and too few are free.
    #[error(
        "dpdk.hugepages = require, but {free} MiB of hugepages are free and DPDK needs {need} MiB: reserve more \
         (scripts/hugepages.sh {pages}, or vm.nr_hugepages), or set dpdk.hugepages = \"auto\""
    )]
    NoHugepages {
        /// Free, MiB.
        free: u64,
        /// Needed, MiB.
        need: u64,
        /// 2 MiB pages to reserve in all.
        pages: u64,
    },
    /// No port at all.
    #[error(
        "DPDK found no port: bind a NIC to vfio-pci (dpdk-devbind.py -b vfio-pci 0000:01:00.0) or name a virtual \
         one in the EAL arguments (--dpdk-args \"--vdev net_af_packet0,iface=px-app0,qpairs=N\")"
    )]
    NoPort,
    /// The EAL arguments named devices and none of them became a port.
    #[error("DPDK attached none of the devices in its arguments ({devices}): {why}")]
    NotAttached {
        /// The device arguments.
        devices: String,
        /// The likely cause, or where EAL said it.
        why: String,
    },
    /// The named port does not exist.
    #[error("DPDK has no port {name:?} (it has: {available}); dpdk.port names a PCI address or a --vdev device name")]
    PortNotFound {
        /// The name asked for.
        name: String,
        /// The ports there are.
        available: String,
    },
    /// More queues than the port has.
    #[error(
        "--queues {asked} but port {port} has {has} queue pair(s): lower --queues, or give the port more (a NIC: \
         ethtool -L before binding it to DPDK; net_af_packet: qpairs={asked} in its --vdev arguments)"
    )]
    TooManyQueues {
        /// The port.
        port: String,
        /// Queues requested.
        asked: usize,
        /// Queue pairs it has.
        has: usize,
    },
    /// A DPDK call on the port or the pool failed.
    #[error("DPDK: {what} failed: {reason}")]
    Call {
        /// The step.
        what: String,
        /// rte_strerror text.
        reason: String,
    },
}
