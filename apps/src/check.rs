//! `px-appliance check`: a preflight of the host for a configuration, line by line
//! with OK / WARN / FAIL and, for the last two, the fix.
//!
//! It reads what the kernel exposes (/proc, /sys, `ip`, `ethtool`) and opens one AF_XDP
//! socket to see the kernel has them; it changes nothing. A FAIL is something the
//! appliance cannot start or serve correctly with (it exits 1); a WARN costs speed or
//! predictability (exit 0).

use std::fmt;
use std::fs;
use std::process::Command;

use px_dataplane::config::{Backend, Config};
use px_dataplane::mem::HugepagePolicy;
use px_dataplane::net::rss::RssTable;
use px_dataplane::nic::af_xdp;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// As it should be.
    Ok,
    /// Works, at a cost.
    Warn,
    /// Will not start, or will not serve correctly.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Finding {
    /// How bad.
    pub level: Level,
    /// What was looked at and found.
    pub what: String,
    /// What to do (WARN and FAIL).
    pub fix: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.level {
            Level::Ok => "OK  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        write!(f, "{tag} {}", self.what)?;
        if !self.fix.is_empty() {
            write!(f, "\n     fix: {}", self.fix)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Report(Vec<Finding>);

impl Report {
    fn ok(&mut self, what: impl Into<String>) {
        self.0.push(Finding { level: Level::Ok, what: what.into(), fix: String::new() });
    }
    fn warn(&mut self, what: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Finding { level: Level::Warn, what: what.into(), fix: fix.into() });
    }
    fn fail(&mut self, what: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Finding { level: Level::Fail, what: what.into(), fix: fix.into() });
    }
}

/// Drivers known to attach XDP natively, and those of them with AF_XDP zero-copy, as
/// of Linux 6.x (from the drivers' own XDP code; netlink's XDP feature flags would say
/// it per device, this list says it per driver name).
const NATIVE_XDP: &[&str] = &[
    "i40e",
    "ice",
    "ixgbe",
    "ixgbevf",
    "igb",
    "igc",
    "mlx4_core",
    "mlx4_en",
    "mlx5_core",
    "bnxt_en",
    "ena",
    "virtio_net",
    "veth",
    "tun",
    "qede",
    "nfp",
    "stmmac",
    "sfc",
    "thunderx",
    "netsec",
    "mvneta",
    "mvpp2",
    "fec",
    "gve",
    "idpf",
    "txgbe",
];
const ZERO_COPY: &[&str] = &["i40e", "ice", "ixgbe", "igb", "igc", "mlx5_core", "stmmac", "gve", "idpf", "fec"];

/// Runs every check that applies to `cfg`'s backend.
pub fn run(cfg: &Config) -> Vec<Finding> {
    let mut r = Report::default();
    cores(&mut r, cfg);
    hugepages(&mut r, cfg);
    governor(&mut r, cfg);
    match cfg.server.backend {
        Backend::Kernel => listen(&mut r, cfg),
        Backend::AfXdp => af_xdp_checks(&mut r, cfg),
        Backend::Dpdk => dpdk_checks(&mut r, cfg),
    }
    irqbalance(&mut r, cfg);
    r.0
}

/// Prints the report (all of it, or with `quiet` only WARN and FAIL) and a summary;
/// returns whether nothing failed.
pub fn print(findings: &[Finding], quiet: bool) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) ends the listing, not the verdict.
    for f in findings.iter().filter(|f| !quiet || f.level != Level::Ok) {
        let _ = writeln!(out, "{f}");
    }
    let count = |l| findings.iter().filter(|f| f.level == l).count();
    let (fails, warns) = (count(Level::Fail), count(Level::Warn));
    let _ = writeln!(out, "px-appliance check: {} ok, {warns} warning(s), {fails} failure(s)", count(Level::Ok));
    fails == 0
}

fn queue_cpus(cfg: &Config) -> Vec<usize> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0..cfg.server.queues).map(|q| cfg.core_for_queue(q, cpus)).collect()
}

