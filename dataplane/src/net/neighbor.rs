//! The neighbour table (ARP for IPv4, neighbour discovery for IPv6): a per-core cache in front of one table shared by all
//! cores. On veth and with RSS, an ARP reply can arrive on another queue than the one
//! that asked; the shared table lets every core see what any core learned. Lookups hit
//! the local cache; the shared table is touched only on a miss or when learning (rare).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an entry is trusted without asking again.
pub const NEIGHBOR_TTL: Duration = Duration::from_secs(300);

/// How long an entry past [`NEIGHBOR_TTL`] is still used while it is asked about again
/// (Linux's STALE → PROBE): traffic keeps flowing to the MAC we know, and a request goes
/// out at most once per [`ASK_AGAIN`]; a neighbour that answers none of them in this
/// time is forgotten, and packets to it then wait for resolution.
pub const NEIGHBOR_STALE_GRACE: Duration = Duration::from_secs(30);

/// The least time between two requests for one address: a stale entry asked about again,
/// or a miss still waiting for its answer.
pub const ASK_AGAIN: Duration = Duration::from_secs(1);

/// The table all cores share.
#[derive(Default)]
pub struct SharedNeighbors {
    map: Mutex<HashMap<IpAddr, ([u8; 6], Instant)>>,
}

/// One core's view.
pub struct NeighborCache {
    /// The last fresh answer: the address, its MAC, and until when it stays fresh. Most
    /// of a core's frames go to one neighbour (the client on the segment, or the
    /// gateway): this spares them the map's hash (≈ 300 instructions a json request).
    last: Option<(IpAddr, [u8; 6], Instant)>,
    local: HashMap<IpAddr, ([u8; 6], Instant)>,
    shared: Arc<SharedNeighbors>,
    /// When this core last asked about a stale entry.
    asked: HashMap<IpAddr, Instant>,
}

impl NeighborCache {
    /// A cache over `shared`.
    pub fn new(shared: Arc<SharedNeighbors>) -> Self {
        NeighborCache { last: None, local: HashMap::new(), shared, asked: HashMap::new() }
    }

    /// The MAC for `ip`, if known and fresh or stale within the grace time; the second
    /// field says that a refresh request is due now (stale, and not asked about for
    /// [`ASK_AGAIN`]).
    pub fn lookup(&mut self, ip: IpAddr, now: Instant) -> Option<([u8; 6], bool)> {
        if let Some((last, mac, until)) = self.last {
            if last == ip && now < until {
                return Some((mac, false));
            }
        }
        let usable = |at: Instant| now.saturating_duration_since(at) < NEIGHBOR_TTL + NEIGHBOR_STALE_GRACE;
        let (mac, at) = match self.local.get(&ip) {
            Some(&(mac, at)) if now.saturating_duration_since(at) < NEIGHBOR_TTL => {
                self.last = Some((ip, mac, at + NEIGHBOR_TTL));
                return Some((mac, false));
            }
            // Stale here: another core may have learned it again since.
            _ => *self.shared.map.lock().unwrap_or_else(|e| e.into_inner()).get(&ip)?,
        };
        if !usable(at) {
            return None;
        }
        self.local.insert(ip, (mac, at));
        if now.saturating_duration_since(at) < NEIGHBOR_TTL {
            return Some((mac, false));
        }
        let due = self.asked.get(&ip).is_none_or(|&t| now.saturating_duration_since(t) >= ASK_AGAIN);
        if due {
            self.asked.insert(ip, now);
        }
        Some((mac, due))
    }

    /// True if `ip` has an entry (fresh or not) in either table.
    pub fn knows(&self, ip: IpAddr) -> bool {
        self.local.contains_key(&ip) || self.shared.map.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&ip)
    }

    /// Records `ip` at `mac`.
    pub fn learn(&mut self, ip: IpAddr, mac: [u8; 6], now: Instant) {
        self.last = None;
        self.asked.remove(&ip);
        self.local.insert(ip, (mac, now));
        self.shared.map.lock().unwrap_or_else(|e| e.into_inner()).insert(ip, (mac, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_entry_is_used_while_it_is_asked_about_then_forgotten() {
        let t0 = Instant::now();
        let ip: IpAddr = "10.99.0.2".parse().unwrap();
        let mac = [2, 0, 0, 0, 0, 2];
        let mut c = NeighborCache::new(Arc::default());
        c.learn(ip, mac, t0);
        assert_eq!(c.lookup(ip, t0 + NEIGHBOR_TTL - Duration::from_millis(1)), Some((mac, false)));
        // Stale: still used; the first use asks, the next within ASK_AGAIN does not.
        let stale = t0 + NEIGHBOR_TTL;
        assert_eq!(c.lookup(ip, stale), Some((mac, true)));
        assert_eq!(c.lookup(ip, stale + ASK_AGAIN / 2), Some((mac, false)));
        assert_eq!(c.lookup(ip, stale + ASK_AGAIN), Some((mac, true)));
        // Past the grace time with no answer: forgotten.
        assert_eq!(c.lookup(ip, stale + NEIGHBOR_STALE_GRACE), None);
        // An answer makes it fresh again, and another core sees that.
        let shared = c.shared.clone();
        let mut other = NeighborCache::new(shared);
        other.learn(ip, mac, stale + Duration::from_secs(2));
        assert_eq!(c.lookup(ip, stale + Duration::from_secs(3)), Some((mac, false)));
    }

    #[test]
    fn the_last_answer_is_reused_only_for_its_address_while_fresh_and_until_relearned() {
        let t0 = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("10.99.0.2".parse().unwrap(), "10.99.0.3".parse().unwrap());
        let (ma, mb, ma2) = ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3], [2, 0, 0, 0, 0, 4]);
        let mut c = NeighborCache::new(Arc::default());
        c.learn(a, ma, t0);
        c.learn(b, mb, t0);
        assert_eq!(c.lookup(a, t0), Some((ma, false)));
        assert_eq!(c.lookup(b, t0), Some((mb, false)), "another address is not answered from the last one");
        assert_eq!(c.lookup(a, t0), Some((ma, false)));
        // A new MAC learned for the address replaces the remembered answer at once.
        c.learn(a, ma2, t0 + Duration::from_secs(1));
        assert_eq!(c.lookup(a, t0 + Duration::from_secs(1)), Some((ma2, false)));
        // Past the TTL the remembered answer is not used: stale, a refresh is due.
        let stale = t0 + Duration::from_secs(1) + NEIGHBOR_TTL;
        assert_eq!(c.lookup(a, stale), Some((ma2, true)));
    }
}
