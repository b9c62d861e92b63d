//! Request latency per route and status class, kept by each core for itself.
//!
//! A request is timed from the start of the loop turn that takes it up (the turn's
//! clock, read once for the whole turn) to the end of the turn in which its response is
//! queued for the transport, when the turn's frames go out: requests answered within
//! their turn (sync handlers, refusals) are counted as the turn goes and stamped
//! together with one clock read when it ends ([`Latency::defer`], [`Latency::flush`]);
//! an answer delivered later (an async handler, a job) reads the clock itself. So a
//! request that waits in the same turn behind others counts that wait; a request
//! buffered behind a pipelined request still waiting for its handler is taken up, and
//! its clock started, only once that one is answered.

use std::time::Duration;

use crate::stats::Histogram;

/// One histogram per (route label, status class 1xx..5xx), on one core.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    hists: Vec<Histogram>,
    /// Requests answered this turn, per histogram, not yet recorded.
    pending: Vec<u32>,
    /// The histograms with pending requests.
    touched: Vec<u32>,
}

/// Status classes kept apart: 1xx to 5xx.
const CLASSES: usize = 5;

impl Latency {
    /// Room for `routes` route labels.
    pub fn new(routes: usize) -> Latency {
        Latency {
            hists: vec![Histogram::default(); routes * CLASSES],
            pending: vec![0; routes * CLASSES],
            touched: Vec::new(),
        }
    }

    fn slot(route: u16, status: u16) -> usize {
        usize::from(route) * CLASSES + usize::from(status / 100).clamp(1, CLASSES) - 1
    }

    /// Records a request of route `route` answered `status` after `d`.
    pub fn record(&mut self, route: u16, status: u16, d: Duration) {
        if let Some(h) = self.hists.get_mut(Self::slot(route, status)) {
            h.record(d);
        }
    }

    /// Counts a request of `route` answered `status` in this turn; it is recorded with
    /// the turn's duration at [`flush`](Self::flush).
    pub fn defer(&mut self, route: u16, status: u16) {
        let i = Self::slot(route, status);
        if let Some(p) = self.pending.get_mut(i) {
            if *p == 0 {
                self.touched.push(i as u32);
            }
            *p += 1;
        }
    }

    /// True when requests wait for [`flush`](Self::flush).
    pub fn has_pending(&self) -> bool {
        !self.touched.is_empty()
    }

    /// Records every deferred request with duration `d` (the turn's).
    pub fn flush(&mut self, d: Duration) {
        for i in self.touched.drain(..) {
            let i = i as usize;
            self.hists[i].record_n(d, u64::from(std::mem::take(&mut self.pending[i])));
        }
    }

    /// Calls `f(route, class, histogram)` for every route and class (1..=5) that has
    /// observations.
    pub fn each(&self, mut f: impl FnMut(usize, u8, &Histogram)) {
        for (i, h) in self.hists.iter().enumerate() {
            if h.count() > 0 {
                f(i / CLASSES, (i % CLASSES + 1) as u8, h);
            }
        }
    }

    /// Every observation of this core in one histogram.
    pub fn total(&self) -> Histogram {
        let mut t = Histogram::default();
        for h in &self.hists {
            t.merge(h);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_and_class_has_its_own_histogram() {
        let mut l = Latency::new(3);
        l.record(1, 200, Duration::from_micros(40));
        l.record(1, 204, Duration::from_micros(40));
        l.record(1, 503, Duration::from_millis(3));
        l.record(2, 404, Duration::from_micros(5));
        l.record(9, 200, Duration::from_micros(5)); // no such route: ignored
        let mut seen = Vec::new();
        l.each(|r, c, h| seen.push((r, c, h.count())));
        assert_eq!(seen, vec![(1, 2, 2), (1, 5, 1), (2, 4, 1)]);
        assert_eq!(l.total().count(), 4);
    }

    #[test]
    fn deferred_requests_are_recorded_together_at_the_flush() {
        let mut l = Latency::new(2);
        l.defer(1, 200);
        l.defer(1, 200);
        l.defer(1, 404);
        assert!(l.has_pending());
        assert_eq!(l.total().count(), 0);
        l.flush(Duration::from_micros(30));
        assert!(!l.has_pending());
        let mut seen = Vec::new();
        l.each(|r, c, h| seen.push((r, c, h.count(), h.sum_ns)));
        assert_eq!(seen, vec![(1, 2, 2, 60_000), (1, 4, 1, 30_000)]);
        l.flush(Duration::from_secs(1)); // nothing pending: nothing recorded
        assert_eq!(l.total().count(), 3);
    }
}
