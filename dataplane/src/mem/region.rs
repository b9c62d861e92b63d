//! One contiguous, page-aligned, prefaulted memory region.
//!
//! Preference order: 2 MiB hugepages from the reserved pool (`MAP_HUGETLB`), bound to a
//! NUMA node with `mbind(MPOL_BIND)`; else ordinary 4 KiB pages with
//! `madvise(MADV_HUGEPAGE)` (transparent hugepages, best effort) and one warning in the
//! log. Under Miri the region comes from the global allocator so the arena logic above it
//! can be checked.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{NumaNode, HUGEPAGE_BYTES};

/// Whether a region must, may, or must not use reserved hugepages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HugepagePolicy {
    /// Use reserved hugepages when there are enough free; else 4 KiB pages and a warning.
    Auto,
    /// Fail when reserved hugepages cannot be had.
    Require,
    /// Never use reserved hugepages (4 KiB pages + `MADV_HUGEPAGE`).
    Off,
}

/// What memory actually backs a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// Reserved 2 MiB hugepages (`MAP_HUGETLB`).
    Hugepages,
    /// 4 KiB pages with `MADV_HUGEPAGE` advice.
    SmallPages,
    /// The global allocator (Miri only).
    Heap,
}

/// Errors from mapping a region.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemError {
    /// The requested length is zero or not a multiple of 2 MiB.
    #[error("region length {0} is not a positive multiple of 2 MiB")]
    BadLength(usize),
    /// `hugepages = "require"` and the hugepage mmap failed.
    #[error(
        "hugepages required but {len} bytes could not be mapped from the hugepage pool ({source}); \
         reserve more with `echo N > /proc/sys/vm/nr_hugepages` or set arena.hugepages = \"auto\""
    )]
    HugepagesExhausted {
        /// Bytes asked for.
        len: usize,
        /// The mmap error.
        source: io::Error,
    },
    /// mmap of ordinary pages failed.
    #[error("mmap of {len} bytes failed: {source}")]
    Map {
        /// Bytes asked for.
        len: usize,
        /// The mmap error.
        source: io::Error,
    },
}

static WARNED_FALLBACK: AtomicBool = AtomicBool::new(false);

/// A mapped region; unmapped on drop.
#[derive(Debug)]
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    backing: Backing,
}

// SAFETY: a Region exclusively owns its mapping (nothing else holds the address), and the
// mapping is plain memory with no thread affinity, so moving the owner to another thread
// is sound. It is not Sync: shared access goes through the pool's single-threaded API.
unsafe impl Send for Region {}

impl Region {
    /// Maps `len` bytes (a multiple of 2 MiB), binds it to `node` if given, and touches
    /// every page so the data path never faults on it.
    pub fn map(len: usize, node: Option<NumaNode>, policy: HugepagePolicy) -> Result<Region, MemError> {
        if len == 0 || !len.is_multiple_of(HUGEPAGE_BYTES) {
            return Err(MemError::BadLength(len));
        }
        let region = Self::map_backing(len, node, policy)?;
        region.prefault();
        Ok(region)
    }

    #[cfg(miri)]
    fn map_backing(len: usize, _node: Option<NumaNode>, _policy: HugepagePolicy) -> Result<Region, MemError> {
        let layout = std::alloc::Layout::from_size_align(len, 4096).expect("valid layout");
        // SAFETY: layout has a non-zero size (checked by the caller).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or(MemError::Map { len, source: io::ErrorKind::OutOfMemory.into() })?;
        Ok(Region { ptr, len, backing: Backing::Heap })
    }

