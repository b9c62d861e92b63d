//! The UMEM: one hugepage region split into equal frames that the kernel and we pass
//! back and forth by address. Frame ownership moves with the address: in the fill ring
//! or RX ring it is the kernel's until we consume the RX descriptor; in our free list it
//! is ours; in the TX ring it is the kernel's until it appears on the completion ring.

use std::io;
use std::os::fd::OwnedFd;

use super::syscall;
use crate::mem::Region;

/// The frame memory of one queue.
pub(super) struct Umem {
    region: Region,
    frame_bytes: u32,
    frames: u32,
}

impl Umem {
    /// Splits `region` into frames of `frame_bytes` (2048 or 4096).
    pub fn new(region: Region, frame_bytes: u32) -> Umem {
        let frames = (region.len() / frame_bytes as usize) as u32;
        Umem { region, frame_bytes, frames }
    }

    /// Registers the region with an XSK socket (XDP_UMEM_REG).
    pub fn register(&self, fd: &OwnedFd) -> io::Result<()> {
        let reg = libc::xdp_umem_reg {
            addr: self.region.as_ptr().as_ptr() as u64,
            len: self.region.len() as u64,
            chunk_size: self.frame_bytes,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        syscall::setsockopt(fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg)
    }

    pub fn frame_bytes(&self) -> u32 {
        self.frame_bytes
    }

    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Address of frame `i`.
    pub fn frame_addr(&self, i: u32) -> u64 {
        u64::from(i) * u64::from(self.frame_bytes)
    }

    /// The frame base an address (possibly offset by headroom) belongs to.
    pub fn frame_base(&self, addr: u64) -> u64 {
        addr - addr % u64::from(self.frame_bytes)
    }

    /// Bytes `addr..addr+len` of a received frame.
    ///
    /// # Panics
    /// If the range is outside the UMEM or crosses a frame (a corrupt descriptor).
    pub fn bytes(&self, addr: u64, len: u32) -> &[u8] {
        self.check(addr, len);
        // SAFETY: the range is inside the region (checked) and inside one frame; the
        // frame is ours (we consumed its RX descriptor and have not yet refilled it), so
        // the kernel does not write it while this borrow lives.
        unsafe { std::slice::from_raw_parts(self.region.as_ptr().as_ptr().add(addr as usize), len as usize) }
    }

    /// The whole frame at `addr` for writing a frame to send, while received frames
    /// (other addresses) may still be borrowed.
    ///
    /// # Safety
    /// The caller owns the frame: it took `addr` from its free list (so the kernel is
    /// not using it) and holds no other borrow of that frame while this one lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn frame_mut(&self, addr: u64) -> &mut [u8] {
        self.check(addr, self.frame_bytes);
        // SAFETY: inside the region and one frame (checked). The region is mmap'd memory
        // reached through a raw pointer, not memory a Rust reference owns, and the frame
        // is exclusively the caller's (the contract above), so this `&mut` aliases
        // nothing: received frames handed out by `bytes` are other frames.
        unsafe {
            std::slice::from_raw_parts_mut(self.region.as_ptr().as_ptr().add(addr as usize), self.frame_bytes as usize)
        }
    }

    fn check(&self, addr: u64, len: u32) {
        let fb = u64::from(self.frame_bytes);
        assert!(
            addr + u64::from(len) <= self.region.len() as u64 && (addr % fb) + u64::from(len) <= fb,
            "descriptor {addr:#x}+{len} outside the UMEM frame"
        );
    }
}
