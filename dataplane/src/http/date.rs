//! The `Date` header value, rendered at most once per second from the time passed in.

use std::time::{SystemTime, UNIX_EPOCH};

/// Cached IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, always 29 bytes).
#[derive(Debug, Clone)]
pub struct DateCache {
    secs: u64,
    value: [u8; 29],
    renders: u64,
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache { secs: u64::MAX, value: [b' '; 29], renders: 0 }
    }
}

impl DateCache {
    /// Brings the cached value up to `now`; renders only when the second changed.
    pub fn update(&mut self, now: SystemTime) {
        let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if secs == self.secs {
            return;
        }
        let text = httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(secs));
        self.value.copy_from_slice(&text.as_bytes()[..29]);
        self.secs = secs;
        self.renders += 1;
    }

    /// The header value for the last `update`.
    pub fn value(&self) -> &[u8; 29] {
        &self.value
    }

    /// How many times the value was rendered (for tests and stats).
    pub fn renders(&self) -> u64 {
        self.renders
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn renders_once_per_second() {
        let mut d = DateCache::default();
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        d.update(t);
        assert_eq!(d.value(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        d.update(t + Duration::from_millis(999));
        assert_eq!(d.renders(), 1);
        d.update(t + Duration::from_secs(1));
        assert_eq!(d.value(), b"Sun, 06 Nov 1994 08:49:38 GMT");
        assert_eq!(d.renders(), 2);
    }
}
