//! The neighbour table (ARP for IPv4, neighbour discovery for IPv6): a per-core cache in front of one table shared by all
//! cores. On veth and with RSS, an ARP reply can arrive on another queue than the one
//! that asked; the shared table lets every core see what any core learned. Lookups hit
//! the local cache; the shared table is touched only on a miss or when learning (rare).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an entry is trusted.
pub const NEIGHBOR_TTL: Duration = Duration::from_secs(300);

/// The table all cores share.
#[derive(Default)]
pub struct SharedNeighbors {
    map: Mutex<HashMap<IpAddr, ([u8; 6], Instant)>>,
}

/// One core's view.
pub struct NeighborCache {
    local: HashMap<IpAddr, ([u8; 6], Instant)>,
    shared: Arc<SharedNeighbors>,
}

impl NeighborCache {
    /// A cache over `shared`.
    pub fn new(shared: Arc<SharedNeighbors>) -> Self {
        NeighborCache { local: HashMap::new(), shared }
    }

    /// The MAC for `ip`, if known and fresh.
    pub fn lookup(&mut self, ip: IpAddr, now: Instant) -> Option<[u8; 6]> {
        if let Some(&(mac, at)) = self.local.get(&ip) {
            if now.saturating_duration_since(at) < NEIGHBOR_TTL {
                return Some(mac);
            }
        }
        let (mac, at) = *self.shared.map.lock().unwrap_or_else(|e| e.into_inner()).get(&ip)?;
        if now.saturating_duration_since(at) >= NEIGHBOR_TTL {
            return None;
        }
        self.local.insert(ip, (mac, at));
        Some(mac)
    }

    /// True if `ip` has an entry (fresh or not) in either table.
    pub fn knows(&self, ip: IpAddr) -> bool {
        self.local.contains_key(&ip) || self.shared.map.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&ip)
    }

    /// Records `ip` at `mac`.
    pub fn learn(&mut self, ip: IpAddr, mac: [u8; 6], now: Instant) {
        self.local.insert(ip, (mac, now));
        self.shared.map.lock().unwrap_or_else(|e| e.into_inner()).insert(ip, (mac, now));
    }
}
