//! Retransmission timeout per RFC 6298 (with the minimum and maximum from config).

use std::time::Duration;

/// RTT estimator.
#[derive(Debug, Clone, Copy)]
pub struct Rtt {
    srtt_us: Option<u64>,
    rttvar_us: u64,
    rto: Duration,
    min: Duration,
    max: Duration,
}

/// Clock granularity G of RFC 6298 (our timer wheel ticks in milliseconds).
const G_US: u64 = 1000;

impl Rtt {
    /// Before any sample: RTO = `initial`.
    pub fn new(initial: Duration, min: Duration, max: Duration) -> Rtt {
        Rtt { srtt_us: None, rttvar_us: 0, rto: initial.clamp(min, max), min, max }
    }

    /// Feeds one measurement.
    pub fn sample(&mut self, r: Duration) {
        let r = r.as_micros().min(u128::from(u32::MAX)) as u64;
        match self.srtt_us {
            None => {
                self.srtt_us = Some(r);
                self.rttvar_us = r / 2;
            }
            Some(srtt) => {
                self.rttvar_us = (3 * self.rttvar_us + srtt.abs_diff(r)) / 4;
                self.srtt_us = Some((7 * srtt + r) / 8);
            }
        }
        let rto = self.srtt_us.unwrap_or(0) + G_US.max(4 * self.rttvar_us);
        self.rto = Duration::from_micros(rto).clamp(self.min, self.max);
    }

    /// The current RTO (before backoff).
    pub fn rto(&self) -> Duration {
        self.rto
    }

    /// Smoothed RTT, if measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt_us.map(Duration::from_micros)
    }

    /// RTO with exponential backoff for `n` timeouts in a row, capped at the maximum.
    pub fn backed_off(&self, n: u32) -> Duration {
        self.rto.saturating_mul(1 << n.min(16)).min(self.max)
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