fn online_cpus() -> usize {
    fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .map(|s| px_dataplane::mem::parse_cpulist(s.trim()).len())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn cores(r: &mut Report, cfg: &Config) {
    let online = online_cpus();
    let cpus = queue_cpus(cfg);
    match cpus.iter().find(|&&c| c >= online) {
        Some(c) => r.fail(
            format!("server.cores names CPU {c}, but this host has CPUs 0..{}", online - 1),
            "list CPUs that exist in server.cores (or leave it empty)",
        ),
        None => {
            let mut sorted = cpus.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() < cpus.len() {
                r.warn(
                    format!(
                        "{} queues share {} CPU(s) ({cpus:?}): their loops take turns on a core",
                        cpus.len(),
                        sorted.len()
                    ),
                    "give each queue its own CPU (server.cores), or fewer queues",
                );
            } else {
                r.ok(format!("{} queue(s) on CPUs {cpus:?} of {online} online", cpus.len()));
            }
        }
    }
}

fn meminfo(key: &str) -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
}

fn hugepages(r: &mut Report, cfg: &Config) {
    const HUGE: u64 = 2 << 20;
    let q = cfg.server.queues as u64;
    let arena = (cfg.arena.pool_bytes_per_core as u64).div_ceil(HUGE) * q;
    let x = &cfg.af_xdp;
    let umem = match cfg.server.backend {
        Backend::AfXdp if x.hugepages != HugepagePolicy::Off => {
            (u64::from(x.frames_per_queue) * u64::from(x.frame_bytes)).div_ceil(HUGE) * q
        }
        Backend::Dpdk if cfg.dpdk.hugepages != HugepagePolicy::Off => {
            cfg.dpdk.pool_bytes(cfg.server.queues).div_ceil(HUGE)
        }
        _ => 0,
    };
    let need_pages = arena + umem;
    let need_pages = if cfg.arena.hugepages == HugepagePolicy::Off { need_pages - arena } else { need_pages };
    if need_pages == 0 {
        r.ok("hugepages not used (arena.hugepages and af_xdp.hugepages are \"off\")");
        return;
    }
    let free = meminfo("HugePages_Free").unwrap_or(0);
    let total = meminfo("HugePages_Total").unwrap_or(0);
    let what = format!(
        "hugepages: {need_pages} of 2 MiB needed ({arena} for arenas, {umem} for {}), {free} free of {total}",
        if cfg.server.backend == Backend::Dpdk { "DPDK's mbufs" } else { "UMEM" }
    );
    let fix = format!(
        "reserve them: echo {} > /proc/sys/vm/nr_hugepages (or scripts/hugepages.sh {})",
        total + need_pages.saturating_sub(free),
        total + need_pages.saturating_sub(free)
    );
    let required = cfg.arena.hugepages == HugepagePolicy::Require
        || (cfg.server.backend == Backend::AfXdp && x.hugepages == HugepagePolicy::Require)
        || (cfg.server.backend == Backend::Dpdk && cfg.dpdk.hugepages == HugepagePolicy::Require);
    match (free >= need_pages, required) {
        (true, _) => r.ok(what),
        (false, true) => r.fail(format!("{what}; a hugepages = \"require\" key makes this fatal"), fix),
        (false, false) => r.warn(format!("{what}: memory falls back to 4 KiB pages (more TLB misses)"), fix),
    }
}

fn governor(r: &mut Report, cfg: &Config) {
    let mut slow = Vec::new();
    let mut seen = false;
    for cpu in queue_cpus(cfg) {
        if let Ok(g) = fs::read_to_string(format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor")) {
            seen = true;
            if g.trim() != "performance" {
                slow.push(format!("CPU {cpu}: {}", g.trim()));
            }
        }
    }
    match (seen, slow.is_empty()) {
        (false, _) => r.ok("CPU frequency: no cpufreq governor exposed (a VM, or fixed frequency)"),
        (true, true) => r.ok("CPU frequency governor \"performance\" on every queue's CPU"),
        (true, false) => r.warn(
            format!("CPU frequency governor not \"performance\" ({}): clocks ramp after idle, tails grow", slow.join(", ")),
            "cpupower frequency-set -g performance (or echo performance > /sys/devices/system/cpu/cpuN/cpufreq/scaling_governor)",
        ),
    }
}

fn listen(r: &mut Report, cfg: &Config) {
    match std::net::TcpListener::bind(cfg.server.listen) {
        Ok(_) => r.ok(format!("server.listen {} can be bound", cfg.server.listen)),
        Err(e) => r.fail(
            format!("server.listen {} cannot be bound: {e}", cfg.server.listen),
            "stop what serves it, choose another address, or grant CAP_NET_BIND_SERVICE for ports below 1024",
        ),
    }
}

