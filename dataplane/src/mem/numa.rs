//! Which NUMA node a CPU belongs to, read from sysfs (no libnuma).

use std::fs;

/// A NUMA node number as the kernel numbers them.
pub type NumaNode = u32;

/// The NUMA node of `cpu`, from `/sys/devices/system/cpu/cpuN/nodeM`.
/// `None` when sysfs does not say (non-NUMA kernels, containers without sysfs).
pub fn cpu_numa_node(cpu: usize) -> Option<NumaNode> {
    let dir = fs::read_dir(format!("/sys/devices/system/cpu/cpu{cpu}")).ok()?;
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .find_map(|name| name.strip_prefix("node")?.parse().ok())
}

/// CPUs of NUMA `node` in order, from `/sys/devices/system/node/nodeN/cpulist`
/// (`0-3,8-11`). Empty when sysfs does not say.
pub fn node_cpus(node: NumaNode) -> Vec<usize> {
    let Ok(text) = fs::read_to_string(format!("/sys/devices/system/node/node{node}/cpulist")) else {
        return Vec::new();
    };
    parse_cpulist(text.trim())
}

/// Parses a kernel CPU list such as `0-3,8,10-11`.
pub fn parse_cpulist(text: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    cpus.extend(a..=b);
                }
            }
            None => cpus.extend(part.parse::<usize>().ok()),
        }
    }
    cpus
}

/// The calling thread's CPU affinity mask (None if the kernel refuses to say).
pub fn thread_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain bits; all zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a writable cpu_set_t of the size passed; pid 0 is this thread.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    (rc == 0).then_some(set)
}

/// Puts back a mask [`thread_affinity`] returned (libraries such as DPDK's EAL pin the
/// thread that initialises them).
pub fn set_thread_affinity(set: &libc::cpu_set_t) {
    // SAFETY: set is a valid cpu_set_t of the size passed; pid 0 is this thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
    if rc != 0 {
        tracing::warn!("restoring the thread's CPU affinity failed: {}", std::io::Error::last_os_error());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpulists() {
        assert_eq!(parse_cpulist("0-3,8,10-11"), [0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpulist("5"), [5]);
        assert_eq!(parse_cpulist(""), Vec::<usize>::new());
    }

    #[test]
    #[cfg_attr(miri, ignore)] // reads sysfs
    fn cpu0_has_a_node_on_linux() {
        if std::path::Path::new("/sys/devices/system/node/node0").exists() {
            assert_eq!(cpu_numa_node(0), Some(0));
        }
        assert_eq!(cpu_numa_node(1 << 20), None);
    }
}
