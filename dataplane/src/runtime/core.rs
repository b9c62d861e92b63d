//! The one per-core loop, generic over a [`Transport`].
//!
//! A turn: wait for I/O (not at all while there is work; else until the next timer, at
//! most the transport's tick) → one bounded batch of I/O events through the transport
//! to the dispatcher → the executor's woken tasks and due timers, and the answers of
//! job threads, delivered to their sessions → outbound connections opened and fed. Then
//! again. A stop request begins a drain: no new connections, in-flight requests finish,
//! and the loop ends once every queue is done or the drain time has passed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::gauge::{LoopGauge, LoopTally, Published};
use crate::app::Dispatch;
use crate::transport::Transport;

/// Runs `t` with `d` until shutdown completes; returns the connections still open when
/// the drain deadline passed. `draining` counts the queues still draining: a queue that
/// is done keeps serving (refusing new connections) until it reaches zero. Each turn's
/// work time goes to `gauge`.
pub fn run_core<T: Transport>(
    t: &mut T,
    d: &mut Dispatch,
    stop: &AtomicBool,
    drain: Duration,
    draining: &AtomicUsize,
    gauge: &LoopGauge,
) -> usize {
    let mut tally = LoopTally::default();
    let mut deadline: Option<Instant> = None;
    let mut done = false;
    let mut now = Instant::now();
    loop {
        let timeout = if t.has_backlog() || d.has_ready() {
            Duration::ZERO
        } else {
            let tick = t.max_sleep();
            d.next_timer().map_or(tick, |at| at.saturating_duration_since(now).min(tick))
        };
        // Reads in flight on the core's io_uring wake the loop while it sleeps; the
        // sleep is capped while they are, in case a wake-up is lost.
        let files = d.exec().core();
        let reading = files.file_reads_in_flight() > 0;
        let timeout = if reading { timeout.min(crate::mem::FILE_READ_MAX_SLEEP) } else { timeout };
        let timeout = if !timeout.is_zero() && files.file_wakeups(true) { Duration::ZERO } else { timeout };
        let slept_from = reading.then(Instant::now);
        t.wait(now, timeout);
        files.file_wakeups(false);
        now = Instant::now();
        if slept_from.is_some_and(|at| !timeout.is_zero() && now.duration_since(at) >= timeout) {
            files.file_sleep_timed_out();
        }
        d.tick(SystemTime::now(), now);
        if deadline.is_none() && stop.load(Ordering::Acquire) {
            deadline = Some(now + drain);
            t.begin_drain(now, d);
        }
        let work = turn(t, d, now);
        tally.turn(work > 0, if work > 0 { now.elapsed() } else { Duration::ZERO });
        let r = &d.stats.responses_by_class;
        if let Some(gen) = gauge.wanted() {
            let mut r = super::CoreReport { cpu: gauge.cpu(), ..Default::default() };
            super::fill_report(&mut r, t, d);
            gauge.answer(gen, r);
        }
        tally.publish(
            gauge,
            Published {
                requests: d.stats.requests,
                responses: r[2] + r[3] + r[4] + r[5],
                connections: t.connections() as u64,
                arena_chunks_free: d.pool().stats().chunks_free as u64,
            },
        );
        if let Some(end) = deadline {
            if d.exec().in_flight() == 0 && d.exec().background() > 0 {
                // The last request is answered: apps' client connections may close now.
                d.exec_mut().stop_background();
            }
            if !done && t.active() == 0 {
                done = true;
                draining.fetch_sub(1, Ordering::AcqRel);
            }
            if draining.load(Ordering::Acquire) == 0 {
                turn(t, d, Instant::now()); // the last ACKs and FINs
                return 0;
            }
            if now >= end {
                let cut = t.active();
                if cut > 0 {
                    tracing::warn!("shutdown deadline passed with {cut} connections still open; closing them");
                }
                return cut;
            }
        }
    }
}

/// One turn of the loop (everything between two waits): the transport's batch, the
/// executor's ready tasks and answers delivered, outbound connections fed. Returns the
/// work done (0: the turn found nothing). Public for `apps/examples/profile.rs`, which
/// turns a transport exactly as the loop does.
pub fn turn<T: Transport>(t: &mut T, d: &mut Dispatch, now: Instant) -> usize {
    let mut work = t.turn(now, d);
    let items = d.run(now);
    work += items.len();
    if !items.is_empty() {
        t.deliver(now, d, items);
    }
    work + t.outbound(now, d)
}
