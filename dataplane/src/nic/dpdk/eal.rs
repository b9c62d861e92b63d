//! EAL, port and mbuf pool: everything of DPDK that is set up once, before the core
//! loops start, and torn down once, after they have stopped.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicBool, Ordering};

use nic_dpdk_sys as sys;

use super::{DpdkConfig, DpdkError, MBUF_DATA_ROOM};
use crate::mem::HugepagePolicy;

static EAL_STARTED: AtomicBool = AtomicBool::new(false);

/// The RSS hash types we ask for where the driver offers them: IPv4 and IPv6 with their
/// TCP ports (DPDK's `RTE_ETH_RSS_IPV4`, `FRAG_IPV4`, `NONFRAG_IPV4_TCP`,
/// `NONFRAG_IPV4_OTHER`, `IPV6`, `FRAG_IPV6`, `NONFRAG_IPV6_TCP`, `NONFRAG_IPV6_OTHER`,
/// `IPV6_EX`, `IPV6_TCP_EX`: function-like macros bindgen cannot read).
const RSS_TCP_IP: u64 =
    (1 << 2) | (1 << 3) | (1 << 4) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 13) | (1 << 15) | (1 << 16);

/// DPDK's text for its thread's last error.
pub(crate) fn last_error() -> String {
    // SAFETY: px_rte_errno reads the calling thread's rte_errno; no arguments.
    let errno = unsafe { sys::px_rte_errno() };
    strerror(errno)
}

/// DPDK's text for an error number (negative return codes are negated errnos).
pub(crate) fn strerror(errnum: c_int) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated
    // string, valid until the next call on this thread; it is copied at once.
    let p = unsafe { sys::rte_strerror(errnum.abs()) };
    if p.is_null() {
        return format!("error {errnum}");
    }
    // SAFETY: p is non-null and NUL-terminated (above).
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn call(what: impl Into<String>, rc: c_int) -> Result<(), DpdkError> {
    if rc < 0 {
        Err(DpdkError::Call { what: what.into(), reason: strerror(rc) })
    } else {
        Ok(())
    }
}

/// The initialised EAL (there is one per process: a second `init` is refused).
pub struct Eal {
    /// The EAL arguments in force, for the log.
    pub args: Vec<String>,
    /// Whether DPDK got hugepages (false: `--no-huge`).
    pub hugepages: bool,
}

/// Free 2 MiB hugepages on the host, in MiB.
fn free_hugepages_mib() -> u64 {
    std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 2
}

