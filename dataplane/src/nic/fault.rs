//! A seeded fault injector around any [`PacketIo`], with netem's vocabulary: loss,
//! duplication, corruption, delay, and reordering, applied to received frames and to
//! sent frames alike, reproducibly per seed.
//!
//! Reordering follows netem: with `delay_ms` set, every frame waits that long except the
//! `reorder_ppm` share, which goes at once and so overtakes the others. Without a delay,
//! a reordered frame is held back until the next one has passed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{IoCounters, PacketIo, TxFull};

/// Probabilities in parts per million, the delay, and the seed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Seed of the generator (same seed, same faults).
    pub seed: u64,
    /// Drop a frame.
    pub drop_ppm: u32,
    /// Deliver or send a frame twice.
    pub duplicate_ppm: u32,
    /// Let a frame overtake (netem `reorder`).
    pub reorder_ppm: u32,
    /// Flip one bit of a frame.
    pub corrupt_ppm: u32,
    /// Hold every frame (not reordered) this long (netem `delay`).
    pub delay_ms: u32,
    /// Which traffic: `rx` (frames arriving: what `tc netem` on the peer's interface
    /// does), `tx` (frames we send), or `both`.
    pub direction: Direction,
}

/// Which direction faults apply to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Received frames only.
    Rx,
    /// Sent frames only.
    Tx,
    /// Both.
    #[default]
    Both,
}

impl FaultConfig {
    /// True when any fault is enabled.
    pub fn any(&self) -> bool {
        self.drop_ppm + self.duplicate_ppm + self.reorder_ppm + self.corrupt_ppm + self.delay_ms > 0
    }
}

/// What the injector did, both directions together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounters {
    /// Frames dropped.
    pub dropped: u64,
    /// Frames duplicated.
    pub duplicated: u64,
    /// Frames that overtook others.
    pub reordered: u64,
    /// Frames with a flipped bit.
    pub corrupted: u64,
    /// Frames delayed.
    pub delayed: u64,
}

struct Held {
    at: Instant,
    frame: Vec<u8>,
}

/// Injects faults into `inner`'s traffic.
pub struct Fault<P> {
    inner: P,
    cfg: FaultConfig,
    state: u64,
    rx_held: VecDeque<Held>,
    tx_held: VecDeque<Held>,
    rx_behind: Option<Vec<u8>>,
    scratch: Vec<u8>,
    counters: FaultCounters,
}

impl<P: PacketIo> Fault<P> {
    /// Wraps `inner`.
    pub fn new(inner: P, cfg: FaultConfig) -> Self {
        Fault {
            inner,
            cfg,
            state: cfg.seed.max(1),
            rx_held: VecDeque::new(),
            tx_held: VecDeque::new(),
            rx_behind: None,
            scratch: Vec::new(),
            counters: FaultCounters::default(),
        }
    }

    /// What was injected so far.
    pub fn fault_counters(&self) -> FaultCounters {
        self.counters
    }

    fn delay(&self) -> Duration {
        Duration::from_millis(u64::from(self.cfg.delay_ms))
    }
}

fn roll(state: &mut u64, ppm: u32) -> bool {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    ppm > 0 && (*state % 1_000_000) < u64::from(ppm)
}

/// Decides a frame's fate: None = dropped; Some(copies, delayed, corrupted bytes).
fn judge(
    state: &mut u64,
    cfg: &FaultConfig,
    c: &mut FaultCounters,
    frame: &[u8],
    out: &mut Vec<u8>,
) -> Option<(usize, bool)> {
    if roll(state, cfg.drop_ppm) {
        c.dropped += 1;
        return None;
    }
    out.clear();
    out.extend_from_slice(frame);
    if !out.is_empty() && roll(state, cfg.corrupt_ppm) {
        let i = (*state as usize) % out.len();
        out[i] ^= 1 << ((*state >> 32) % 8);
        c.corrupted += 1;
    }
    let copies = if roll(state, cfg.duplicate_ppm) {
        c.duplicated += 1;
        2
    } else {
        1
    };
    let overtakes = roll(state, cfg.reorder_ppm);
    if overtakes {
        c.reordered += 1;
    }
    let delayed = cfg.delay_ms > 0 && !overtakes;
    if delayed {
        c.delayed += 1;
    }
    Some((copies, if cfg.delay_ms > 0 { delayed } else { overtakes }))
}

impl<P: PacketIo> PacketIo for Fault<P> {
    fn recv(&mut self, now: Instant, max: usize, f: &mut dyn FnMut(&[u8])) -> usize {
        let delay = self.delay();
        let mut n = 0;
        while n < max && self.rx_held.front().is_some_and(|h| h.at <= now) {
            let h = self.rx_held.pop_front().expect("checked");
            f(&h.frame);
            n += 1;
        }
        if self.cfg.direction == Direction::Tx {
            return n + self.inner.recv(now, max.saturating_sub(n), f);
        }
        let Fault { inner, cfg, state, rx_held, rx_behind, scratch, counters, .. } = self;
        let got = inner.recv(now, max.saturating_sub(n), &mut |frame| {
            let Some((copies, hold)) = judge(state, cfg, counters, frame, scratch) else { return };
            for _ in 0..copies {
                if hold && cfg.delay_ms > 0 {
                    rx_held.push_back(Held { at: now + delay, frame: scratch.clone() });
                } else if hold && rx_behind.is_none() {
                    *rx_behind = Some(scratch.clone());
                } else {
                    f(scratch);
                    if let Some(late) = rx_behind.take() {
                        f(&late);
                    }
                }
            }
        });
        if got == 0 && n == 0 {
            if let Some(late) = self.rx_behind.take() {
                f(&late);
                n += 1;
            }
        }
        n + got
    }

