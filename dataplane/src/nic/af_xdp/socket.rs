//! One XSK socket bound to one NIC queue, with its UMEM and four rings: the
//! [`PacketIo`] of the AF_XDP backend.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::mmap::Mmap;
use super::ring::{Consumer, Producer, RingLayout};
use super::umem::Umem;
use super::{syscall, BindMode, Doorbell, TxChecksum, XdpConfig, XdpError};
use crate::mem::{NumaNode, Region, HUGEPAGE_BYTES};
use crate::nic::{FrameBatch, PartialChecksum, TxSink};
use crate::nic::{IoCounters, PacketIo, TxFull};
use std::sync::Arc;

/// An AF_XDP socket on one queue.
pub struct XskQueue {
    fd: OwnedFd,
    umem: Umem,
    fill: Producer<u64>,
    rx: Consumer<libc::xdp_desc>,
    rx_done: Vec<u64>,
    txs: TxSide,
    counters: IoCounters,
    zerocopy: bool,
    doorbell: Option<Arc<Doorbell>>,
    /// The kernel's preferred busy polling is on: an empty RX ring is refilled by
    /// running the device's NAPI from this thread (a zero-length recvfrom).
    busy_poll: bool,
    /// The loop's say (frames arrive closely enough to busy poll for): while it is
    /// no, the socket's `SO_BUSY_POLL` is 0 (its sends do not run the NAPI either) and
    /// this queue does not hold the interface's deferral on.
    busy_poll_now: bool,
    /// `SO_BUSY_POLL` while busy polling, µs.
    busy_poll_us: libc::c_int,
    /// The interface's deferral, held on while this queue busy polls.
    deferral: Option<Arc<super::Deferral>>,
}

/// `SO_PREFER_BUSY_POLL` and `SO_BUSY_POLL_BUDGET` (asm-generic values, x86 and arm64).
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

/// The transmit half: completion and TX rings and the free frames, apart from the
/// receive half so a frame can be built in UMEM while a received one is borrowed.
struct TxSide {
    fd: RawFd,
    comp: Consumer<u64>,
    tx: Producer<libc::xdp_desc>,
    free_frames: Vec<u64>,
    unsubmitted: u32,
    batch: u32,
    packets: u64,
    bytes: u64,
    ring_full: u64,
    wakeups: u64,
    in_place: u64,
    /// Frames may carry a checksum request in their TX metadata (copy mode only: there
    /// the kernel itself honours it; a zero-copy driver may not).
    csum_offload: bool,
    csum_offloaded: u64,
}

impl TxSide {
    fn reclaim(&mut self, umem: &Umem) {
        let n = self.comp.available(u32::MAX);
        for i in 0..n {
            let addr = self.comp.get(i);
            self.free_frames.push(umem.frame_base(addr));
        }
        if n > 0 {
            self.comp.release(n);
        }
    }

    /// A free frame with a TX slot for a frame of `len` bytes, if there is one.
    fn slot(&mut self, umem: &Umem, len: usize) -> Option<u64> {
        if len > umem.frame_bytes() as usize {
            self.ring_full += 1;
            return None;
        }
        if self.free_frames.is_empty() {
            self.reclaim(umem);
        }
        if self.tx.free(1) == 0 {
            self.flush(umem);
        }
        match (self.free_frames.pop(), self.tx.free(1) > 0) {
            (Some(addr), true) => Some(addr),
            (addr, _) => {
                self.free_frames.extend(addr);
                self.ring_full += 1;
                None
            }
        }
    }

    /// Queues the frame just written at `addr`.
    fn push(&mut self, umem: &Umem, addr: u64, len: usize, options: u32) {
        self.tx.push(libc::xdp_desc { addr, len: len as u32, options });
        self.unsubmitted += 1;
        self.packets += 1;
        self.bytes += len as u64;
        if self.unsubmitted >= self.batch {
            self.flush(umem);
        }
    }