    #[cfg(not(miri))]
    fn map_backing(len: usize, node: Option<NumaNode>, policy: HugepagePolicy) -> Result<Region, MemError> {
        if policy != HugepagePolicy::Off {
            match mmap_anon(len, libc::MAP_HUGETLB) {
                Ok(ptr) => {
                    let region = Region { ptr, len, backing: Backing::Hugepages };
                    region.bind(node);
                    return Ok(region);
                }
                Err(source) if policy == HugepagePolicy::Require => {
                    return Err(MemError::HugepagesExhausted { len, source });
                }
                Err(e) => {
                    if !WARNED_FALLBACK.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "no reserved hugepages for a {} MiB region ({e}); using 4 KiB pages with \
                             MADV_HUGEPAGE. Reserve them with scripts/hugepages.sh or \
                             /proc/sys/vm/nr_hugepages",
                            len >> 20
                        );
                    }
                }
            }
        }
        let ptr = mmap_anon(len, 0).map_err(|source| MemError::Map { len, source })?;
        // SAFETY: ptr..ptr+len is a mapping we own; madvise only changes paging advice.
        let rc = unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_HUGEPAGE) };
        if rc != 0 {
            tracing::debug!("madvise(MADV_HUGEPAGE) failed: {}", io::Error::last_os_error());
        }
        let region = Region { ptr, len, backing: Backing::SmallPages };
        region.bind(node);
        Ok(region)
    }

    /// Binds the (not yet touched) pages to `node` with mbind(MPOL_BIND).
    #[cfg(not(miri))]
    fn bind(&self, node: Option<NumaNode>) {
        let Some(node) = node else { return };
        if node >= 64 {
            tracing::warn!("NUMA node {node} is beyond the 64-node mask; region left unbound");
            return;
        }
        const MPOL_BIND: libc::c_long = 2;
        let mask: libc::c_ulong = 1 << node;
        // SAFETY: the address range is our own mapping, `mask` outlives the call, and
        // maxnode (65) tells the kernel how many bits of the one-word mask to read.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mbind,
                self.ptr.as_ptr(),
                self.len,
                MPOL_BIND,
                &mask as *const libc::c_ulong,
                65 as libc::c_ulong,
                0 as libc::c_uint,
            )
        };
        if rc != 0 {
            tracing::warn!("mbind to NUMA node {node} failed: {}", io::Error::last_os_error());
        }
    }

    fn prefault(&self) {
        let step = if self.backing == Backing::Hugepages { HUGEPAGE_BYTES } else { super::PAGE_BYTES };
        let mut off = 0;
        while off < self.len {
            // SAFETY: off < len, so the byte is inside our mapping; a volatile write of
            // zero to fresh anonymous memory (already zero) only forces the page in.
            unsafe { self.ptr.as_ptr().add(off).write_volatile(0) };
            off += step;
        }
    }

    /// Base address.
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: regions are at least 2 MiB.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What backs the region.
    pub fn backing(&self) -> Backing {
        self.backing
    }
}

#[cfg(not(miri))]
fn mmap_anon(len: usize, extra_flags: libc::c_int) -> io::Result<NonNull<u8>> {
    // SAFETY: an anonymous private mapping at a kernel-chosen address cannot alias any
    // existing Rust object; the result is checked against MAP_FAILED.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra_flags,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))
}

impl Drop for Region {
    fn drop(&mut self) {
        #[cfg(miri)]
        {
            let layout = std::alloc::Layout::from_size_align(self.len, 4096).expect("valid layout");
            // SAFETY: ptr was allocated in map_backing with exactly this layout.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
        #[cfg(not(miri))]
        {
            // SAFETY: ptr/len describe a mapping this Region owns; all borrows of it
            // (arenas, pools) hold the Region alive, so none outlive this call.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_lengths_that_are_not_hugepage_multiples() {
        assert!(matches!(Region::map(4096, None, HugepagePolicy::Off), Err(MemError::BadLength(4096))));
        assert!(matches!(Region::map(0, None, HugepagePolicy::Off), Err(MemError::BadLength(0))));
    }

    #[test]
    fn small_page_region_is_writable_and_zeroed() {
        let r = Region::map(HUGEPAGE_BYTES, Some(0), HugepagePolicy::Off).unwrap();
        assert_ne!(r.backing(), Backing::Hugepages);
        // SAFETY: the region is ours, len bytes long, and nothing else borrows it.
        let s = unsafe { std::slice::from_raw_parts_mut(r.as_ptr().as_ptr(), r.len()) };
        // Every page starts zeroed (sampled under Miri, where a full scan is slow).
        let step = if cfg!(miri) { 4096 } else { 1 };
        assert!(s.iter().step_by(step).all(|&b| b == 0));
        s[r.len() - 1] = 7;
        assert_eq!(s[r.len() - 1], 7);
    }

    /// With hugepages reserved (CI reserves them), the hugepage path must be taken and the
    /// kernel must report it in numa_maps.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn hugepage_region_when_reserved() {
        let free: usize = std::fs::read_to_string("/proc/meminfo")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("HugePages_Free:")?.trim().parse().ok())
            .unwrap_or(0);
        if free < 2 {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must reserve hugepages (scripts/hugepages.sh) before the tests run"
            );
            eprintln!("skipping: no free hugepages reserved on this machine");
            return;
        }
        let r = Region::map(HUGEPAGE_BYTES, Some(0), HugepagePolicy::Require).unwrap();
        assert_eq!(r.backing(), Backing::Hugepages);
        let maps = std::fs::read_to_string("/proc/self/numa_maps").unwrap();
        let addr = format!("{:x}", r.as_ptr().as_ptr() as usize);
        let line = maps.lines().find(|l| l.starts_with(&addr)).expect("region in numa_maps");
        assert!(line.contains("huge"), "{line}");
        assert!(line.contains("bind:0"), "{line}");
    }
}