impl Eal {
    /// Initialises EAL for `queues` queues from `cfg`: our arguments (in-memory, no
    /// telemetry, one main lcore, memory and hugepages from the config), then the
    /// operator's `eal_args`. The calling thread's CPU affinity, which EAL sets to its
    /// main lcore, is put back afterwards: the core loops pin themselves.
    pub fn init(cfg: &DpdkConfig, queues: usize) -> Result<Eal, DpdkError> {
        if EAL_STARTED.swap(true, Ordering::AcqRel) {
            return Err(DpdkError::AlreadyInitialised);
        }
        let pool_mib = cfg.pool_bytes(queues).div_ceil(1 << 20);
        let need_mib = if cfg.memory_mb > 0 { u64::from(cfg.memory_mb) } else { pool_mib + 64 };
        let user_no_huge = cfg.eal_args.iter().any(|a| a == "--no-huge");
        let hugepages = match cfg.hugepages {
            _ if user_no_huge => false,
            HugepagePolicy::Off => false,
            HugepagePolicy::Require => {
                let free = free_hugepages_mib();
                if free < need_mib {
                    return Err(DpdkError::NoHugepages { free, need: need_mib, pages: need_mib.div_ceil(2) });
                }
                true
            }
            HugepagePolicy::Auto => {
                let free = free_hugepages_mib();
                if free < need_mib {
                    tracing::warn!(
                        "dpdk: {free} MiB of hugepages free, {need_mib} MiB needed: running with --no-huge \
                         (ordinary pages; fine for virtual ports, slower for a NIC's DMA)"
                    );
                }
                free >= need_mib
            }
        };
        let mut args: Vec<String> = vec!["px-appliance".into(), "--in-memory".into(), "--no-telemetry".into()];
        let user_cores = cfg.eal_args.iter().any(|a| a == "-l" || a == "-c" || a.starts_with("--lcores"));
        if !user_cores {
            args.extend(["-l".into(), "0".into()]);
        }
        if !hugepages && !user_no_huge {
            args.push("--no-huge".into());
        }
        if !cfg.eal_args.iter().any(|a| a == "-m" || a.starts_with("--socket-mem")) {
            args.extend(["-m".into(), need_mib.to_string()]);
        }
        // Only virtual ports named: do not probe the host's PCI devices (EAL would try
        // each one, and log the failures of those the kernel's drivers hold).
        let names_pci =
            cfg.eal_args.iter().any(|a| a == "-a" || a.starts_with("--allow") || a == "-b" || a.starts_with("--block"));
        if cfg.eal_args.iter().any(|a| a.starts_with("--vdev"))
            && !names_pci
            && !cfg.eal_args.iter().any(|a| a == "--no-pci")
        {
            args.push("--no-pci".into());
        }
        if cfg.memory_channels > 0 {
            args.extend(["-n".into(), cfg.memory_channels.to_string()]);
        }
        args.extend(cfg.eal_args.iter().cloned());
        // EAL keeps pointers into argv (device arguments among them) and permutes it:
        // both live for the process.
        let owned: Vec<CString> =
            args.iter().map(|a| CString::new(a.as_str())).collect::<Result<_, _>>().map_err(|_| DpdkError::Eal {
                reason: "an argument contains NUL".into(),
                args: args.join(" "),
                hint: "",
            })?;
        let argv: &'static mut [*mut c_char] =
            Box::leak(owned.into_iter().map(CString::into_raw).collect::<Vec<_>>().into_boxed_slice());
        let affinity = crate::mem::thread_affinity();
        // SAFETY: argv holds argc valid NUL-terminated strings, leaked so they outlive
        // EAL; rte_eal_init is called once per process (EAL_STARTED above).
        let rc = unsafe { sys::rte_eal_init(argv.len() as c_int, argv.as_mut_ptr()) };
        if let Some(mask) = affinity {
            crate::mem::set_thread_affinity(&mask);
        }
        if rc < 0 {
            let reason = last_error();
            let hint = if hugepages {
                "with hugepages: are enough reserved (dpdk.hugepages = \"off\" runs without them)?"
            } else {
                "check the --vdev/-a device arguments (the EAL log above names the one it refused)"
            };
            return Err(DpdkError::Eal { reason, args: args.join(" "), hint });
        }
        Ok(Eal { args, hugepages })
    }

    /// DPDK's version string.
    pub fn version() -> String {
        // SAFETY: rte_version returns a pointer to a static NUL-terminated string.
        unsafe { CStr::from_ptr(sys::rte_version()) }.to_string_lossy().into_owned()
    }
}

/// Names of every port DPDK has.
fn port_names() -> Vec<(u16, String)> {
    let mut out = Vec::new();
    // SAFETY: rte_eth_find_next takes a port id and returns the next valid one, or
    // RTE_MAX_ETHPORTS when there is none; EAL is initialised.
    let mut p = unsafe { sys::rte_eth_find_next(0) };
    while u32::from(p) < sys::RTE_MAX_ETHPORTS {
        let mut buf = [0 as c_char; 64];
        // SAFETY: buf has the RTE_ETH_NAME_MAX_LEN (64) bytes the call may write.
        let rc = unsafe { sys::rte_eth_dev_get_name_by_port(p, buf.as_mut_ptr()) };
        let name = if rc == 0 {
            // SAFETY: on success the name is NUL-terminated within buf.
            unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
        } else {
            format!("port {p}")
        };
        out.push((p, name));
        // SAFETY: as above.
        p = unsafe { sys::rte_eth_find_next(p + 1) };
    }
    out
}

/// Why there is no port: devices named in the EAL arguments that did not attach (an
/// af_packet device's interface missing is said outright), or none named.
fn no_port(cfg: &DpdkConfig) -> DpdkError {
    let mut devices = Vec::new();
    let mut args = cfg.eal_args.iter();
    while let Some(a) = args.next() {
        let value = match a.as_str() {
            "--vdev" | "-a" | "--allow" => args.next().cloned(),
            _ => a.strip_prefix("--vdev=").or_else(|| a.strip_prefix("--allow=")).map(str::to_string),
        };
        devices.extend(value);
    }
    if devices.is_empty() {
        return DpdkError::NoPort;
    }
    let missing_iface = devices.iter().find_map(|d| {
        let iface = d.split(',').find_map(|kv| kv.strip_prefix("iface="))?;
        (!std::path::Path::new("/sys/class/net").join(iface).exists()).then(|| iface.to_string())
    });
    let why = match missing_iface {
        Some(i) => format!(
            "there is no interface {i} in this network namespace (ip link lists them; on the testbed, run inside \
             px-app: ip netns exec px-app px-appliance ...)"
        ),
        None => "the EAL lines above say why (a driver not loaded, a device not bound to vfio-pci)".into(),
    };
    DpdkError::NotAttached { devices: devices.join(" "), why }
}