    /// Builds a frame of `len` bytes in place with `fill`; false if no frame was free.
    /// With `csum`, `fill` left the L4 checksum partial and the frame's TX metadata asks
    /// the kernel to finish it (`struct xsk_tx_metadata`: flags, csum_start,
    /// csum_offset).
    ///
    /// Once a UMEM has TX metadata registered, the kernel looks for it `tx_meta` bytes
    /// before *every* TX descriptor and refuses one that leaves no room: so every frame
    /// starts that far into its UMEM frame, with or without a request.
    fn build(
        &mut self,
        umem: &Umem,
        len: usize,
        csum: Option<PartialChecksum>,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> bool {
        let meta = umem.tx_meta() as usize;
        let Some(base) = self.slot(umem, meta + len) else { return false };
        // SAFETY: `base` was just popped from our free list, so the kernel is done with
        // that frame and nothing else borrows it; it is pushed to the TX ring (handing
        // it to the kernel) only after this borrow ends.
        let frame = unsafe { umem.frame_mut(base) };
        let (md, data) = frame.split_at_mut(meta);
        let options = match csum {
            Some(c) => {
                md.fill(0);
                md[..8].copy_from_slice(&u64::from(libc::XDP_TXMD_FLAGS_CHECKSUM).to_ne_bytes());
                md[8..10].copy_from_slice(&c.start.to_ne_bytes());
                md[10..12].copy_from_slice(&c.offset.to_ne_bytes());
                self.csum_offloaded += 1;
                libc::XDP_TX_METADATA
            }
            None => 0,
        };
        fill(&mut data[..len]);
        self.push(umem, base + meta as u64, len, options);
        true
    }

    fn flush(&mut self, umem: &Umem) {
        if self.unsubmitted > 0 {
            self.tx.submit();
            self.unsubmitted = 0;
        }
        // In copy mode one wakeup sends at most 32 frames (the kernel's TX batch) and
        // leaves the rest in the ring: kick again while each kick makes progress, so a
        // turn's frames all leave in that turn rather than wait for the next one (or,
        // if the loop goes to sleep, for the next received frame).
        if self.tx.needs_wakeup() {
            let mut left = self.tx.outstanding();
            while left > 0 {
                if let Err(e) = syscall::kick_tx(self.fd) {
                    tracing::warn!("AF_XDP TX wakeup failed: {e}");
                }
                self.wakeups += 1;
                let now_left = self.tx.outstanding();
                if now_left >= left {
                    break; // no progress (the device pushes back): the next turn tries again
                }
                left = now_left;
            }
        }
        self.reclaim(umem);
    }

    /// Frames in the TX ring the kernel has not taken yet.
    fn unsent(&self) -> u32 {
        self.tx.outstanding()
    }
}

/// Frames built straight into UMEM TX frames; into the backlog instead while the
/// backlog is not empty (order is kept) or no frame is free.
struct XdpSink<'a> {
    txs: &'a mut TxSide,
    umem: &'a Umem,
    backlog: &'a mut FrameBatch,
    direct: usize,
}

impl TxSink for XdpSink<'_> {
    fn push_frame(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) {
        if self.backlog.is_empty() && self.txs.build(self.umem, len, None, fill) {
            self.txs.in_place += 1;
            self.direct += 1;
            return;
        }
        self.backlog.push_frame(len, fill);
    }

    fn finishes_l4_checksum(&self) -> bool {
        self.txs.csum_offload
    }

    fn push_frame_partial(&mut self, len: usize, csum: PartialChecksum, fill: &mut dyn FnMut(&mut [u8])) {
        if self.txs.csum_offload && self.backlog.is_empty() && self.txs.build(self.umem, len, Some(csum), fill) {
            self.txs.in_place += 1;
            self.direct += 1;
            return;
        }
        // The backlog is sent later by `send`, without metadata: finish it here.
        self.backlog.push_frame_partial(len, csum, fill);
    }
}

fn layout(off: &libc::xdp_ring_offset, size: u32) -> RingLayout {
    RingLayout { producer: off.producer, consumer: off.consumer, flags: off.flags, desc: off.desc, size }
}

