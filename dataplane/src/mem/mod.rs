//! Memory: hugepage-backed regions bound to a NUMA node, a per-core chunk pool carved
//! from one region, and the per-connection rewindable [`Arena`].
//!
//! This module and `nic/` are the only places `unsafe` is allowed; every block says why
//! it is sound.
//!
//! Ownership: a core loop maps one [`Region`] at start (prefaulted, so the data path
//! never takes a page fault on arena memory), wraps it in a [`ChunkPool`], and every
//! connection on that core gets an [`Arena`] that borrows chunks from the pool while a
//! request is in flight and gives them back when it is rewound. [`MappedFile`] maps a
//! read-only file (the wiki dump) with residency checks for the cold-read path;
//! [`ResidentFile`] holds one (the wiki index) where reading it never faults;
//! [`FileReads`] reads byte ranges of files through a core's own io_uring.

mod arena;
mod mapped;
mod numa;
mod pool;
mod region;
mod resident;
mod uring;

pub use arena::{Arena, ArenaError, ArenaVec, Mark, Pinned};
pub use mapped::MappedFile;
pub use numa::{cpu_numa_node, node_cpus, parse_cpulist, set_thread_affinity, thread_affinity, NumaNode};
pub use pool::{ChunkPool, PoolStats};
pub use region::{Backing, HugepagePolicy, MemError, Region};
pub use resident::{Residence, ResidentFile};
pub use uring::{FileReadCounters, FileReads, ReadKey, FILE_READ_MAX_SLEEP};

/// Size of one x86-64 huge page; regions are a whole number of them.
pub const HUGEPAGE_BYTES: usize = 2 * 1024 * 1024;
/// Size of a base page.
pub const PAGE_BYTES: usize = 4096;

/// Asks the CPU to bring the cache lines of `bytes` bytes from `p` into its caches
/// ahead of use (a hint: nothing is read, nothing can fault, and on targets without the
/// instruction it does nothing). The TCP engine uses it to start the memory reads of a
/// whole batch of segments' connections before it handles the first, so that with
/// connections far beyond the cache they overlap instead of stalling one after another.
#[inline]
pub fn prefetch<T>(p: &T, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let base = (p as *const T).cast::<i8>();
        let mut off = 0;
        while off < bytes {
            // SAFETY: PREFETCHT0 is a hint that never faults, whatever the address; the
            // pointer is derived from a live reference and never dereferenced.
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(base.wrapping_add(off)) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, bytes);
}