fn irqbalance(r: &mut Report, cfg: &Config) {
    let running = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path().join("comm")).ok())
        .any(|c| c.trim() == "irqbalance");
    match (running, cfg.server.backend) {
        (false, _) => r.ok("irqbalance is not running"),
        (true, Backend::AfXdp) => r.warn(
            "irqbalance is running: it moves the NIC queues' interrupts away from the CPUs that serve them",
            format!(
                "systemctl disable --now irqbalance (or ban the NIC's IRQs), then scripts/nic-irq-affinity.sh {} CPULIST",
                cfg.af_xdp.iface
            ),
        ),
        (true, Backend::Kernel) => r.ok("irqbalance is running (the kernel backend does not pin interrupts)"),
        (true, Backend::Dpdk) => r.ok("irqbalance is running (DPDK polls its queues: no interrupts to pin)"),
    }
}

/// The DPDK backend: built in, privileges, and a virtual af_packet port's interface.
fn dpdk_checks(r: &mut Report, cfg: &Config) {
    match px_dataplane::nic::dpdk::BUILT_AGAINST {
        Some(v) => r.ok(format!("this binary has the DPDK backend (built against DPDK {v})")),
        None => r.fail(
            "this binary was built without the DPDK backend",
            "cargo build --release --features dpdk (needs libdpdk-dev and libclang-dev), or --backend af-xdp",
        ),
    }
    if cfg.dpdk.ip.is_empty() {
        r.fail("dpdk.ip is not set", "--ip ADDR/PREFIX (e.g. --ip 10.99.0.1/24)");
    }
    let missing = af_xdp::missing_capabilities();
    if missing.iter().any(|c| *c == "CAP_NET_RAW" || *c == "CAP_NET_ADMIN") {
        r.fail(
            format!(
                "DPDK's drivers need root (or CAP_NET_RAW and CAP_NET_ADMIN for net_af_packet); this process lacks {}",
                missing.join(", ")
            ),
            "run as root",
        );
    }
    // A net_af_packet port: its interface must exist with enough queues for qpairs.
    let args = cfg.dpdk.eal_args.join(" ");
    if let Some(vdev) = args.split_whitespace().find(|a| a.starts_with("net_af_packet")) {
        let kv = |k: &str| vdev.split(',').find_map(|p| p.strip_prefix(k)?.strip_prefix('=')).map(str::to_string);
        let qpairs: usize = kv("qpairs").and_then(|q| q.parse().ok()).unwrap_or(1);
        match kv("iface") {
            None => r.fail(format!("{vdev}: no iface= argument"), "add iface=IF to the --vdev arguments"),
            Some(iface) => match af_xdp::rx_queue_count(&iface) {
                Err(_) => r.fail(format!("{vdev}: no interface {iface}"), "ip link shows the interfaces"),
                Ok(_) if qpairs < cfg.server.queues => r.fail(
                    format!("{vdev}: qpairs={qpairs} but --queues {}", cfg.server.queues),
                    format!("qpairs={} in the --vdev arguments", cfg.server.queues),
                ),
                Ok(_) => r.ok(format!("{vdev}: interface {iface}, {qpairs} queue pair(s)")),
            },
        }
    } else if args.is_empty() {
        r.warn(
            "dpdk.eal_args is empty: DPDK serves the first NIC bound to vfio-pci/uio",
            "bind one with dpdk-devbind.py -b vfio-pci PCI_ADDRESS, or give --dpdk-args \"--vdev ...\"",
        );
    }
}