impl XskQueue {
    /// Creates the socket, registers a UMEM on `node`, maps the rings and binds to
    /// `queue` of interface `ifindex`.
    pub(super) fn open(
        ifindex: u32,
        queue: u32,
        cfg: &XdpConfig,
        node: Option<NumaNode>,
    ) -> Result<XskQueue, XdpError> {
        let fd = syscall::xsk_socket().map_err(XdpError::Socket)?;
        let bytes = (cfg.frames_per_queue as usize * cfg.frame_bytes as usize).next_multiple_of(HUGEPAGE_BYTES);
        let region = Region::map(bytes, node, cfg.hugepages).map_err(|e| XdpError::Umem(e.to_string()))?;
        let mut umem = Umem::new(region, cfg.frame_bytes);
        let step = |what: &'static str| move |e: io::Error| XdpError::Setup { what, queue, source: e };
        let tx_meta = umem.register(&fd, cfg.tx_checksum == TxChecksum::Auto).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOBUFS) {
                XdpError::MemlockLimit { queue, mib: bytes >> 20 }
            } else {
                step("XDP_UMEM_REG")(e)
            }
        })?;
        let n = cfg.ring_size;
        for (opt, what) in [
            (libc::XDP_UMEM_FILL_RING, "XDP_UMEM_FILL_RING"),
            (libc::XDP_UMEM_COMPLETION_RING, "XDP_UMEM_COMPLETION_RING"),
            (libc::XDP_RX_RING, "XDP_RX_RING"),
            (libc::XDP_TX_RING, "XDP_TX_RING"),
        ] {
            syscall::setsockopt(&fd, libc::SOL_XDP, opt, &n).map_err(step(what))?;
        }
        // xdp_mmap_offsets is plain integers: start from all zeroes.
        let mut off: libc::xdp_mmap_offsets = unsafe_zeroed();
        syscall::getsockopt(&fd, libc::SOL_XDP, libc::XDP_MMAP_OFFSETS, &mut off).map_err(step("XDP_MMAP_OFFSETS"))?;
        let desc = std::mem::size_of::<libc::xdp_desc>() as u64;
        let map = |o: &libc::xdp_ring_offset, entry: u64, pgoff: u64, what| {
            Mmap::ring(&fd, (o.desc + u64::from(n) * entry) as usize, pgoff).map_err(step(what))
        };
        let rx = Consumer::new(map(&off.rx, desc, libc::XDP_PGOFF_RX_RING as u64, "mmap RX ring")?, layout(&off.rx, n));
        let tx = Producer::new(map(&off.tx, desc, libc::XDP_PGOFF_TX_RING as u64, "mmap TX ring")?, layout(&off.tx, n));
        let fill =
            Producer::new(map(&off.fr, 8, libc::XDP_UMEM_PGOFF_FILL_RING, "mmap fill ring")?, layout(&off.fr, n));
        let comp = Consumer::new(
            map(&off.cr, 8, libc::XDP_UMEM_PGOFF_COMPLETION_RING, "mmap completion ring")?,
            layout(&off.cr, n),
        );
        let zerocopy = bind(&fd, ifindex, queue, cfg.bind_mode)?;
        let mut busy_poll = cfg.busy_poll;
        if busy_poll {
            // Preferred busy polling (Linux >= 5.11): this socket's syscalls run the
            // queue's NAPI in this thread, and the device's interrupts stay deferred
            // while it does (napi_defer_hard_irqs / gro_flush_timeout, set per device).
            // A kernel or a process that refuses it (before 5.11, or without
            // CAP_NET_ADMIN) serves on without: the loop's own polling still works.
            let on: libc::c_int = 1;
            let usecs = cfg.busy_poll_us as libc::c_int;
            let budget = cfg.busy_poll_budget as libc::c_int;
            for (opt, value, what) in [
                (SO_PREFER_BUSY_POLL, &on, "SO_PREFER_BUSY_POLL"),
                (libc::SO_BUSY_POLL, &usecs, "SO_BUSY_POLL"),
                (SO_BUSY_POLL_BUDGET, &budget, "SO_BUSY_POLL_BUDGET"),
            ] {
                if let Err(e) = syscall::setsockopt(&fd, libc::SOL_SOCKET, opt, value) {
                    tracing::warn!("queue {queue}: {what} refused ({e}): serving without busy polling");
                    busy_poll = false;
                    break;
                }
            }
            // Accepted; off until the loop sees frames come closely enough.
            if busy_poll {
                let _ = syscall::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL, &0);
            }
        }
        let txs = TxSide {
            fd: fd.as_raw_fd(),
            comp,
            tx,
            free_frames: Vec::new(),
            unsubmitted: 0,
            batch: cfg.tx_batch as u32,
            packets: 0,
            bytes: 0,
            ring_full: 0,
            wakeups: 0,
            in_place: 0,
            csum_offload: tx_meta && !zerocopy,
            csum_offloaded: 0,
        };
        let mut q = XskQueue {
            fd,
            umem,
            fill,
            rx,
            rx_done: Vec::new(),
            txs,
            counters: IoCounters::default(),
            zerocopy,
            doorbell: None,
            busy_poll,
            busy_poll_now: false,
            busy_poll_us: cfg.busy_poll_us as libc::c_int,
            deferral: None,
        };
        let frames = q.umem.frames();
        let to_fill = n.min(frames / 2);
        q.rx_done.extend((0..to_fill).map(|i| q.umem.frame_addr(i)));
        q.txs.free_frames.extend((to_fill..frames).rev().map(|i| q.umem.frame_addr(i)));
        q.refill();
        Ok(q)
    }

    /// The socket, for the XSKMAP.
    pub(super) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Also wake from idle sleep when `bell` rings.
    pub fn set_doorbell(&mut self, bell: Arc<Doorbell>) {
        self.doorbell = Some(bell);
    }

    /// Whether the bind got zero-copy mode.
    pub fn zerocopy(&self) -> bool {
        self.zerocopy
    }

    /// Whether the kernel finishes the TCP checksums of the frames we send.
    pub fn tx_csum_offload(&self) -> bool {
        self.txs.csum_offload
    }

    fn refill(&mut self) {
        if self.rx_done.is_empty() {
            return;
        }
        let want = self.rx_done.len() as u32;
        let free = self.fill.free(want).min(want);
        for _ in 0..free {
            let addr = self.rx_done.pop().expect("counted");
            self.fill.push(addr);
        }
        if free < want {
            self.counters.fill_ring_short += 1;
        }
        self.fill.submit();
        if self.fill.needs_wakeup() {
            syscall::kick_rx(self.fd.as_raw_fd());
            self.counters.wakeups += 1;
        }
    }

    fn kernel_stats(&self) -> Option<libc::xdp_statistics> {
        let mut st: libc::xdp_statistics = unsafe_zeroed();
        syscall::getsockopt(&self.fd, libc::SOL_XDP, libc::XDP_STATISTICS, &mut st).ok()?;
        Some(st)
    }
}

