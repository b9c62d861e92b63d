//! Packet and socket I/O backends, one folder each, behind one narrow trait.
//!
//! - [`PacketIo`]: batch receive / transmit of Ethernet frames. Implemented by
//!   `af_xdp` (AF_XDP rings on a NIC queue), `dpdk` (a DPDK port's queue pair, cargo
//!   feature `dpdk`) and [`loopback`] (in memory, for tests), and
//!   wrapped by [`pcap`] (capture to a file tcpdump reads) and [`fault`] (seeded drop,
//!   duplicate, reorder, corrupt), which stack: `Fault<Pcap<XskQueue>>`.
//!
//! Kernel TCP sockets are not a packet backend: the kernel is their TCP stack, and they
//! are a transport of their own (`transport::kernel`).

pub mod af_xdp;
mod batch;
pub mod dpdk;
pub mod fault;
pub mod loopback;
pub mod pcap;

pub use batch::{FrameBatch, PartialChecksum, TxSink};

use std::time::{Duration, Instant};

/// The TX ring (or queue) is full; the frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("transmit ring full")]
pub struct TxFull;

crate::counters! {
    /// Counters a backend keeps about its rings.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct IoCounters {
        /// Frames received.
        pub rx_packets: u64,
        /// Bytes received.
        pub rx_bytes: u64,
        /// Frames handed to the TX ring.
        pub tx_packets: u64,
        /// Bytes handed to the TX ring.
        pub tx_bytes: u64,
        /// Frames built in place in a TX buffer (no copy of the frame; see `PacketIo::recv_tx`).
        pub tx_in_place: u64,
        /// Frames whose TCP checksum the transmit path finished (AF_XDP TX metadata).
        pub tx_csum_offloaded: u64,
        /// Frames not sent because the TX ring or the free-frame pool was full/empty.
        pub tx_ring_full: u64,
        /// Times the fill ring could not be refilled completely.
        pub fill_ring_short: u64,
        /// Syscalls made to wake the kernel (need_wakeup).
        pub wakeups: u64,
        /// Busy polls of the device's NAPI from the loop (af_xdp.busy_poll), each on an
        /// empty RX ring.
        pub busy_polls: u64,
        /// Times busy polling was switched on or off (af_xdp.busy_poll_gap_us): the
        /// socket's SO_BUSY_POLL, and the interface's deferral for the first queue on
        /// and the last one off.
        pub busy_poll_switches: u64,
        /// Frames the kernel dropped for us (no fill-ring space, XDP_STATISTICS).
        pub kernel_rx_dropped: u64,
        /// Frames dropped because they arrived split over several buffers (DPDK: an MTU
        /// above one mbuf's data room).
        pub rx_segmented: u64,
        /// Frames dropped by a fault injector.
        pub injected_drops: u64,
    }
}

