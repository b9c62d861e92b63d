//! Request latency per route and status class, kept by each core for itself.
//!
//! A request is timed from the start of the loop turn that takes it up (the turn's
//! clock, read once for the whole turn) to the moment its response is queued for the
//! transport (one clock read per answered request). So a request that waits in the
//! same turn behind others counts that wait; a request buffered behind a pipelined
//! request still waiting for its handler is taken up, and its clock started, only once
//! that one is answered.

use std::time::Duration;

use crate::stats::Histogram;

/// One histogram per (route label, status class 1xx..5xx), on one core.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    hists: Vec<Histogram>,
}

/// Status classes kept apart: 1xx to 5xx.
const CLASSES: usize = 5;

impl Latency {
    /// Room for `routes` route labels.
    pub fn new(routes: usize) -> Latency {
        Latency { hists: vec![Histogram::default(); routes * CLASSES] }
    }

    /// Records a request of route `route` answered `status` after `d`.
    pub fn record(&mut self, route: u16, status: u16, d: Duration) {
        let class = usize::from(status / 100).clamp(1, CLASSES) - 1;
        if let Some(h) = self.hists.get_mut(usize::from(route) * CLASSES + class) {
            h.record(d);
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
}
