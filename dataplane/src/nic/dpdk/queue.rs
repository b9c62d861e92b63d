//! One RX/TX queue pair of a DPDK port, driven by one core loop.
//!
//! Received frames are handed up while they sit in their mbufs and freed in bulk after
//! the burst. Frames to send are built straight into newly allocated mbufs (the
//! counterpart of AF_XDP's frames built in UMEM), gathered, and handed to the driver a
//! burst at a time; what the driver does not take stays queued, in order, for the next
//! flush. Every mbuf taken from the pool is either given to the driver or freed here,
//! and the port checks the pool is whole when it closes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nic_dpdk_sys as sys;

use super::eal::Port;
use super::DpdkConfig;
use crate::nic::af_xdp::Doorbell;
use crate::nic::{FrameBatch, IoCounters, PacketIo, TxFull, TxSink};

/// Frames a queue holds waiting for the driver before it builds no more (they go to
/// the transport's backlog instead): four bursts.
const PENDING_BURSTS: usize = 4;

/// The transmit half: mbufs built and waiting for a TX burst.
struct TxSide {
    port: u16,
    queue: u16,
    pool: *mut sys::rte_mempool,
    pending: Vec<*mut sys::rte_mbuf>,
    burst: usize,
    packets: u64,
    bytes: u64,
    in_place: u64,
    full: u64,
}

impl TxSide {
    /// Builds a frame of `len` bytes in a new mbuf with `fill`; false (nothing
    /// allocated) when the queue already holds its share or the pool is empty.
    fn build(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        if self.pending.len() >= self.burst * PENDING_BURSTS {
            self.flush();
            if self.pending.len() >= self.burst * PENDING_BURSTS {
                self.full += 1;
                return false;
            }
        }
        let Ok(len16) = u16::try_from(len) else { return false };
        // SAFETY: the pool is live while the port is (the port outlives the queues).
        let m = unsafe { sys::rte_pktmbuf_alloc(self.pool) };
        if m.is_null() {
            self.full += 1;
            return false;
        }
        // SAFETY: m is a fresh single-segment mbuf; append returns a pointer to `len`
        // writable bytes of its data room, or null when they do not fit.
        let data = unsafe { sys::rte_pktmbuf_append(m, len16) };
        if data.is_null() {
            // SAFETY: m is ours and not queued anywhere.
            unsafe { sys::rte_pktmbuf_free(m) };
            self.full += 1;
            return false;
        }
        // SAFETY: data points to len bytes inside m's data room, which nothing else
        // reads or writes until the mbuf is handed to the driver.
        let buf = unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), len) };
        fill(buf);
        self.pending.push(m);
        self.packets += 1;
        self.bytes += len as u64;
        if self.pending.len() >= self.burst {
            self.flush();
        }
        true
    }

    /// Hands the pending mbufs to the driver, a burst at a time, while it takes them.
    fn flush(&mut self) {
        let mut sent = 0;
        while sent < self.pending.len() {
            let n = (self.pending.len() - sent).min(self.burst) as u16;
            // SAFETY: pending[sent..sent+n] are valid mbufs we own; the driver takes
            // ownership of the first `taken` of them.
            let taken = unsafe { sys::rte_eth_tx_burst(self.port, self.queue, self.pending.as_mut_ptr().add(sent), n) }
                as usize;
            sent += taken;
            if taken < usize::from(n) {
                break; // the TX ring is full: the rest waits, in order
            }
        }
        self.pending.drain(..sent);
    }
}

/// Frames built straight into mbufs; into the backlog while it is not empty (order is
/// kept) or no mbuf can be had.
struct DpdkSink<'a> {
    tx: &'a mut TxSide,
    backlog: &'a mut FrameBatch,
    direct: usize,
}

impl TxSink for DpdkSink<'_> {
    fn push_frame(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) {
        if self.backlog.is_empty() && self.tx.build(len, fill) {
            self.tx.in_place += 1;
            self.direct += 1;
            return;
        }
        self.backlog.push_frame(len, fill);
    }
}

/// One queue pair of a started port.
pub struct DpdkQueue {
    port: Arc<Port>,
    queue: u16,
    rx: Vec<*mut sys::rte_mbuf>,
    tx: TxSide,
    counters: IoCounters,
    doorbell: Option<Arc<Doorbell>>,
    registered: bool,
}

// SAFETY: a queue is moved to its core thread before first use and used only there
// (DPDK queues are single-threaded; the pool is thread-safe); the raw pointers are mbufs
// it owns and the port's pool.
unsafe impl Send for DpdkQueue {}

impl DpdkQueue {
    /// Queue `queue` of `port`.
    pub fn new(port: Arc<Port>, queue: u16, cfg: &DpdkConfig) -> DpdkQueue {
        let pool = port.mempool();
        DpdkQueue {
            queue,
            rx: vec![std::ptr::null_mut(); cfg.rx_burst],
            tx: TxSide {
                port: port.id,
                queue,
                pool,
                pending: Vec::with_capacity(cfg.tx_burst * PENDING_BURSTS),
                burst: cfg.tx_burst,
                packets: 0,
                bytes: 0,
                in_place: 0,
                full: 0,
            },
            port,
            counters: IoCounters::default(),
            doorbell: None,
            registered: false,
        }
    }