/// Binds; with `auto`, tries zero-copy first and falls back to copy mode.
fn bind(fd: &OwnedFd, ifindex: u32, queue: u32, mode: BindMode) -> Result<bool, XdpError> {
    let attempt = |flags: u16| {
        let addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags | libc::XDP_USE_NEED_WAKEUP,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        syscall::bind_xsk(fd, &addr)
    };
    let bind_err = |source| XdpError::Setup { what: "bind", queue, source };
    let once = || match mode {
        BindMode::Zerocopy => attempt(libc::XDP_ZEROCOPY).map(|_| true),
        BindMode::Copy => attempt(libc::XDP_COPY).map(|_| false),
        BindMode::Auto => match attempt(libc::XDP_ZEROCOPY) {
            Ok(()) => Ok(true),
            Err(_) => attempt(libc::XDP_COPY).map(|_| false),
        },
    };
    // A queue whose previous owner just died stays bound until the kernel's deferred
    // release of that socket's buffer pool has run (a workqueue, some ms later): a
    // restart right after a crash would fail with EBUSY. Retry for a while before
    // calling the queue taken.
    let deadline = std::time::Instant::now() + BUSY_RETRY_FOR;
    loop {
        match once() {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => return r.map_err(bind_err),
        }
    }
}

/// How long a bind that finds the queue busy is retried.
const BUSY_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(2);

