//! A read-only file held in memory so reading it never page-faults: copied into reserved
//! hugepages when there are enough, else mapped with `MAP_POPULATE` and locked with
//! mlock(2). The wiki app's title index and page table live here: a lookup touches
//! scattered pages, and a fault on the core would stall every connection it serves.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;

use super::{HugepagePolicy, Region, HUGEPAGE_BYTES};

/// Where a [`ResidentFile`]'s bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residence {
    /// A copy in reserved 2 MiB hugepages (anonymous memory, counted as hugetlb).
    Hugepages,
    /// The file's pages, mapped, populated and locked in memory (file-backed).
    Locked,
    /// The file's pages, mapped and populated, but mlock was refused (RLIMIT_MEMLOCK):
    /// the kernel may evict them under memory pressure.
    Populated,
}

impl Residence {
    /// For the log.
    pub fn describe(self) -> &'static str {
        match self {
            Residence::Hugepages => "copied into hugepages",
            Residence::Locked => "mapped with MAP_POPULATE and locked",
            Residence::Populated => "mapped with MAP_POPULATE, not locked (mlock refused: raise RLIMIT_MEMLOCK)",
        }
    }
}

/// A file's bytes, resident for the life of this value.
#[derive(Debug)]
pub struct ResidentFile {
    ptr: NonNull<u8>,
    len: usize,
    map_len: usize,
    how: Residence,
    _region: Option<Region>,
}

// SAFETY: the bytes are written once, in `load`, before the value exists; afterwards only
// `&[u8]` is handed out, and the memory (a Region or a mapping) is released only in Drop.
unsafe impl Send for ResidentFile {}
// SAFETY: as above: shared reads of immutable bytes.
unsafe impl Sync for ResidentFile {}

impl ResidentFile {
    /// Loads `path`: into hugepages unless `policy` is `Off` or they are short (then
    /// mapped, populated and locked; `Require` fails instead).
    pub fn load(path: &Path, policy: HugepagePolicy) -> io::Result<ResidentFile> {
        let mut file = File::open(path)?;
        let len = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
        if len == 0 {
            return Ok(ResidentFile {
                ptr: NonNull::dangling(),
                len: 0,
                map_len: 0,
                how: Residence::Locked,
                _region: None,
            });
        }
        if policy != HugepagePolicy::Off {
            let size = len.div_ceil(HUGEPAGE_BYTES) * HUGEPAGE_BYTES;
            match Region::map(size, None, HugepagePolicy::Require) {
                Ok(region) => {
                    let ptr = region.as_ptr();
                    // SAFETY: the region is ours, at least len bytes, and nothing else
                    // refers to it until this function returns.
                    let buf = unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), len) };
                    file.read_exact(buf)?;
                    return Ok(ResidentFile { ptr, len, map_len: 0, how: Residence::Hugepages, _region: Some(region) });
                }
                Err(e) if policy == HugepagePolicy::Require => {
                    return Err(io::Error::other(format!("{}: no hugepages for it ({e})", path.display())));
                }
                Err(_) => {}
            }
        }
        // SAFETY: a fresh read-only shared mapping of an open file, populated at once;
        // the result is checked against MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        // SAFETY: the whole mapping just made; mlock only pins its pages.
        let how = if unsafe { libc::mlock(p, len) } == 0 { Residence::Locked } else { Residence::Populated };
        Ok(ResidentFile { ptr, len, map_len: len, how, _region: None })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: ptr..ptr+len is memory this value owns (a Region or a mapping), filled
        // in `load` and never written again; released only in Drop.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the bytes are.
    pub fn residence(&self) -> Residence {
        self.how
    }
}

impl Drop for ResidentFile {
    fn drop(&mut self) {
        if self.map_len > 0 {
            // SAFETY: the mapping made in `load`, unmapped once; `&mut self` proves no
            // borrow of its bytes is alive (the Region, if any, unmaps itself).
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.map_len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "file I/O and mmap of a file are foreign calls Miri cannot run")]
    fn a_loaded_file_reads_back_whole_either_way() {
        let path = std::env::temp_dir().join(format!("px-resident-{}", std::process::id()));
        let data: Vec<u8> = (0..3_000_001u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let locked = ResidentFile::load(&path, HugepagePolicy::Off).unwrap();
        assert_ne!(locked.residence(), Residence::Hugepages);
        assert!(locked.bytes() == &data[..]);
        // Auto: hugepages if the host has them reserved, else the same as Off.
        let auto = ResidentFile::load(&path, HugepagePolicy::Auto).unwrap();
        assert!(auto.bytes() == &data[..], "{:?}", auto.residence());
        std::fs::remove_file(&path).unwrap();
    }
}
