//! Bringing the packet transport up on AF_XDP: the interface's sockets and program, and
//! one [`StackTransport`] per queue with its fault and pcap wrappers.

use std::sync::Arc;
use std::time::Duration;

use super::{FlowDirectory, Polling, StackTransport};
use crate::config::Config;
use crate::net::rss::RssTable;
use crate::net::{NetConfig, NetStack, SharedNeighbors};
use crate::nic::af_xdp::{iface_mac, iface_numa_node, Doorbell, XdpInterface, XskQueue};
use crate::nic::fault::Fault;
use crate::nic::pcap::{Pcap, PcapFile};
use crate::nic::PacketIo;
use crate::transport::{QueuePlan, StartError};

/// The AF_XDP side of a running server: dropping it detaches the program.
pub struct XdpRunning {
    _iface: XdpInterface,
    /// "native" or "generic".
    pub attach_mode: &'static str,
    /// True if the sockets got zero-copy.
    pub zerocopy: bool,
}

/// A packet transport over one AF_XDP queue and its wrappers.
pub type XdpTransport = StackTransport<Box<dyn PacketIo + Send>>;

/// Opens the queues, attaches the program and plans one transport per queue.
pub(crate) fn plan(cfg: &Config) -> Result<(XdpRunning, Vec<QueuePlan<XdpTransport>>), StartError> {
    let x = &cfg.af_xdp;
    let addrs = Addresses::parse(
        [&x.ip, &x.gateway, &x.ip6, &x.gateway6],
        ["af_xdp.ip", "af_xdp.gateway", "af_xdp.ip6", "af_xdp.gateway6"],
    )?;
    let (iface, socks) = XdpInterface::open(x, cfg.server.queues)?;
    let mac = iface_mac(&x.iface).map_err(|source| StartError::Io { what: "reading the interface MAC", source })?;
    let net_cfg = addrs.with_mac(mac);
    let pcap = match &x.pcap {
        Some(p) => {
            Some(PcapFile::create(p).map_err(|source| StartError::Io { what: "creating the pcap file", source })?)
        }
        None => None,
    };
    let neighbors: Arc<SharedNeighbors> = Arc::default();
    let queues = cfg.server.queues;
    let directory = FlowDirectory::new(queues);
    // One key for all queues: any queue can check a SYN cookie another one issued.
    let secret = random_secret();
    // Default pinning: the NIC's NUMA node's CPUs in order (all CPUs if sysfs is silent).
    let node_cpus = crate::mem::node_cpus(iface_numa_node(&x.iface));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let zerocopy = socks.iter().all(XskQueue::zerocopy);
    let offload = socks.iter().all(XskQueue::tx_csum_offload);
    tracing::info!(
        "{}: TCP checksums of sent frames {}",
        x.iface,
        match (offload, x.tx_checksum, zerocopy) {
            (true, _, _) => "finished by the kernel (AF_XDP TX metadata)",
            (false, crate::nic::af_xdp::TxChecksum::Software, _) =>
                "computed in software (af_xdp.tx_checksum = software)",
            (false, _, true) => "computed in software (zero-copy mode: the driver's offload is not probed)",
            (false, _, false) => "computed in software (this kernel has no AF_XDP TX metadata; needs Linux 6.8)",
        }
    );
    let poll = Polling {
        rx_batch: x.rx_batch,
        idle_spin: Duration::from_micros(x.idle_spin_us),
        idle_sleep: Duration::from_millis(x.idle_sleep_ms),
        wake_cost: match x.polling {
            crate::nic::af_xdp::PollMode::Adaptive => Some(Duration::from_micros(x.wake_cost_us)),
            crate::nic::af_xdp::PollMode::Spin => None,
        },
        busy_poll_below: Duration::from_micros(x.busy_poll_gap_us),
    };
    let rss = read_rss(&x.iface);
    // Captures stamp the loop's time; one pair of clocks maps it to the wall.
    let epoch = (std::time::Instant::now(), std::time::SystemTime::now());
    let mut plans = Vec::new();
    for (queue, mut sock) in socks.into_iter().enumerate() {
        let bell = Arc::new(Doorbell::new().map_err(|source| StartError::Io { what: "creating an eventfd", source })?);
        sock.set_doorbell(bell.clone());
        let cpu = match (cfg.server.cores.is_empty(), node_cpus.is_empty()) {
            (true, false) => node_cpus[queue % node_cpus.len()],
            _ => cfg.core_for_queue(queue, cpus),
        };
        let mut io: Box<dyn PacketIo + Send> = Box::new(sock);
        if let Some(file) = &pcap {
            io = Box::new(Pcap::new(io, file.clone(), epoch));
        }
        if x.faults.any() {
            let mut faults = x.faults;
            faults.seed = faults.seed.wrapping_add(queue as u64);
            io = Box::new(Fault::new(io, faults));
        }
        let net = NetStack::new(net_cfg, neighbors.clone());
        let (tcp, port, dir, rss) = (cfg.tcp.clone(), cfg.server.listen.port(), directory.clone(), rss.clone());
        plans.push(QueuePlan {
            queue,
            cpu,
            bell: Arc::new(move || bell.ring()),
            build: Box::new(move || {
                Ok(StackTransport::new(io, net, poll, tcp, Some(port), secret)
                    .with_directory(dir, queue, queues)
                    .with_rss(rss))
            }),
        });
    }
    let attach_mode = iface.attach_mode;
    Ok((XdpRunning { _iface: iface, attach_mode, zerocopy }, plans))
}

