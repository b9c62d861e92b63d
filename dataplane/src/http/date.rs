//! The `Date` header value, rendered at most once per second from the time passed in.

use std::time::{SystemTime, UNIX_EPOCH};

/// What every response head carries between its status line and its `Content-Type`
/// value: the `Server` and `Date` fields, then the `Content-Type` name. Kept rendered as
/// one block, so a head is written in a few copies instead of one per piece.
const BLOCK_PREFIX: &[u8] = b"\r\nServer: px-appliance\r\nDate: ";
const BLOCK_SUFFIX: &[u8] = b"\r\nContent-Type: ";
const DATE_LEN: usize = 29;
const BLOCK_LEN: usize = BLOCK_PREFIX.len() + DATE_LEN + BLOCK_SUFFIX.len();

/// Cached IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, always 29 bytes), inside the
/// rendered block of the header fields around it.
#[derive(Debug, Clone)]
pub struct DateCache {
    secs: u64,
    /// The second the block shows, as [start, end): a time inside it needs no division.
    span: (SystemTime, SystemTime),
    block: [u8; BLOCK_LEN],
    renders: u64,
}

impl Default for DateCache {
    fn default() -> Self {
        let mut block = [b' '; BLOCK_LEN];
        block[..BLOCK_PREFIX.len()].copy_from_slice(BLOCK_PREFIX);
        block[BLOCK_PREFIX.len() + DATE_LEN..].copy_from_slice(BLOCK_SUFFIX);
        DateCache { secs: u64::MAX, span: (UNIX_EPOCH, UNIX_EPOCH), block, renders: 0 }
    }
}

impl DateCache {
    /// Brings the cached value up to `now`; renders only when the second changed.
    pub fn update(&mut self, now: SystemTime) {
        if self.span.0 <= now && now < self.span.1 {
            return;
        }
        let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if secs == self.secs {
            return;
        }
        let text = httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(secs));
        self.block[BLOCK_PREFIX.len()..BLOCK_PREFIX.len() + DATE_LEN].copy_from_slice(&text.as_bytes()[..DATE_LEN]);
        self.secs = secs;
        let start = UNIX_EPOCH + std::time::Duration::from_secs(secs);
        self.span = (start, start + std::time::Duration::from_secs(1));
        self.renders += 1;
    }

    /// The header value for the last `update`.
    pub fn value(&self) -> &[u8] {
        &self.block[BLOCK_PREFIX.len()..BLOCK_PREFIX.len() + DATE_LEN]
    }

    /// `\r\nServer: px-appliance\r\nDate: <value>\r\nContent-Type: `: what a response
    /// head holds between its status line and its content type.
    pub fn head_block(&self) -> &[u8] {
        &self.block
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
        // A clock stepped back renders the earlier second again.
        d.update(t + Duration::from_millis(500));
        assert_eq!(d.value(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(d.renders(), 3);
        d.update(t + Duration::from_secs(1));
        assert_eq!(
            d.head_block(),
            b"\r\nServer: px-appliance\r\nDate: Sun, 06 Nov 1994 08:49:38 GMT\r\nContent-Type: "
        );
    }
}
