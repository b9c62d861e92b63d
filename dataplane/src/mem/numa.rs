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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore)] // reads sysfs
    fn cpu0_has_a_node_on_linux() {
        if std::path::Path::new("/sys/devices/system/node/node0").exists() {
            assert_eq!(cpu_numa_node(0), Some(0));
        }
        assert_eq!(cpu_numa_node(1 << 20), None);
    }
}