/// The NIC's RSS key and indirection table, as `ethtool -x` shows them; None where the
/// driver does not say (veth) or ethtool is missing: outbound replies are then handed to
/// their queue by the flow directory.
fn read_rss(iface: &str) -> Option<Arc<RssTable>> {
    let out = std::process::Command::new("ethtool").args(["-x", iface]).output();
    let rss = out
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| RssTable::from_ethtool(&String::from_utf8_lossy(&o.stdout)));
    match &rss {
        Some(_) => tracing::info!(
            "{iface}: Toeplitz RSS known: outbound connections take ports whose replies reach their own queue"
        ),
        None => tracing::info!(
            "{iface}: RSS key not readable (ethtool -x): outbound replies are handed over by the flow directory"
        ),
    }
    rss.map(Arc::new)
}

/// The packet path's addresses, parsed from a backend's section (keys named in errors).
pub(crate) struct Addresses {
    ip: (std::net::Ipv4Addr, u8),
    gateway: Option<std::net::Ipv4Addr>,
    ip6: Option<(std::net::Ipv6Addr, u8)>,
    gateway6: Option<std::net::Ipv6Addr>,
}

impl Addresses {
    /// Parses `[ip, gateway, ip6, gateway6]`; an error names the key.
    pub(crate) fn parse(values: [&str; 4], keys: [&'static str; 4]) -> Result<Addresses, StartError> {
        let ip = NetConfig::parse_cidr(values[0]).map_err(|reason| StartError::Config { key: keys[0], reason })?;
        let gateway =
            match values[1] {
                "" => None,
                g => Some(g.parse().map_err(|_| StartError::Config {
                    key: keys[1],
                    reason: format!("{g:?} is not an IPv4 address"),
                })?),
            };
        let ip6 = match values[2] {
            "" => None,
            a => Some(NetConfig::parse_cidr6(a).map_err(|reason| StartError::Config { key: keys[2], reason })?),
        };
        let gateway6 =
            match values[3] {
                "" => None,
                g => Some(g.parse().map_err(|_| StartError::Config {
                    key: keys[3],
                    reason: format!("{g:?} is not an IPv6 address"),
                })?),
            };
        Ok(Addresses { ip, gateway, ip6, gateway6 })
    }

    /// The network layer's configuration on an interface with this MAC.
    pub(crate) fn with_mac(&self, mac: [u8; 6]) -> NetConfig {
        NetConfig {
            mac,
            ip: self.ip.0,
            prefix_len: self.ip.1,
            gateway: self.gateway,
            ip6: self.ip6,
            gateway6: self.gateway6,
        }
    }
}

/// A per-process random key for ISNs and SYN cookies.
pub(crate) fn random_secret() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}
