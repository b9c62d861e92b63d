//! Transports: what carries a core's connections. Both give the core loop the same
//! shape — connection events in, bytes out — and both accept and connect:
//!
//! - [`kernel`]: kernel TCP sockets (an SO_REUSEPORT listener and the outbound sockets
//!   in the core's own epoll); the kernel is the TCP stack.
//! - [`stack`]: a [`PacketIo`](crate::nic::PacketIo) queue (AF_XDP, or anything behind
//!   the trait) with our network layer and TCP engine; outbound connections are the
//!   engine's active opens.
//!
//! A transport owns its connections' sessions (HTTP sessions for accepted connections,
//! [`ClientConn`](crate::app::ClientConn)s for outbound ones) and reports every event
//! on them to the core's [`Dispatch`]: bytes in, bytes sent, peer closed, closed.

pub mod kernel;
pub mod stack;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::dispatch::Delivery;
use crate::app::Dispatch;
use crate::mem::MemError;

/// Why the runtime did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Binding or configuring a listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// Another process already listens on the address (we do not share it).
    #[error(
        "cannot listen on {addr}: another process already serves it (px-appliance does not share a port \
         through SO_REUSEPORT; stop the other server or choose another server.listen)"
    )]
    AddressServed {
        /// Address.
        addr: SocketAddr,
    },
    /// A core's arena memory could not be mapped.
    #[error("queue {queue}: arena memory: {source}")]
    Memory {
        /// Queue.
        queue: usize,
        /// Cause.
        source: MemError,
    },
    /// Creating the poller or a thread failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
    /// The AF_XDP interface could not be opened.
    #[error(transparent)]
    Xdp(#[from] crate::nic::af_xdp::XdpError),
    /// The DPDK backend could not start (or this build has none).
    #[error(transparent)]
    Dpdk(#[from] crate::nic::dpdk::DpdkError),
    /// A setting the backend cannot use (the key and the reason).
    #[error("{key}: {reason}")]
    Config {
        /// The key.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// A core thread died while starting.
    #[error("queue {0}: the core thread died while starting")]
    ThreadDied(usize),
}

/// How a transport is reached from other threads: rung to wake its loop.
pub type Doorbell = Arc<dyn Fn() + Send + Sync>;

/// Builds one queue's transport on its core thread.
pub(crate) type Build<T> = Box<dyn FnOnce() -> Result<T, StartError> + Send>;

/// One queue's plan: where it runs, how it is woken, how its transport is built.
pub(crate) struct QueuePlan<T> {
    pub queue: usize,
    pub cpu: usize,
    pub bell: Doorbell,
    pub build: Build<T>,
}

/// What a transport did, for its core's report.
#[derive(Debug, Clone, Default)]
pub struct TransportReport {
    /// Connections accepted (kernel transport).
    pub accepted: u64,
    /// Connections refused over `kernel.max_connections` and over
    /// `kernel.max_connections_per_source` (kernel transport).
    pub refused_over_cap: (u64, u64),
    /// The packet path's counters (stack transport).
    pub stack: Option<stack::StackReport>,
    /// Kernel transport: connections by what this core does with them: (HTTP open,
    /// outbound clients, lingering after our close).
    pub kernel_conns: Option<(u64, u64, u64)>,
}

/// One core's carrier of connections, driven by [`crate::runtime::run_core`].
pub trait Transport {
    /// Waits at most `timeout` for I/O (zero: do not wait). A transport that busy-polls
    /// while loaded decides here whether to sleep at all.
    fn wait(&mut self, now: Instant, timeout: Duration);
    /// True when work was left over by a bound (a connection cut off mid-burst, frames
    /// a full ring held back): the loop then does not wait.
    fn has_backlog(&self) -> bool;
    /// One bounded batch of I/O: at most one RX batch (or one epoll batch) of events,
    /// each reported to `d`, and their output sent. Returns the units of work done.
    fn turn(&mut self, now: Instant, d: &mut Dispatch) -> usize;
    /// Hands what the executor and the job threads produced to the sessions waiting
    /// for it, and sends what that queued.
    fn deliver(&mut self, now: Instant, d: &mut Dispatch, items: Vec<(u64, Delivery)>);
    /// Opens the outbound connections asked for this turn and moves bytes of those
    /// the handlers wrote to (or closed). Returns the units of work done.
    fn outbound(&mut self, now: Instant, d: &mut Dispatch) -> usize;
    /// Graceful shutdown: stop accepting, let each connection finish what it answers.
    fn begin_drain(&mut self, now: Instant, d: &mut Dispatch);
    /// Connections shutdown still waits for.
    fn active(&self) -> usize;
    /// Connections held, cheaply (published every turn): TIME-WAIT included on the
    /// packet path.
    fn connections(&self) -> usize {
        self.active()
    }
    /// The longest the loop may sleep while this transport has connections (its timers
    /// are not on the executor's heap).
    fn max_sleep(&self) -> Duration;
    /// What it did, for the core's report.
    fn report(&self) -> TransportReport;
}
