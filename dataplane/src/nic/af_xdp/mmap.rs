//! A shared mapping of a ring that the kernel exposes through the XSK fd.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;

/// A mapped ring area; unmapped on drop.
pub(super) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; the queue that holds it
// is moved to its core thread once and used only there.
unsafe impl Send for Mmap {}

impl Mmap {
    /// Maps `len` bytes of `fd` at page offset `offset` (one of the XDP_*_PGOFF values).
    pub fn ring(fd: &OwnedFd, len: usize, offset: u64) -> io::Result<Mmap> {
        // SAFETY: a shared mapping of the XSK fd at a kernel-defined offset; the kernel
        // validates len against the ring size and the result is checked for MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mmap { ptr, len })
    }

    /// Address of byte `off` of the mapping.
    ///
    /// # Panics
    /// If `off` is outside the mapping.
    pub fn at(&self, off: u64) -> *mut u8 {
        assert!((off as usize) < self.len);
        // SAFETY: off < len, so the pointer stays inside this mapping.
        unsafe { self.ptr.as_ptr().add(off as usize) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: ptr/len describe a mapping this value owns; rings built on it are
        // dropped together with it (same owner).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
