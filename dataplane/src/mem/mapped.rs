//! A read-only file mapped into memory (the Parallelopedia dump and its index), with
//! page-cache residency checks and read-ahead hints, so a core can tell whether touching
//! a range would wait for the disk before it touches it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;

/// A file mapped read-only for the life of this value.
///
/// The file must not be truncated or rewritten while it is mapped (a truncated page
/// raises SIGBUS when touched): operators replace an index or dump by writing a new
/// directory and restarting, never in place.
#[derive(Debug)]
pub struct MappedFile {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and never unmapped while shared (only in Drop, which
// needs ownership); reading the same bytes from several threads is fine.
unsafe impl Send for MappedFile {}
// SAFETY: as above: only `&[u8]` is ever handed out.
unsafe impl Sync for MappedFile {}

fn page() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

impl MappedFile {
    /// Maps all of `path` read-only. An empty file maps to an empty slice.
    pub fn open(path: &Path) -> io::Result<MappedFile> {
        let file = File::open(path)?;
        let len = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
        if len == 0 {
            return Ok(MappedFile { ptr: NonNull::dangling(), len: 0 });
        }
        // SAFETY: a fresh read-only shared mapping of an open file; the kernel picks the
        // address; the result is checked against MAP_FAILED.
        let p =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(MappedFile { ptr, len })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: ptr..ptr+len is a live read-only mapping owned by self (unmapped only
        // in Drop), so the borrow of `&self` cannot outlive it. Nothing in this process
        // writes it; the operator contract above keeps the file itself unchanged.
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

    fn page_span(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        if start >= end || end > self.len {
            return None;
        }
        let ps = page();
        let first = start / ps * ps;
        Some((first, end - first))
    }

    /// True if every page of `start..end` is in the page cache, i.e. reading it will
    /// not wait for the disk (a racy answer: the kernel may evict right after).
    pub fn resident(&self, start: usize, end: usize) -> bool {
        let Some((first, len)) = self.page_span(start, end) else { return true };
        let ps = page();
        let pages = len.div_ceil(ps);
        let mut vec = vec![0u8; pages];
        // SAFETY: first is page-aligned and first..first+len lies inside our mapping
        // (page_span checked end <= self.len); vec has one byte per page of that span.
        let r = unsafe { libc::mincore(self.ptr.as_ptr().add(first).cast(), len, vec.as_mut_ptr()) };
        r == 0 && vec.iter().all(|b| b & 1 == 1)
    }

    /// Declares random access (`MADV_RANDOM`): no read-ahead and no fault-around, so a
    /// lookup maps only the pages it touches (RSS tracks what is used, not 64 KiB
    /// neighbourhoods of it).
    pub fn advise_random(&self) {
        if self.len > 0 {
            // SAFETY: the whole mapping, page-aligned (mmap's result); only a hint.
            unsafe { libc::madvise(self.ptr.as_ptr().cast(), self.len, libc::MADV_RANDOM) };
        }
    }

    /// Unmaps the pages this process has touched (`MADV_DONTNEED`): they stay in the
    /// page cache, and the next touch maps them again. Bounds the resident set of a
    /// long scan over a large file (the index builder's redirect lookups).
    pub fn release_pages(&self) {
        if self.len > 0 {
            // SAFETY: the whole mapping, page-aligned (mmap's result); on a read-only
            // shared file mapping MADV_DONTNEED only drops this process's page-table
            // entries: the bytes read afterwards are the file's, as before.
            unsafe { libc::madvise(self.ptr.as_ptr().cast(), self.len, libc::MADV_DONTNEED) };
        }
    }

    /// Asks the kernel to start reading `start..end` into the page cache (returns at
    /// once; the read-ahead runs in the background).
    pub fn will_need(&self, start: usize, end: usize) {
        let Some((first, len)) = self.page_span(start, end) else { return };
        // SAFETY: a page-aligned range inside our mapping; MADV_WILLNEED only hints.
        unsafe { libc::madvise(self.ptr.as_ptr().add(first).cast(), len, libc::MADV_WILLNEED) };
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the mapping made in open, unmapped once; `&mut self` proves no
            // borrow of its bytes is alive.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "mmap of a file is a foreign call Miri cannot run")]
    fn maps_a_file_and_reports_residency() {
        let dir = std::env::temp_dir().join(format!("px-mapped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let m = MappedFile::open(&p).unwrap();
        assert_eq!(m.bytes(), &data[..]);
        let _ = m.bytes().iter().map(|&b| u64::from(b)).sum::<u64>();
        assert!(m.resident(0, m.len()), "just written and read: in the page cache");
        m.will_need(10, 5000);
        assert!(m.resident(5, 5)); // empty range
        std::fs::write(dir.join("empty"), b"").unwrap();
        assert!(MappedFile::open(&dir.join("empty")).unwrap().bytes().is_empty());
        assert!(MappedFile::open(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
