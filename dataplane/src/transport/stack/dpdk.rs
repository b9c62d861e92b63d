//! Bringing the packet transport up on DPDK: EAL, the port and its pool, and one
//! [`StackTransport`] per queue pair with its fault and pcap wrappers.

use std::sync::Arc;
use std::time::Duration;

use super::xdp::{random_secret, Addresses};
use super::{FlowDirectory, Polling, StackTransport};
use crate::config::Config;
use crate::net::{NetStack, SharedNeighbors};
use crate::nic::af_xdp::{Doorbell, PollMode};
use crate::nic::dpdk::{DpdkQueue, Eal, Port};
use crate::nic::fault::Fault;
use crate::nic::pcap::{Pcap, PcapFile};
use crate::nic::PacketIo;
use crate::transport::{QueuePlan, StartError};

/// The DPDK side of a running server: dropping it (after the loops have stopped)
/// stops and closes the port, checks every mbuf came back, and cleans EAL up.
pub struct DpdkRunning {
    port: Arc<Port>,
    /// The port's name, driver and link, and how flows are spread, for the log.
    pub summary: String,
}

impl DpdkRunning {
    /// The port's name.
    pub fn port_name(&self) -> &str {
        &self.port.name
    }
}

/// A packet transport over one DPDK queue pair and its wrappers.
pub type DpdkTransport = StackTransport<Box<dyn PacketIo + Send>>;

/// Initialises EAL, opens the port and plans one transport per queue pair.
pub(crate) fn plan(cfg: &Config) -> Result<(DpdkRunning, Vec<QueuePlan<DpdkTransport>>), StartError> {
    let d = &cfg.dpdk;
    let addrs = Addresses::parse(
        [&d.ip, &d.gateway, &d.ip6, &d.gateway6],
        ["dpdk.ip", "dpdk.gateway", "dpdk.ip6", "dpdk.gateway6"],
    )?;
    let queues = cfg.server.queues;
    let eal = Eal::init(d, queues)?;
    tracing::info!(
        "dpdk: EAL {} up ({}), arguments: {}",
        Eal::version(),
        if eal.hugepages { "hugepages" } else { "--no-huge" },
        eal.args[1..].join(" ")
    );
    let port = Arc::new(Port::open(d, queues)?);
    let summary = format!(
        "port {} ({}, driver {}), link {}, {}, {}×{} descriptors",
        port.name,
        fmt_mac(port.mac),
        port.driver,
        port.link(),
        port.spread,
        port.descriptors.0,
        port.descriptors.1
    );
    tracing::info!("dpdk: {summary}");
    let net_cfg = addrs.with_mac(port.mac);
    let pcap = match &d.pcap {
        Some(p) => {
            Some(PcapFile::create(p).map_err(|source| StartError::Io { what: "creating the pcap file", source })?)
        }
        None => None,
    };
    let neighbors: Arc<SharedNeighbors> = Arc::default();
    let directory = FlowDirectory::new(queues);
    let secret = random_secret();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let poll = Polling {
        rx_batch: d.rx_burst,
        idle_spin: Duration::from_micros(d.idle_spin_us),
        idle_sleep: Duration::from_micros(d.idle_sleep_us),
        wake_cost: match d.polling {
            PollMode::Adaptive => Some(Duration::from_micros(d.wake_cost_us)),
            PollMode::Spin => None,
        },
        // DPDK's poll-mode drivers have no kernel NAPI to busy poll.
        busy_poll_below: Duration::ZERO,
    };
    let epoch = (std::time::Instant::now(), std::time::SystemTime::now());
    let mut plans = Vec::new();
    for queue in 0..queues {
        let bell = Arc::new(Doorbell::new().map_err(|source| StartError::Io { what: "creating an eventfd", source })?);
        let mut q = DpdkQueue::new(port.clone(), queue as u16, d);
        q.set_doorbell(bell.clone());
        let cpu = cfg.core_for_queue(queue, cpus);
        let (pcap, faults) = (pcap.clone(), d.faults);
        let net = NetStack::new(net_cfg, neighbors.clone());
        let (tcp, listen, dir) = (cfg.tcp.clone(), cfg.server.listen.port(), directory.clone());
        plans.push(QueuePlan {
            queue,
            cpu,
            bell: Arc::new(move || bell.ring()),
            build: Box::new(move || {
                // On the core thread: EAL gives it an lcore id (the pool's per-core cache).
                q.register_thread();
                let mut io: Box<dyn PacketIo + Send> = Box::new(q);
                if let Some(file) = pcap {
                    io = Box::new(Pcap::new(io, file, epoch));
                }
                if faults.any() {
                    let mut faults = faults;
                    faults.seed = faults.seed.wrapping_add(queue as u64);
                    io = Box::new(Fault::new(io, faults));
                }
                Ok(StackTransport::new(io, net, poll, tcp, Some(listen), secret).with_directory(dir, queue, queues))
            }),
        });
    }
    Ok((DpdkRunning { port, summary }, plans))
}

fn fmt_mac(m: [u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}
