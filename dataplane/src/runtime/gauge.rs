//! What each core publishes about its loop for the admin listener to read while it runs.
//!
//! One [`LoopGauge`] per queue, on its own cache line, written by its core alone with
//! relaxed stores of counters the core keeps in its own locals, so the data path takes
//! no lock and no contended atomic: a reader pulls the line now and then, nothing more.
//!
//! The full report (every counter, the latency histograms, connections by state) is
//! made only when asked: the admin thread raises `asked` and rings the core's doorbell;
//! the core, between two turns, sees `asked` ahead of `answered`, puts a fresh
//! [`CoreReport`] in the slot (the one lock it takes, once per scrape) and stores the
//! generation it answered. Nothing per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::CoreReport;

/// One queue's published loop figures.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct LoopGauge {
    busy_ns: AtomicU64,
    busy_turns: AtomicU64,
    idle_turns: AtomicU64,
    requests: AtomicU64,
    responses: AtomicU64,
    connections: AtomicU64,
    arena_chunks_free: AtomicU64,
    /// Report generations asked for by the admin thread, and answered by the core.
    asked: AtomicU64,
    answered: AtomicU64,
    report: Mutex<Option<Arc<CoreReport>>>,
    /// The CPU the core is pinned to, plus one (0: not pinned, or not started).
    cpu: AtomicU64,
}

/// A reading of a [`LoopGauge`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopSnapshot {
    /// Time spent in turns that did work (frames, events, tasks).
    pub busy_ns: u64,
    /// Turns that did work.
    pub busy_turns: u64,
    /// Turns that found nothing.
    pub idle_turns: u64,
    /// HTTP requests parsed on this queue.
    pub requests: u64,
    /// HTTP responses queued on this queue (every status class, 100 Continue aside).
    pub responses: u64,
    /// Connections the transport holds (TIME-WAIT included on the packet path).
    pub connections: u64,
    /// Free chunks in the core's arena pool.
    pub arena_chunks_free: u64,
}

/// The core's own tally, published to its gauge.
#[derive(Debug, Default)]
pub(crate) struct LoopTally {
    now: LoopSnapshot,
}

impl LoopTally {
    /// Counts one turn: `busy` if it did work, taking `spent`.
    pub(crate) fn turn(&mut self, busy: bool, spent: Duration) {
        if busy {
            self.now.busy_turns += 1;
            self.now.busy_ns += spent.as_nanos() as u64;
        } else {
            self.now.idle_turns += 1;
        }
    }

    /// Stores the tally in `g` with the core's other figures (relaxed: each field is a
    /// reading on its own).
    pub(crate) fn publish(&self, g: &LoopGauge, other: Published) {
        g.busy_ns.store(self.now.busy_ns, Ordering::Relaxed);
        g.busy_turns.store(self.now.busy_turns, Ordering::Relaxed);
        g.idle_turns.store(self.now.idle_turns, Ordering::Relaxed);
        g.requests.store(other.requests, Ordering::Relaxed);
        g.responses.store(other.responses, Ordering::Relaxed);
        g.connections.store(other.connections, Ordering::Relaxed);
        g.arena_chunks_free.store(other.arena_chunks_free, Ordering::Relaxed);
    }
}

/// What a core publishes beside its loop tally.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Published {
    pub requests: u64,
    pub responses: u64,
    pub connections: u64,
    pub arena_chunks_free: u64,
}

impl LoopGauge {
    /// Asks the core for a fresh report; returns the generation to wait for.
    pub(crate) fn ask(&self) -> u64 {
        self.asked.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// True when the core answered generation `gen` (or a later one).
    pub(crate) fn answered(&self, gen: u64) -> bool {
        self.answered.load(Ordering::Acquire) >= gen
    }

    /// The core's side: the generation asked for, if it is ahead of what was answered.
    pub(crate) fn wanted(&self) -> Option<u64> {
        let asked = self.asked.load(Ordering::Relaxed);
        (asked > self.answered.load(Ordering::Relaxed)).then_some(asked)
    }

    /// The core's side: publishes `report` as the answer to generation `gen`.
    pub(crate) fn answer(&self, gen: u64, report: CoreReport) {
        *self.report.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(report));
        self.answered.store(gen, Ordering::Release);
    }

    /// Records the CPU the core runs on.
    pub(crate) fn set_cpu(&self, cpu: Option<usize>) {
        self.cpu.store(cpu.map_or(0, |c| c as u64 + 1), Ordering::Relaxed);
    }

    /// The CPU the core is pinned to.
    pub fn cpu(&self) -> Option<usize> {
        self.cpu.load(Ordering::Relaxed).checked_sub(1).map(|c| c as usize)
    }

    /// The last report the core published, if any.
    pub(crate) fn report(&self) -> Option<Arc<CoreReport>> {
        self.report.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The figures as last published.
    pub fn read(&self) -> LoopSnapshot {
        LoopSnapshot {
            busy_ns: self.busy_ns.load(Ordering::Relaxed),
            busy_turns: self.busy_turns.load(Ordering::Relaxed),
            idle_turns: self.idle_turns.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            responses: self.responses.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            arena_chunks_free: self.arena_chunks_free.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_busy_time_only_for_busy_turns_and_publishes_it() {
        let mut t = LoopTally::default();
        t.turn(true, Duration::from_micros(3));
        t.turn(false, Duration::from_micros(50));
        t.turn(true, Duration::from_nanos(500));
        let g = LoopGauge::default();
        assert_eq!(g.read(), LoopSnapshot::default());
        t.publish(&g, Published { requests: 7, responses: 6, connections: 3, arena_chunks_free: 9 });
        assert_eq!(
            g.read(),
            LoopSnapshot {
                busy_ns: 3500,
                busy_turns: 2,
                idle_turns: 1,
                requests: 7,
                responses: 6,
                connections: 3,
                arena_chunks_free: 9
            }
        );
    }
}