fn unsafe_zeroed<T: Copy>() -> T {
    // SAFETY: only called for the kernel's plain-integer structs (xdp_mmap_offsets,
    // xdp_statistics), for which all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

impl Drop for XskQueue {
    fn drop(&mut self) {
        // Let go of the interface's deferral (the last queue off puts it back).
        if self.busy_poll_now {
            if let Some(d) = &self.deferral {
                d.engage(false);
            }
        }
    }
}

impl XskQueue {
    /// Holds `d` (the interface's deferral) on while this queue busy polls.
    pub(crate) fn set_deferral(&mut self, d: Arc<super::Deferral>) {
        self.deferral = Some(d);
    }

    fn recv_each(&mut self, max: usize, f: &mut dyn FnMut(&[u8], &mut TxSide, &Umem)) -> usize {
        let mut n = self.rx.available(max as u32);
        if n == 0 && self.busy_poll_now {
            // Run the device's receive processing here, now, instead of waiting for its
            // softirq: whatever it delivers to our ring is taken in this same turn.
            syscall::kick_rx(self.fd.as_raw_fd());
            self.counters.busy_polls += 1;
            n = self.rx.available(max as u32);
        }
        for i in 0..n {
            let d = self.rx.get(i);
            let bytes = self.umem.bytes(d.addr, d.len);
            self.counters.rx_packets += 1;
            self.counters.rx_bytes += u64::from(d.len);
            f(bytes, &mut self.txs, &self.umem);
            self.rx_done.push(self.umem.frame_base(d.addr));
        }
        if n > 0 {
            self.rx.release(n);
            self.refill();
        }
        n as usize
    }
}

impl PacketIo for XskQueue {
    fn recv(&mut self, _now: Instant, max: usize, f: &mut dyn FnMut(&[u8])) -> usize {
        self.recv_each(max, &mut |frame, _, _| f(frame))
    }

    fn recv_tx(
        &mut self,
        _now: Instant,
        max: usize,
        backlog: &mut FrameBatch,
        f: &mut dyn FnMut(&[u8], &mut dyn TxSink),
    ) -> usize {
        self.recv_each(max, &mut |frame, txs, umem| {
            f(frame, &mut XdpSink { txs, umem, backlog: &mut *backlog, direct: 0 });
        })
    }

    fn peek(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) {
        for i in 0..self.rx.available(max as u32) {
            let d = self.rx.get(i);
            f(self.umem.bytes(d.addr, d.len));
        }
    }

    fn tx(&mut self, _now: Instant, backlog: &mut FrameBatch, f: &mut dyn FnMut(&mut dyn TxSink)) -> usize {
        let mut sink = XdpSink { txs: &mut self.txs, umem: &self.umem, backlog, direct: 0 };
        f(&mut sink);
        sink.direct
    }

    fn send(&mut self, _now: Instant, frame: &[u8]) -> Result<(), TxFull> {
        if self.txs.build(&self.umem, frame.len(), None, &mut |buf| buf.copy_from_slice(frame)) {
            Ok(())
        } else {
            Err(TxFull)
        }
    }

    fn flush(&mut self, _now: Instant) {
        self.txs.flush(&self.umem);
    }

    fn tx_stalled(&self) -> bool {
        self.txs.unsent() > 0
    }

    fn frames(&self) -> Option<crate::nic::FrameUse> {
        Some(crate::nic::FrameUse {
            total: self.umem.frames() as u64,
            tx_free: self.txs.free_frames.len() as u64,
            rx_refill: self.rx_done.len() as u64,
        })
    }

    fn set_busy_poll(&mut self, on: bool) {
        let on = self.busy_poll && on;
        if on == self.busy_poll_now {
            return;
        }
        self.busy_poll_now = on;
        self.counters.busy_poll_switches += 1;
        let usecs = if on { self.busy_poll_us } else { 0 };
        if let Err(e) = syscall::setsockopt(&self.fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL, &usecs) {
            tracing::warn!("SO_BUSY_POLL {usecs}: {e}");
        }
        if let Some(d) = &self.deferral {
            d.engage(on);
        }
    }

    fn wait(&mut self, _now: Instant, timeout: Duration) {
        if self.fill.needs_wakeup() {
            syscall::kick_rx(self.fd.as_raw_fd());
        }
        // Rounded up: poll(2) counts whole milliseconds, and a timer due in 0.4 ms
        // rounded down to 0 would make this a busy loop until it is due.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let bell = self.doorbell.as_ref().map(|b| b.raw());
        match syscall::poll_in(self.fd.as_raw_fd(), bell, ms) {
            Ok(true) => syscall::eventfd_drain(bell.expect("polled")),
            Ok(false) => {}
            Err(e) => tracing::warn!("poll on the XSK socket failed: {e}"),
        }
    }

    fn counters(&self) -> IoCounters {
        let mut c = self.counters;
        c.tx_packets = self.txs.packets;
        c.tx_bytes = self.txs.bytes;
        c.tx_ring_full = self.txs.ring_full;
        c.tx_in_place = self.txs.in_place;
        c.tx_csum_offloaded = self.txs.csum_offloaded;
        c.wakeups += self.txs.wakeups;
        if let Some(st) = self.kernel_stats() {
            c.kernel_rx_dropped = st.rx_dropped + st.rx_ring_full;
        }
        c
    }
}
