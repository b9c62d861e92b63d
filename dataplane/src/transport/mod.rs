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

use std::time::{Duration, Instant};

use crate::app::dispatch::Delivery;
use crate::app::Dispatch;
use crate::runtime::CoreReport;

/// One core's carrier of connections, driven by [`crate::runtime::run_core`].
pub trait Transport {
    /// Waits at most `timeout` for I/O (zero: do not wait). A transport that busy-polls
    /// while loaded decides here whether to sleep at all.
    fn wait(&mut self, timeout: Duration, now: Instant);
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
    /// The longest the loop may sleep while this transport has connections (its timers
    /// are not on the executor's heap).
    fn max_sleep(&self) -> Duration;
    /// What it did, for the core's report.
    fn report(&self, report: &mut CoreReport);
}
