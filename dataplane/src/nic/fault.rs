//! A seeded fault injector around any [`PacketIo`]: drops, duplicates, reorders and
//! corrupts received frames with configured probabilities, reproducibly per seed.

use std::time::Duration;

use super::{IoCounters, PacketIo, TxFull};

/// Probabilities in parts per million, and the seed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Seed of the generator (same seed, same faults).
    pub seed: u64,
    /// Drop a received frame.
    pub drop_ppm: u32,
    /// Deliver a received frame twice.
    pub duplicate_ppm: u32,
    /// Hold a received frame back and deliver it after the next one.
    pub reorder_ppm: u32,
    /// Flip one byte of a received frame.
    pub corrupt_ppm: u32,
}

impl FaultConfig {
    /// True when any fault is enabled.
    pub fn any(&self) -> bool {
        self.drop_ppm + self.duplicate_ppm + self.reorder_ppm + self.corrupt_ppm > 0
    }
}

/// Injects faults into `inner`'s receive path.
pub struct Fault<P> {
    inner: P,
    cfg: FaultConfig,
    state: u64,
    held: Option<Vec<u8>>,
    scratch: Vec<u8>,
    counters: FaultCounters,
}

/// What the injector did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounters {
    /// Frames dropped.
    pub dropped: u64,
    /// Frames delivered twice.
    pub duplicated: u64,
    /// Frames delivered late.
    pub reordered: u64,
    /// Frames with a flipped byte.
    pub corrupted: u64,
}

impl<P: PacketIo> Fault<P> {
    /// Wraps `inner`.
    pub fn new(inner: P, cfg: FaultConfig) -> Self {
        Fault {
            inner,
            cfg,
            state: cfg.seed.max(1),
            held: None,
            scratch: Vec::new(),
            counters: FaultCounters::default(),
        }
    }

    /// What was injected so far.
    pub fn fault_counters(&self) -> FaultCounters {
        self.counters
    }
}

fn roll(state: &mut u64, ppm: u32) -> bool {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    ppm > 0 && (*state % 1_000_000) < u64::from(ppm)
}

impl<P: PacketIo> PacketIo for Fault<P> {
    fn recv(&mut self, max: usize, f: &mut dyn FnMut(&[u8])) -> usize {
        let Fault { inner, cfg, state, held, scratch, counters } = self;
        let mut delivered = 0;
        let n = inner.recv(max, &mut |frame| {
            if roll(state, cfg.drop_ppm) {
                counters.dropped += 1;
                return;
            }
            scratch.clear();
            scratch.extend_from_slice(frame);
            if !scratch.is_empty() && roll(state, cfg.corrupt_ppm) {
                let i = (*state as usize) % scratch.len();
                scratch[i] ^= 1 << ((*state >> 32) % 8);
                counters.corrupted += 1;
            }
            if held.is_none() && roll(state, cfg.reorder_ppm) {
                *held = Some(scratch.clone());
                counters.reordered += 1;
                return;
            }
            f(scratch);
            delivered += 1;
            if roll(state, cfg.duplicate_ppm) {
                f(scratch);
                counters.duplicated += 1;
            }
            if let Some(late) = held.take() {
                f(&late);
            }
        });
        if n == 0 {
            if let Some(late) = held.take() {
                f(&late);
                delivered += 1;
            }
        }
        n.max(delivered)
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), TxFull> {
        self.inner.send(frame)
    }

    fn flush(&mut self) {
        self.inner.flush();
    }

    fn wait(&mut self, timeout: Duration) {
        self.inner.wait(timeout);
    }

    fn counters(&self) -> IoCounters {
        let mut c = self.inner.counters();
        c.injected_drops += self.counters.dropped;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nic::loopback::Loopback;

    fn run(cfg: FaultConfig) -> (Vec<Vec<u8>>, FaultCounters) {
        let (mut a, b) = Loopback::pair(10_000);
        for i in 0..1000u32 {
            a.send(&i.to_be_bytes()).unwrap();
        }
        let mut b = Fault::new(b, cfg);
        let mut got = Vec::new();
        while b.recv(64, &mut |f| got.push(f.to_vec())) > 0 {}
        (got, b.fault_counters())
    }

    #[test]
    fn no_faults_is_transparent() {
        let (got, c) = run(FaultConfig { seed: 1, ..Default::default() });
        assert_eq!(got.len(), 1000);
        assert_eq!(c, FaultCounters::default());
    }

    #[test]
    fn faults_happen_at_about_the_rate_and_repeat_per_seed() {
        let cfg = FaultConfig {
            seed: 42,
            drop_ppm: 50_000,
            duplicate_ppm: 20_000,
            reorder_ppm: 100_000,
            corrupt_ppm: 10_000,
        };
        let (got, c) = run(cfg);
        assert!((20..100).contains(&c.dropped), "{c:?}");
        assert!((5..50).contains(&c.duplicated), "{c:?}");
        assert!(c.reordered > 30 && c.corrupted > 0, "{c:?}");
        assert_eq!(got.len() as u64, 1000 - c.dropped + c.duplicated);
        let (again, c2) = run(cfg);
        assert_eq!((again, c2), (got, c), "same seed, same faults");
    }
}
