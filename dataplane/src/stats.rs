//! What the layers count, in a form the admin listener can publish.
//!
//! Counter structs are declared through [`counters!`], which keeps each field's doc
//! comment as its help text: `/stats` and `/metrics` list every counter a layer keeps
//! with the words its code already says about it, and a counter added to a struct
//! appears there without another list to keep in step. [`Histogram`] is a fixed-bucket
//! latency histogram cheap enough to record into once per request.

use std::time::Duration;

/// A struct of `u64` counters that can list itself: name, help text, value.
pub trait Counters {
    /// Calls `f(name, help, value)` for every field, in declaration order.
    fn each(&self, f: &mut dyn FnMut(&'static str, &'static str, u64));
}

/// Declares a struct of `pub u64` counters, each with a doc comment, and implements
/// [`Counters`] for it (the doc comment becomes the help text).
#[macro_export]
macro_rules! counters {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[doc = $doc:literal])+ pub $field:ident: u64, )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[doc = $doc])+ pub $field: u64, )*
        }

        impl $crate::stats::Counters for $name {
            fn each(&self, f: &mut dyn FnMut(&'static str, &'static str, u64)) {
                $( f(stringify!($field), concat!($($doc),+), self.$field); )*
            }
        }
    };
}

/// Upper bounds of the histogram buckets, µs: 10 µs to 10 s, about three per decade.
/// A last bucket takes everything above.
pub const BUCKET_BOUNDS_US: [u64; 19] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Counts of observations per bucket of [`BUCKET_BOUNDS_US`] (not cumulative), their
/// number and their sum. 168 bytes; recording is a binary search over 19 bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Observations in each bucket: `counts[i]` ≤ `BUCKET_BOUNDS_US[i]` and above the
    /// bound before; the last one above every bound.
    pub counts: [u64; BUCKET_BOUNDS_US.len() + 1],
    /// Sum of the observations, ns.
    pub sum_ns: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn record(&mut self, d: Duration) {
        self.record_n(d, 1);
    }

    /// Records `n` observations of the same duration.
    pub fn record_n(&mut self, d: Duration, n: u64) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = BUCKET_BOUNDS_US.partition_point(|&b| b < us);
        self.counts[i] += n;
        let ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.sum_ns = self.sum_ns.saturating_add(ns.saturating_mul(n));
    }

    /// Observations recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `other`'s observations to these.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }

    /// The observations recorded since `earlier` (a reading of the same histogram).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let mut d = *self;
        for (a, b) in d.counts.iter_mut().zip(earlier.counts) {
            *a = a.saturating_sub(b);
        }
        d.sum_ns = d.sum_ns.saturating_sub(earlier.sum_ns);
        d
    }

    /// The `q` quantile (0..=1), µs, interpolated linearly inside its bucket as
    /// Prometheus's `histogram_quantile` does; the last bucket answers its lower bound.
    /// `None` with no observations.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * n as f64;
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 && (seen + c) as f64 >= rank {
                let lo = if i == 0 { 0 } else { BUCKET_BOUNDS_US[i - 1] } as f64;
                let Some(&hi) = BUCKET_BOUNDS_US.get(i) else { return Some(lo) };
                return Some(lo + (hi as f64 - lo) * ((rank - seen as f64) / c as f64).clamp(0.0, 1.0));
            }
            seen += c;
        }
        Some(*BUCKET_BOUNDS_US.last().expect("bounds") as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    counters! {
        /// Test counters.
        #[derive(Default)]
        pub struct Two {
            /// First one.
            pub a: u64,
            /// Second one,
            /// on two lines.
            pub b: u64,
        }
    }

    #[test]
    fn a_counters_struct_lists_its_fields_with_their_docs() {
        let t = Two { a: 3, b: 5 };
        let mut got = Vec::new();
        t.each(&mut |n, h, v| got.push((n, h.trim().to_string(), v)));
        assert_eq!(got, vec![("a", "First one.".to_string(), 3), ("b", "Second one, on two lines.".to_string(), 5)]);
    }

    #[test]
    fn observations_land_in_the_bucket_whose_bound_covers_them() {
        let mut h = Histogram::default();
        h.record(Duration::from_micros(10)); // ≤ 10
        h.record(Duration::from_micros(11)); // ≤ 25
        h.record(Duration::from_nanos(500)); // ≤ 10
        h.record(Duration::from_secs(60)); // above every bound
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[BUCKET_BOUNDS_US.len()], 1);
        assert_eq!(h.count(), 4);
        assert_eq!(h.sum_ns, 10_000 + 11_000 + 500 + 60_000_000_000);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_us(0.5), None);
        for _ in 0..100 {
            h.record(Duration::from_micros(200)); // bucket (100, 250]
        }
        // All 100 in one bucket: the median is half-way through it, p99 near its top.
        assert_eq!(h.quantile_us(0.5), Some(175.0));
        assert_eq!(h.quantile_us(0.99), Some(100.0 + 150.0 * 0.99));
        let mut later = h;
        later.record(Duration::from_secs(30));
        let d = later.since(&h);
        assert_eq!(d.count(), 1);
        assert_eq!(d.quantile_us(0.5), Some(10_000_000.0));
        let mut m = h;
        m.merge(&d);
        assert_eq!(m, later);
    }
}