    fn send(&mut self, now: Instant, frame: &[u8]) -> Result<(), TxFull> {
        if self.cfg.direction == Direction::Rx {
            return self.inner.send(now, frame);
        }
        let Fault { cfg, state, counters, scratch, .. } = self;
        let Some((copies, hold)) = judge(state, cfg, counters, frame, scratch) else { return Ok(()) };
        let frame = std::mem::take(&mut self.scratch);
        let mut result = Ok(());
        for _ in 0..copies {
            if hold && self.cfg.delay_ms > 0 {
                self.tx_held.push_back(Held { at: now + self.delay(), frame: frame.clone() });
            } else {
                result = self.inner.send(now, &frame);
            }
        }
        self.scratch = frame;
        result
    }

    fn flush(&mut self, now: Instant) {
        while self.tx_held.front().is_some_and(|h| h.at <= now) {
            let h = self.tx_held.pop_front().expect("checked");
            if self.inner.send(now, &h.frame).is_err() {
                self.tx_held.push_front(h);
                break;
            }
        }
        self.inner.flush(now);
    }

    fn wait(&mut self, now: Instant, timeout: Duration) {
        let next = [self.rx_held.front(), self.tx_held.front()].into_iter().flatten().map(|h| h.at).min();
        let timeout = next.map_or(timeout, |at| timeout.min(at.saturating_duration_since(now)));
        if !timeout.is_zero() {
            self.inner.wait(now, timeout);
        }
    }

    fn counters(&self) -> IoCounters {
        let mut c = self.inner.counters();
        c.injected_drops += self.counters.dropped;
        c
    }

    fn tx_stalled(&self) -> bool {
        self.inner.tx_stalled()
    }

    fn set_busy_poll(&mut self, on: bool) {
        self.inner.set_busy_poll(on)
    }

    fn frames(&self) -> Option<super::FrameUse> {
        self.inner.frames()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nic::loopback::Loopback;

    fn run(cfg: FaultConfig) -> (Vec<Vec<u8>>, FaultCounters) {
        let (mut a, b) = Loopback::pair(10_000);
        let mut now = Instant::now();
        for i in 0..1000u32 {
            a.send(now, &i.to_be_bytes()).unwrap();
        }
        let mut b = Fault::new(b, cfg);
        let mut got = Vec::new();
        // Simulated time, 1 ms a call: delays are reproducible from the seed.
        for _ in 0..5000 {
            if b.recv(now, 64, &mut |f| got.push(f.to_vec())) == 0 && b.rx_held.is_empty() && b.rx_behind.is_none() {
                break;
            }
            now += Duration::from_millis(1);
        }
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
            ..Default::default()
        };
        let (got, c) = run(cfg);
        assert!((20..100).contains(&c.dropped), "{c:?}");
        assert!((5..50).contains(&c.duplicated), "{c:?}");
        assert!(c.reordered > 30 && c.corrupted > 0, "{c:?}");
        assert_eq!(got.len() as u64, 1000 - c.dropped + c.duplicated);
        let (again, c2) = run(cfg);
        assert_eq!((again, c2), (got, c), "same seed, same faults");
    }

    #[test]
    fn delay_with_netem_style_reordering() {
        let cfg = FaultConfig { seed: 7, reorder_ppm: 250_000, delay_ms: 5, ..Default::default() };
        let (got, c) = run(cfg);
        assert_eq!(got.len(), 1000);
        assert!(c.delayed > 600 && c.reordered > 150, "{c:?}");
        let order: Vec<u32> = got.iter().map(|f| u32::from_be_bytes(f[..4].try_into().unwrap())).collect();
        assert!(order.windows(2).any(|w| w[0] > w[1]), "some frames overtook others");
        let (again, c2) = run(cfg);
        assert_eq!((again, c2), (got, c), "delays and reordering repeat per seed");
    }

    #[test]
    fn send_side_faults() {
        let (a, mut b) = Loopback::pair(10_000);
        let mut a =
            Fault::new(a, FaultConfig { seed: 3, drop_ppm: 100_000, duplicate_ppm: 100_000, ..Default::default() });
        let now = Instant::now();
        for i in 0..1000u32 {
            a.send(now, &i.to_be_bytes()).unwrap();
        }
        a.flush(now);
        let mut n = 0;
        while b.recv(now, 64, &mut |_| n += 1) > 0 {}
        let c = a.fault_counters();
        assert_eq!(n as u64, 1000 - c.dropped + c.duplicated);
        assert!(c.dropped > 50 && c.duplicated > 50);
    }
}
