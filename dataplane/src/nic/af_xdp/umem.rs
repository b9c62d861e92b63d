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
    tx_meta: u32,
}

/// Bytes reserved before a TX frame for its `struct xsk_tx_metadata` (flags, then the
/// checksum request; 24 bytes in the UAPI).
pub(super) const TX_METADATA_LEN: u32 = 24;

impl Umem {
    /// Splits `region` into frames of `frame_bytes` (2048 or 4096).
    pub fn new(region: Region, frame_bytes: u32) -> Umem {
        let frames = (region.len() / frame_bytes as usize) as u32;
        Umem { region, frame_bytes, frames, tx_meta: 0 }
    }

    /// Registers the region with an XSK socket (XDP_UMEM_REG); with `tx_metadata`, asks
    /// for room for TX metadata before each frame (Linux ≥ 6.8; from 6.11 the request
    /// also needs the XDP_UMEM_TX_METADATA_LEN flag, which 6.8–6.10 refuse). Returns
    /// whether the metadata is in force.
    pub fn register(&mut self, fd: &OwnedFd, tx_metadata: bool) -> io::Result<bool> {
        let reg = |flags, tx_metadata_len| libc::xdp_umem_reg {
            addr: self.region.as_ptr().as_ptr() as u64,
            len: self.region.len() as u64,
            chunk_size: self.frame_bytes,
            headroom: 0,
            flags,
            tx_metadata_len,
        };
        // Kernels before 6.8 read only the fields they know and would ignore the length
        // silently, then refuse every frame that carries metadata: ask only from 6.8.
        if tx_metadata && syscall::kernel_at_least(6, 8) {
            for flags in [libc::XDP_UMEM_TX_METADATA_LEN, 0] {
                match syscall::setsockopt(fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg(flags, TX_METADATA_LEN)) {
                    Ok(()) => {
                        self.tx_meta = TX_METADATA_LEN;
                        return Ok(true);
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        syscall::setsockopt(fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg(0, 0)).map(|()| false)
    }

    /// Bytes of TX metadata before each TX frame (0: none registered).
    pub fn tx_meta(&self) -> u32 {
        self.tx_meta
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