/// Batch frame I/O on one queue. Every call takes the loop's `now`: no backend or
/// wrapper reads a clock, so a fault injector's delays and a capture's timestamps are
/// reproducible from the seed and the times passed in.
pub trait PacketIo {
    /// Hands up to `max` received frames to `f`, in arrival order; returns how many.
    fn recv(&mut self, now: Instant, max: usize, f: &mut dyn FnMut(&[u8])) -> usize;
    /// As [`recv`](Self::recv), handing `f` with each frame a sink for the frames it
    /// answers with. A backend whose TX buffers can be written while a received frame
    /// is borrowed (AF_XDP: disjoint UMEM frames) builds them there in place; the
    /// default builds them in `backlog`, which the caller then [`send`](Self::send)s.
    fn recv_tx(
        &mut self,
        now: Instant,
        max: usize,
        backlog: &mut FrameBatch,
        f: &mut dyn FnMut(&[u8], &mut dyn TxSink),
    ) -> usize {
        self.recv(now, max, &mut |frame| f(frame, &mut *backlog))
    }
    /// Shows `f` the frames the next [`recv`](Self::recv) or [`recv_tx`](Self::recv_tx)
    /// will hand over (at most `max`) without taking them, so the caller can start the
    /// memory reads a whole batch will need before it handles the first frame (the TCP
    /// engine prefetches each segment's connection). Backends with no ring to look
    /// into show nothing.
    fn peek(&mut self, _max: usize, _f: &mut dyn FnMut(&[u8])) {}
    /// Gives `f` a sink for frames to send outside a receive (timers, late answers), as
    /// [`recv_tx`](Self::recv_tx) does; returns how many went straight to TX buffers.
    fn tx(&mut self, _now: Instant, backlog: &mut FrameBatch, f: &mut dyn FnMut(&mut dyn TxSink)) -> usize {
        f(backlog);
        0
    }
    /// Queues one frame for transmission (copied into a TX buffer).
    fn send(&mut self, now: Instant, frame: &[u8]) -> Result<(), TxFull>;
    /// Makes queued frames go out (kicks the kernel when it asks to be woken).
    fn flush(&mut self, now: Instant);
    /// Sleeps until a frame may have arrived, at most `timeout` (the idle path).
    fn wait(&mut self, now: Instant, timeout: Duration);
    /// The backend's counters.
    fn counters(&self) -> IoCounters;
    /// Frames handed to the kernel that it has not taken, after a flush that kicked it
    /// until it stopped making progress: the device pushes back.
    fn tx_stalled(&self) -> bool {
        false
    }
    /// Whether a turn that finds the RX ring empty should run the device's receive
    /// processing itself (the kernel's busy polling), for backends that can: the loop
    /// says so each turn from how closely frames arrive.
    fn set_busy_poll(&mut self, _on: bool) {}
    /// Where the backend's frame buffers are now, if it has a fixed set (AF_XDP's UMEM).
    fn frames(&self) -> Option<FrameUse> {
        None
    }
}

/// Where a backend's frame buffers (an AF_XDP UMEM) are at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameUse {
    /// Frames in all.
    pub total: u64,
    /// Free for transmitting.
    pub tx_free: u64,
    /// Received and consumed, waiting to go back to the fill ring.
    pub rx_refill: u64,
}

impl FrameUse {
    /// Frames the kernel holds: in the fill and RX rings (receive buffers), in the TX
    /// and completion rings (frames being sent).
    pub fn with_kernel(&self) -> u64 {
        self.total.saturating_sub(self.tx_free + self.rx_refill)
    }
}

impl<P: PacketIo + ?Sized> PacketIo for Box<P> {
    fn recv(&mut self, now: Instant, max: usize, f: &mut dyn FnMut(&[u8])) -> usize {
        (**self).recv(now, max, f)
    }
    fn recv_tx(
        &mut self,
        now: Instant,
        max: usize,
        backlog: &mut FrameBatch,
        f: &mut dyn FnMut(&[u8], &mut dyn TxSink),
    ) -> usize {
        (**self).recv_tx(now, max, backlog, f)
    }
    fn peek(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) {
        (**self).peek(max, f)
    }
    fn tx(&mut self, now: Instant, backlog: &mut FrameBatch, f: &mut dyn FnMut(&mut dyn TxSink)) -> usize {
        (**self).tx(now, backlog, f)
    }
    fn send(&mut self, now: Instant, frame: &[u8]) -> Result<(), TxFull> {
        (**self).send(now, frame)
    }
    fn flush(&mut self, now: Instant) {
        (**self).flush(now)
    }
    fn wait(&mut self, now: Instant, timeout: Duration) {
        (**self).wait(now, timeout)
    }
    fn counters(&self) -> IoCounters {
        (**self).counters()
    }
    fn tx_stalled(&self) -> bool {
        (**self).tx_stalled()
    }
    fn set_busy_poll(&mut self, on: bool) {
        (**self).set_busy_poll(on)
    }
    fn frames(&self) -> Option<FrameUse> {
        (**self).frames()
    }
}
