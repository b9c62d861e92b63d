//! Retransmission timeout per RFC 6298 (with the minimum and maximum from config).

use std::time::Duration;

/// RTT estimator: 20 bytes (it is in every connection), microseconds inside.
#[derive(Debug, Clone, Copy)]
pub struct Rtt {
    /// Smoothed RTT, µs; `u32::MAX` before the first sample.
    srtt_us: u32,
    rttvar_us: u32,
    rto_us: u32,
    min_us: u32,
    max_us: u32,
}

/// Clock granularity G of RFC 6298 (our timer wheel ticks in milliseconds).
const G_US: u64 = 1000;

fn us(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX - 1)) as u32
}

impl Rtt {
    /// Before any sample: RTO = `initial`.
    pub fn new(initial: Duration, min: Duration, max: Duration) -> Rtt {
        let (min_us, max_us) = (us(min), us(max));
        Rtt { srtt_us: u32::MAX, rttvar_us: 0, rto_us: us(initial).clamp(min_us, max_us.max(min_us)), min_us, max_us }
    }

    /// Feeds one measurement.
    pub fn sample(&mut self, r: Duration) {
        let r = u64::from(us(r));
        let (srtt, rttvar) = if self.srtt_us == u32::MAX {
            (r, r / 2)
        } else {
            let srtt = u64::from(self.srtt_us);
            ((7 * srtt + r) / 8, (3 * u64::from(self.rttvar_us) + srtt.abs_diff(r)) / 4)
        };
        self.srtt_us = srtt.min(u64::from(u32::MAX - 1)) as u32;
        self.rttvar_us = rttvar.min(u64::from(u32::MAX)) as u32;
        let rto = srtt + G_US.max(4 * rttvar);
        self.rto_us = rto.clamp(u64::from(self.min_us), u64::from(self.max_us.max(self.min_us))) as u32;
    }

    /// The current RTO (before backoff).
    pub fn rto(&self) -> Duration {
        Duration::from_micros(u64::from(self.rto_us))
    }

    /// Smoothed RTT, if measured.
    pub fn srtt(&self) -> Option<Duration> {
        (self.srtt_us != u32::MAX).then(|| Duration::from_micros(u64::from(self.srtt_us)))
    }

    /// RTO with exponential backoff for `n` timeouts in a row, capped at the maximum.
    pub fn backed_off(&self, n: u32) -> Duration {
        let b = u64::from(self.rto_us).saturating_mul(1 << n.min(16)).min(u64::from(self.max_us));
        Duration::from_micros(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6298_formulas() {
        let mut r = Rtt::new(Duration::from_secs(1), Duration::from_millis(1), Duration::from_secs(60));
        assert_eq!(r.rto(), Duration::from_secs(1));
        r.sample(Duration::from_millis(100));
        // srtt 100 ms, rttvar 50 ms → rto = 100 + 4*50 = 300 ms
        assert_eq!(r.rto(), Duration::from_millis(300));
        r.sample(Duration::from_millis(100));
        // rttvar = 3/4*50 + 1/4*0 = 37.5; srtt 100 → 250 ms
        assert_eq!(r.rto(), Duration::from_micros(250_000));
        assert_eq!(r.backed_off(2), Duration::from_secs(1));
        assert_eq!(r.backed_off(30), Duration::from_secs(60));
    }

    #[test]
    fn minimum_applies() {
        let mut r = Rtt::new(Duration::from_secs(1), Duration::from_millis(200), Duration::from_secs(60));
        r.sample(Duration::from_micros(50));
        assert_eq!(r.rto(), Duration::from_millis(200));
    }
}
