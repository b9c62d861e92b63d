//! A hashed timer wheel with millisecond ticks.
//!
//! Each connection keeps at most one live entry: the tick of its earliest deadline.
//! Entries are not removed when a deadline moves; a popped entry whose tick no longer
//! matches the connection's scheduled tick is stale and skipped by the caller. Deadlines
//! beyond one revolution stay in their slot until their tick comes round. Advancing
//! visits the occupied slots among those of the elapsed ticks (at most one revolution
//! per call; a bitmap skips empty ones 64 at a time): no scan of all connections, ever.

/// Milliseconds since the engine's epoch.
pub type Tick = u64;

/// The wheel.
pub struct Wheel {
    slots: Vec<Vec<(u32, Tick)>>,
    now: Tick,
    /// Entries held (stale ones included): an empty wheel advances at once.
    len: usize,
    /// One bit per slot: set while the slot holds entries.
    occupied: [u64; SLOTS / 64],
}

const SLOTS: usize = 4096;

impl Wheel {
    /// An empty wheel at tick `now`.
    pub fn new(now: Tick) -> Wheel {
        Wheel { slots: (0..SLOTS).map(|_| Vec::new()).collect(), now, len: 0, occupied: [0; SLOTS / 64] }
    }

    /// Schedules `id` at `at` (past ticks fire on the next advance); returns the tick
    /// the entry carries, which is what [`advance`](Self::advance) will report.
    pub fn schedule(&mut self, id: u32, at: Tick) -> Tick {
        let at = at.max(self.now + 1);
        let slot = (at % SLOTS as u64) as usize;
        self.slots[slot].push((id, at));
        self.occupied[slot / 64] |= 1 << (slot % 64);
        self.len += 1;
        at
    }

    /// Moves to tick `to`, calling `due(id, tick)` for every entry whose tick has come.
    pub fn advance(&mut self, to: Tick, mut due: impl FnMut(u32, Tick)) {
        if to <= self.now {
            return;
        }
        let steps = (to - self.now).min(SLOTS as u64);
        let mut keep = Vec::new();
        let mut i = 1;
        while i <= steps && self.len > 0 {
            let slot = ((self.now + i) % SLOTS as u64) as usize;
            let above = self.occupied[slot / 64] >> (slot % 64);
            if above == 0 {
                i += 64 - (slot % 64) as u64; // the rest of this word is empty
                continue;
            }
            let skip = u64::from(above.trailing_zeros());
            if skip > 0 {
                i += skip;
                continue;
            }
            i += 1;
            let entries = std::mem::take(&mut self.slots[slot]);
            for (id, at) in entries {
                if at <= to {
                    self.len -= 1;
                    due(id, at);
                } else {
                    keep.push((id, at));
                }
            }
            self.slots[slot].append(&mut keep);
            if self.slots[slot].is_empty() {
                self.occupied[slot / 64] &= !(1 << (slot % 64));
            }
        }
        self.now = to;
    }

    /// The first tick within `within` ticks from now at which an entry is due (stale
    /// entries count: the wake-up they cause finds nothing to do). Looks at `within`
    /// slots at most, so it is cheap for the short horizon of a loop's sleep.
    pub fn next_within(&self, within: Tick) -> Option<Tick> {
        if self.len == 0 {
            return None;
        }
        (1..=within.min(SLOTS as u64))
            .map(|i| self.now + i)
            .find(|&tick| self.slots[(tick % SLOTS as u64) as usize].iter().any(|&(_, at)| at <= tick))
    }

    /// The current tick.
    pub fn now(&self) -> Tick {
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_due_tick_is_found_within_a_short_horizon() {
        let mut w = Wheel::new(100);
        assert_eq!(w.next_within(10), None);
        w.schedule(1, 103);
        w.schedule(2, 100 + 4096 + 2); // a revolution away: same slot family, not due
        assert_eq!(w.next_within(10), Some(103));
        assert_eq!(w.next_within(2), None, "beyond the horizon");
        w.advance(103, |_, _| {});
        assert_eq!(w.next_within(10), None, "the far entry shares slot 102 but is not due");
    }

    #[test]
    fn fires_in_time_including_far_deadlines() {
        let mut w = Wheel::new(0);
        w.schedule(1, 5);
        w.schedule(2, 5000);
        w.schedule(3, 10);
        let mut got = Vec::new();
        w.advance(4, |id, _| got.push(id));
        assert!(got.is_empty());
        w.advance(10, |id, _| got.push(id));
        assert_eq!(got, [1, 3]);
        got.clear();
        w.advance(4999, |id, _| got.push(id));
        assert!(got.is_empty(), "a deadline one revolution away waits its turn");
        w.advance(5000, |id, _| got.push(id));
        assert_eq!(got, [2]);
    }

    #[test]
    fn a_long_jump_still_fires_everything_due() {
        let mut w = Wheel::new(0);
        for i in 0..100 {
            w.schedule(i, 1 + u64::from(i) * 97);
        }
        let mut n = 0;
        w.advance(1_000_000, |_, _| n += 1);
        assert_eq!(n, 100);
    }

    /// Every entry fires at its tick, never early, whatever the steps (checked against
    /// a plain list, with steps short and long, across word and revolution boundaries).
    #[test]
    fn fires_exactly_what_is_due_for_any_steps() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move |m: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % m
        };
        let mut w = Wheel::new(10);
        let mut pending: Vec<(u32, Tick)> = Vec::new();
        for id in 0..20_000u32 {
            if rnd(3) == 0 {
                let span = if rnd(4) == 0 { 20_000 } else { 200 };
                let at = w.now() + 1 + rnd(span);
                let at = w.schedule(id, at);
                pending.push((id, at));
            } else {
                let span = if rnd(8) == 0 { 10_000 } else { 70 };
                let to = w.now() + rnd(span);
                let mut got = Vec::new();
                w.advance(to, |id, at| got.push((id, at)));
                got.sort_unstable();
                let mut want: Vec<_> = pending.iter().copied().filter(|&(_, at)| at <= to).collect();
                want.sort_unstable();
                pending.retain(|&(_, at)| at > to);
                assert_eq!(got, want, "due by tick {to}");
            }
        }
    }
}
