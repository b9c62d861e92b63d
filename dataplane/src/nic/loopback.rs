//! An in-memory [`PacketIo`] pair: what one end sends, the other receives.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{IoCounters, PacketIo, TxFull};

type Wire = Rc<RefCell<VecDeque<Vec<u8>>>>;

/// One end of an in-memory link.
pub struct Loopback {
    rx: Wire,
    tx: Wire,
    capacity: usize,
    counters: IoCounters,
}

impl Loopback {
    /// Two connected ends; each direction holds at most `capacity` frames in flight.
    pub fn pair(capacity: usize) -> (Loopback, Loopback) {
        let (a, b): (Wire, Wire) = Default::default();
        let end = |rx: &Wire, tx: &Wire| Loopback {
            rx: rx.clone(),
            tx: tx.clone(),
            capacity,
            counters: IoCounters::default(),
        };
        (end(&a, &b), end(&b, &a))
    }

    /// Frames waiting to be received at this end.
    pub fn pending(&self) -> usize {
        self.rx.borrow().len()
    }
}

impl PacketIo for Loopback {
    fn recv(&mut self, _now: Instant, max: usize, f: &mut dyn FnMut(&[u8])) -> usize {
        let mut n = 0;
        while n < max {
            let Some(frame) = self.rx.borrow_mut().pop_front() else { break };
            self.counters.rx_packets += 1;
            self.counters.rx_bytes += frame.len() as u64;
            f(&frame);
            n += 1;
        }
        n
    }

    fn send(&mut self, _now: Instant, frame: &[u8]) -> Result<(), TxFull> {
        let mut tx = self.tx.borrow_mut();
        if tx.len() >= self.capacity {
            self.counters.tx_ring_full += 1;
            return Err(TxFull);
        }
        tx.push_back(frame.to_vec());
        self.counters.tx_packets += 1;
        self.counters.tx_bytes += frame.len() as u64;
        Ok(())
    }

    fn flush(&mut self, _now: Instant) {}

    fn wait(&mut self, _now: Instant, _timeout: Duration) {}

    fn counters(&self) -> IoCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_in_order_and_capacity_is_enforced() {
        let (mut a, mut b) = Loopback::pair(2);
        let now = Instant::now();
        a.send(now, b"one").unwrap();
        a.send(now, b"two").unwrap();
        assert_eq!(a.send(now, b"three"), Err(TxFull));
        let mut got = Vec::new();
        assert_eq!(b.recv(now, 8, &mut |f| got.push(f.to_vec())), 2);
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(a.counters().tx_packets, 2);
        assert_eq!(a.counters().tx_ring_full, 1);
        assert_eq!(b.counters().rx_bytes, 6);
    }
}