    /// Rung to wake the loop from a nap.
    pub fn set_doorbell(&mut self, bell: Arc<Doorbell>) {
        self.doorbell = Some(bell);
    }

    /// Registers the calling thread with EAL (an lcore id, so the pool's per-core cache
    /// serves it); called on the core thread before the first burst.
    pub fn register_thread(&mut self) {
        // SAFETY: registers the calling (non-EAL) thread; EAL is initialised.
        let rc = unsafe { sys::rte_thread_register() };
        if rc == 0 {
            self.registered = true;
        } else {
            tracing::warn!(
                "dpdk: queue {}: registering the core thread with EAL failed ({}): the mbuf pool serves it \
                 without a per-core cache",
                self.queue,
                super::eal::last_error()
            );
        }
    }
}

impl Drop for DpdkQueue {
    fn drop(&mut self) {
        for m in self.tx.pending.drain(..) {
            // SAFETY: pending mbufs are ours: never taken by the driver.
            unsafe { sys::rte_pktmbuf_free(m) };
        }
        if self.registered {
            // SAFETY: this thread registered itself in register_thread (queues are
            // dropped on their core thread).
            unsafe { sys::rte_thread_unregister() };
        }
    }
}

impl PacketIo for DpdkQueue {
    fn recv(&mut self, now: Instant, max: usize, f: &mut dyn FnMut(&[u8])) -> usize {
        let mut backlog = FrameBatch::default();
        let n = self.recv_tx(now, max, &mut backlog, &mut |frame, _| f(frame));
        debug_assert!(backlog.is_empty());
        n
    }

    fn recv_tx(
        &mut self,
        _now: Instant,
        max: usize,
        backlog: &mut FrameBatch,
        f: &mut dyn FnMut(&[u8], &mut dyn TxSink),
    ) -> usize {
        let want = max.min(self.rx.len()) as u16;
        // SAFETY: rx has room for `want` mbuf pointers; the driver writes n ≤ want of
        // them and hands us those mbufs.
        let n = usize::from(unsafe { sys::rte_eth_rx_burst(self.port.id, self.queue, self.rx.as_mut_ptr(), want) });
        for &m in &self.rx[..n] {
            // SAFETY: m is a received mbuf we own until it is freed below.
            let (segs, off, len, base) = unsafe { ((*m).nb_segs, (*m).data_off, (*m).data_len, (*m).buf_addr) };
            if segs != 1 {
                self.counters.rx_segmented += 1;
                continue;
            }
            // SAFETY: a single-segment mbuf's frame is data_len bytes at buf_addr +
            // data_off, inside its buffer, untouched by anyone until we free it.
            let frame =
                unsafe { std::slice::from_raw_parts(base.cast::<u8>().add(usize::from(off)), usize::from(len)) };
            self.counters.rx_packets += 1;
            self.counters.rx_bytes += u64::from(len);
            let mut sink = DpdkSink { tx: &mut self.tx, backlog: &mut *backlog, direct: 0 };
            f(frame, &mut sink);
        }
        if n > 0 {
            // SAFETY: rx[..n] are the mbufs received above, each freed once, here
            // (whole chains for segmented ones).
            unsafe { sys::rte_pktmbuf_free_bulk(self.rx.as_mut_ptr(), n as u32) };
        }
        n
    }

    fn tx(&mut self, _now: Instant, backlog: &mut FrameBatch, f: &mut dyn FnMut(&mut dyn TxSink)) -> usize {
        let mut sink = DpdkSink { tx: &mut self.tx, backlog, direct: 0 };
        f(&mut sink);
        sink.direct
    }

    fn send(&mut self, _now: Instant, frame: &[u8]) -> Result<(), TxFull> {
        if self.tx.build(frame.len(), &mut |buf| buf.copy_from_slice(frame)) {
            Ok(())
        } else {
            Err(TxFull)
        }
    }

    fn flush(&mut self, _now: Instant) {
        self.tx.flush();
    }

    fn tx_stalled(&self) -> bool {
        !self.tx.pending.is_empty()
    }

    fn wait(&mut self, _now: Instant, timeout: Duration) {
        // A poll-mode driver raises no event: nap, woken early by the doorbell.
        match &self.doorbell {
            Some(bell) => bell.sleep(timeout),
            None => std::thread::sleep(timeout),
        }
    }

    fn counters(&self) -> IoCounters {
        let mut c = self.counters;
        c.tx_packets = self.tx.packets;
        c.tx_bytes = self.tx.bytes;
        c.tx_in_place = self.tx.in_place;
        c.tx_ring_full = self.tx.full;
        if self.queue == 0 {
            // The port's drops are per port: counted once, on queue 0.
            c.kernel_rx_dropped = self.port.missed();
        }
        c
    }
}