/// A configured, started port with its mbuf pool; stopped, closed and checked for
/// leaked mbufs when dropped (after the core loops have stopped and dropped their queues).
pub struct Port {
    /// DPDK's port id.
    pub id: u16,
    /// Its name.
    pub name: String,
    /// Queue pairs in use.
    pub queues: u16,
    /// The port's MAC address.
    pub mac: [u8; 6],
    /// The driver's name.
    pub driver: String,
    /// "RSS across N queues" or why not.
    pub spread: String,
    pool: *mut sys::rte_mempool,
    pool_size: u32,
    /// Descriptors per queue, as the driver adjusted them.
    pub descriptors: (u16, u16),
}

// SAFETY: the pool pointer is only read by `mempool` for queues (DPDK's mempool is
// thread-safe) and used by Drop after every queue is gone.
unsafe impl Send for Port {}
// SAFETY: as above; &Port exposes no mutation.
unsafe impl Sync for Port {}

impl Port {
    /// Finds the port (`cfg.port`, or the only one), creates its mbuf pool on its NUMA
    /// socket, configures `queues` queue pairs (RSS across them where the driver offers
    /// it) and starts it.
    pub fn open(cfg: &DpdkConfig, queues: usize) -> Result<Port, DpdkError> {
        let ports = port_names();
        let (id, name) = if cfg.port.is_empty() {
            match ports.first() {
                None => return Err(no_port(cfg)),
                Some(p) => {
                    if ports.len() > 1 {
                        tracing::info!(
                            "dpdk: {} ports ({}); serving the first (dpdk.port chooses)",
                            ports.len(),
                            ports.iter().map(|p| p.1.as_str()).collect::<Vec<_>>().join(", ")
                        );
                    }
                    p.clone()
                }
            }
        } else {
            match ports.iter().find(|p| p.1 == cfg.port) {
                Some(p) => p.clone(),
                None => {
                    let available = if ports.is_empty() {
                        "none".to_string()
                    } else {
                        ports.iter().map(|p| p.1.as_str()).collect::<Vec<_>>().join(", ")
                    };
                    return Err(DpdkError::PortNotFound { name: cfg.port.clone(), available });
                }
            }
        };
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: id is a valid port (listed above); info is a writable rte_eth_dev_info.
        call("rte_eth_dev_info_get", unsafe { sys::rte_eth_dev_info_get(id, &mut info) })?;
        let has = usize::from(info.max_rx_queues.min(info.max_tx_queues));
        if queues > has {
            return Err(DpdkError::TooManyQueues { port: name, asked: queues, has });
        }
        let driver = if info.driver_name.is_null() {
            "?".to_string()
        } else {
            // SAFETY: driver_name is a NUL-terminated static string of the driver.
            unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
        };
        // SAFETY: id is valid.
        let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 { 0 } else { socket }; // SOCKET_ID_ANY (-1): a virtual port
        let pool_size = cfg.mbufs_per_queue * queues as u32;
        let pool_name = CString::new(format!("px-mbufs-{id}")).expect("no NUL");
        // SAFETY: the name is a valid C string for the call (DPDK copies it); sizes
        // are in range (validated); EAL is initialised.
        let pool = unsafe {
            sys::rte_pktmbuf_pool_create(pool_name.as_ptr(), pool_size, cfg.mbuf_cache, 0, MBUF_DATA_ROOM, socket)
        };
        if pool.is_null() {
            return Err(DpdkError::Call {
                what: format!("creating the pool of {pool_size} mbufs on socket {socket}"),
                reason: last_error(),
            });
        }
        let mut port = Port {
            id,
            name,
            queues: queues as u16,
            mac: [0; 6],
            driver,
            spread: String::new(),
            pool,
            pool_size,
            descriptors: (cfg.rx_descriptors, cfg.tx_descriptors),
        };
        // From here on, Drop closes the port and frees the pool on any error.
        let mut conf = sys::rte_eth_conf::default();
        let offered = info.flow_type_rss_offloads & RSS_TCP_IP;
        port.spread = if queues < 2 {
            "one queue".into()
        } else if offered != 0 {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = offered;
            format!("RSS across {queues} queues (hash types {offered:#x})")
        } else {
            format!("{queues} queues; the driver has no RSS, it spreads flows itself ({})", port.driver)
        };
        // SAFETY: conf is a valid, initialised rte_eth_conf; id is valid.
        call("rte_eth_dev_configure", unsafe { sys::rte_eth_dev_configure(id, queues as u16, queues as u16, &conf) })?;
        let (mut rxd, mut txd) = port.descriptors;
        // SAFETY: both pointers are to live u16s.
        call("rte_eth_dev_adjust_nb_rx_tx_desc", unsafe {
            sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rxd, &mut txd)
        })?;
        port.descriptors = (rxd, txd);
        for q in 0..queues as u16 {
            // SAFETY: a null rxconf/txconf asks for the driver's defaults; the pool is
            // live until Port is dropped, after the port is closed.
            call(format!("rte_eth_rx_queue_setup (queue {q})"), unsafe {
                sys::rte_eth_rx_queue_setup(id, q, rxd, socket as u32, std::ptr::null(), pool)
            })?;
            // SAFETY: as above.
            call(format!("rte_eth_tx_queue_setup (queue {q})"), unsafe {
                sys::rte_eth_tx_queue_setup(id, q, txd, socket as u32, std::ptr::null())
            })?;
        }
        let mut mac = sys::rte_ether_addr::default();
        // SAFETY: mac is a writable rte_ether_addr.
        call("rte_eth_macaddr_get", unsafe { sys::rte_eth_macaddr_get(id, &mut mac) })?;
        port.mac = mac.addr_bytes;
        // SAFETY: the port is configured with its queues set up.
        call("rte_eth_dev_start", unsafe { sys::rte_eth_dev_start(id) })?;
        Ok(port)
    }

    /// The pool the queues allocate from.
    pub(crate) fn mempool(&self) -> *mut sys::rte_mempool {
        self.pool
    }

    /// "up, 10000 Mb/s full duplex" or "down", as the driver reports it now.
    pub fn link(&self) -> String {
        let mut link = sys::rte_eth_link::default();
        // SAFETY: link is a writable rte_eth_link; the port is valid.
        let rc = unsafe { sys::rte_eth_link_get_nowait(self.id, &mut link) };
        if rc < 0 {
            return format!("unknown ({})", strerror(rc));
        }
        if link.link_status() == 0 {
            "down".into()
        } else {
            let duplex = if link.link_duplex() == 1 { "full" } else { "half" };
            format!("up, {} Mb/s {duplex} duplex", link.link_speed)
        }
    }

    /// mbufs now in the pool (free or in a core's cache) and the pool's size.
    pub fn mbufs(&self) -> (u32, u32) {
        // SAFETY: the pool is live until Drop.
        (unsafe { sys::rte_mempool_avail_count(self.pool) }, self.pool_size)
    }

    /// Frames the port's driver dropped for lack of RX descriptors or mbufs.
    pub fn missed(&self) -> u64 {
        let mut st = sys::rte_eth_stats::default();
        // SAFETY: st is a writable rte_eth_stats; the port is valid.
        if unsafe { sys::rte_eth_stats_get(self.id, &mut st) } == 0 {
            st.imissed + st.rx_nombuf
        } else {
            0
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // SAFETY: the core loops (the only users of the queues) have stopped; stopping
        // and closing the port returns the mbufs its rings held to the pool.
        unsafe {
            sys::rte_eth_dev_stop(self.id);
            sys::rte_eth_dev_close(self.id);
        }
        let (back, size) = self.mbufs();
        if back == size {
            tracing::info!("dpdk: mbufs at exit: {back} of {size} back in the pool, none leaked");
        } else {
            tracing::error!("dpdk: mbufs at exit: {back} of {size} back in the pool, {} leaked", size - back);
        }
        // SAFETY: nothing uses the pool any more; EAL is cleaned up once, last.
        unsafe {
            sys::rte_mempool_free(self.pool);
            sys::rte_eal_cleanup();
        }
    }
}