fn af_xdp_checks(r: &mut Report, cfg: &Config) {
    let missing = af_xdp::missing_capabilities();
    if missing.is_empty() {
        r.ok("capabilities: CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF are effective");
    } else {
        r.fail(
            format!("capabilities: this process lacks {}", missing.join(", ")),
            "run as root, or with the capabilities of deploy/px-appliance.service",
        );
    }
    match af_xdp::probe_socket() {
        Ok(true) => r.ok("AF_XDP sockets: the kernel has them"),
        Ok(false) => {
            r.fail("AF_XDP sockets: this kernel has none", "a kernel with CONFIG_XDP_SOCKETS=y, or --backend kernel")
        }
        Err(e) => {
            r.warn(format!("AF_XDP sockets: cannot tell ({e})"), "run the check with the appliance's capabilities")
        }
    }
    let iface = &cfg.af_xdp.iface;
    let sys = format!("/sys/class/net/{iface}");
    if !std::path::Path::new(&sys).exists() {
        r.fail(
            format!("interface {iface:?}: not found in this network namespace"),
            "set af_xdp.iface (--iface) to a device `ip link` lists here",
        );
        return;
    }
    let driver = fs::read_link(format!("{sys}/device/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| ethtool_driver(iface))
        .unwrap_or_else(|| "unknown".into());
    driver_support(r, iface, &driver);
    link(r, iface, cfg);
    channels(r, iface, cfg);
    rss(r, iface, cfg);
    irq_affinity(r, iface, cfg);
    numa(r, iface, cfg);
    kernel_address(r, iface, cfg);
    attached_program(r, iface);
}

fn ethtool_driver(iface: &str) -> Option<String> {
    let out = Command::new("ethtool").args(["-i", iface]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| l.strip_prefix("driver: ").map(str::to_string))
}

fn driver_support(r: &mut Report, iface: &str, driver: &str) {
    let native = NATIVE_XDP.contains(&driver);
    let zc = ZERO_COPY.contains(&driver);
    match (native, zc) {
        (true, true) => r.ok(format!("{iface}: driver {driver}: native XDP and AF_XDP zero-copy")),
        (true, false) => r.warn(
            format!("{iface}: driver {driver}: native XDP, but no AF_XDP zero-copy (copy mode: one copy per frame each way)"),
            "for zero-copy use a NIC whose driver has it (ice, i40e, ixgbe, igc, mlx5), or the DPDK backend",
        ),
        (false, _) => r.warn(
            format!("{iface}: driver {driver}: not known to attach XDP natively (generic mode: an skb per frame)"),
            "expect a fraction of native speed; a NIC with native XDP (ice, i40e, mlx5, ...) serves far more",
        ),
    }
}

fn link(r: &mut Report, iface: &str, cfg: &Config) {
    let sys =
        |f: &str| fs::read_to_string(format!("/sys/class/net/{iface}/{f}")).unwrap_or_default().trim().to_string();
    let (state, mtu) = (sys("operstate"), sys("mtu").parse::<u32>().unwrap_or(0));
    if state == "up" || state == "unknown" {
        r.ok(format!("{iface}: link {state}, MTU {mtu}"));
    } else {
        r.fail(format!("{iface}: link is {state}"), format!("ip link set {iface} up (and check the cable/peer)"));
    }
    // A frame must fit a UMEM frame after the headroom (TX metadata, 256 bytes at most).
    if mtu + 14 > cfg.af_xdp.frame_bytes.saturating_sub(256) {
        r.fail(
            format!("{iface}: MTU {mtu} does not fit af_xdp.frame_bytes {} with its headroom", cfg.af_xdp.frame_bytes),
            format!("ip link set {iface} mtu 1500, or a larger af_xdp.frame_bytes"),
        );
    }
}

fn channels(r: &mut Report, iface: &str, cfg: &Config) {
    let has = af_xdp::rx_queue_count(iface).unwrap_or(0);
    let q = cfg.server.queues;
    if q > has {
        r.fail(
            format!("{iface}: {q} queue(s) asked (--queues), the device has {has} RX queue(s)"),
            format!("ethtool -L {iface} combined {q} (if the NIC allows), or --queues {has}"),
        );
    } else if q < has {
        r.warn(
            format!("{iface}: {has} RX queues, {q} served: frames RSS puts on queues {q}..{} reach no loop", has - 1),
            format!("ethtool -L {iface} combined {q}, or steer RSS to the served queues: ethtool -X {iface} equal {q}"),
        );
    } else {
        r.ok(format!("{iface}: {has} RX queue(s), each served"));
    }
}

fn rss(r: &mut Report, iface: &str, cfg: &Config) {
    let out = Command::new("ethtool").args(["-x", iface]).output();
    let text = out.ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let Some(table) = text.as_deref().and_then(RssTable::from_ethtool) else {
        r.warn(
            format!("{iface}: RSS indirection table and key not readable (ethtool -x): a virtual device, or no RSS"),
            "none needed on veth (the sender's queue choice steers flows); on a NIC, check `ethtool -x` works",
        );
        return;
    };
    let q = cfg.server.queues as u32;
    let beyond: Vec<u32> = table.table().iter().copied().filter(|&e| e >= q).collect();
    let used: std::collections::BTreeSet<u32> = table.table().iter().copied().collect();
    if !beyond.is_empty() {
        r.fail(
            format!(
                "{iface}: the RSS table sends flows to queue(s) {:?} that no loop serves",
                beyond.iter().collect::<std::collections::BTreeSet<_>>()
            ),
            format!("ethtool -X {iface} equal {q}"),
        );
    } else if (used.len() as u32) < q {
        r.warn(
            format!("{iface}: the RSS table uses only queues {used:?} of {q}"),
            format!("ethtool -X {iface} equal {q}"),
        );
    } else {
        r.ok(format!("{iface}: RSS spreads flows over queues 0..{} (Toeplitz key known)", q - 1));
    }
}

fn irq_affinity(r: &mut Report, iface: &str, cfg: &Config) {
    let interrupts = fs::read_to_string("/proc/interrupts").unwrap_or_default();
    // Per-queue IRQs named after the interface ("eth1-TxRx-3", "eth1-rx-3").
    let mut irqs: Vec<(usize, String)> = interrupts
        .lines()
        .filter_map(|l| {
            let name = l.split_whitespace().last()?;
            let rest = name.strip_prefix(iface)?.strip_prefix(['-', '_'])?;
            let queue = rest.rsplit(['-', '_']).next()?.parse().ok()?;
            Some((queue, l.split(':').next()?.trim().to_string()))
        })
        .collect();
    irqs.sort();
    if irqs.is_empty() {
        r.ok(format!(
            "{iface}: no per-queue interrupts named after it (a virtual device, or a driver that names them otherwise)"
        ));
        return;
    }
    let cpus = queue_cpus(cfg);
    let mut wrong = Vec::new();
    for (queue, irq) in irqs.iter().filter(|(q, _)| *q < cpus.len()) {
        let list = fs::read_to_string(format!("/proc/irq/{irq}/smp_affinity_list")).unwrap_or_default();
        let set = px_dataplane::mem::parse_cpulist(list.trim());
        if set != [cpus[*queue]] {
            wrong.push(format!("queue {queue} (IRQ {irq}) on CPUs {} not {}", list.trim(), cpus[*queue]));
        }
    }
    if wrong.is_empty() {
        r.ok(format!("{iface}: each queue's interrupt is pinned to the CPU that serves it"));
    } else {
        let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
        r.warn(
            format!("{iface}: interrupts not on their queue's CPU: {}", wrong.join("; ")),
            format!("scripts/nic-irq-affinity.sh {iface} {}", list.join(",")),
        );
    }
}

fn numa(r: &mut Report, iface: &str, cfg: &Config) {
    let node = fs::read_to_string(format!("/sys/class/net/{iface}/device/numa_node"))
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|&n| n >= 0);
    let Some(node) = node else {
        r.ok(format!("{iface}: no NUMA node (a virtual device, or one node)"));
        return;
    };
    let far: Vec<usize> = queue_cpus(cfg)
        .into_iter()
        .filter(|&c| px_dataplane::mem::cpu_numa_node(c).is_some_and(|n| i64::from(n) != node))
        .collect();
    if far.is_empty() {
        r.ok(format!("{iface}: on NUMA node {node}, as every queue's CPU"));
    } else {
        r.warn(
            format!("{iface}: on NUMA node {node}, but CPUs {far:?} are on another node (every frame crosses the interconnect)"),
            format!("choose CPUs of node {node} (server.cores; /sys/devices/system/node/node{node}/cpulist)"),
        );
    }
}

fn kernel_address(r: &mut Report, iface: &str, cfg: &Config) {
    let out = Command::new("ip").args(["-o", "addr", "show", "dev", iface]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let ours: Vec<&str> = [&cfg.af_xdp.ip, &cfg.af_xdp.ip6]
        .iter()
        .filter_map(|a| a.split('/').next())
        .filter(|a| !a.is_empty())
        .collect();
    let clash: Vec<&str> =
        ours.iter().copied().filter(|a| text.split_whitespace().any(|w| w.split('/').next() == Some(a))).collect();
    if clash.is_empty() {
        r.ok(format!("{iface}: the kernel does not hold the appliance's address(es) {ours:?}"));
    } else {
        let dels: Vec<String> = clash.iter().map(|a| format!("ip addr del {a}/PREFIX dev {iface}")).collect();
        r.fail(
            format!(
                "{iface}: the kernel also holds {clash:?}: it answers ARP and resets our TCP connections for frames XDP passes up"
            ),
            dels.join("; "),
        );
    }
}

fn attached_program(r: &mut Report, iface: &str) {
    let out = Command::new("ip").args(["-d", "link", "show", "dev", iface]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    match text.split_whitespace().skip_while(|w| !w.starts_with("prog/xdp")).nth(2) {
        Some(id) => r.fail(
            format!("{iface}: an XDP program (id {id}) is already attached: another appliance or tool owns the device"),
            format!("stop it, or detach it: ip link set dev {iface} xdp off"),
        ),
        None => r.ok(format!("{iface}: no XDP program attached")),
    }
}
