//! Congestion control, in bytes on the outside: CUBIC (RFC 9438, the default) and NewReno
//! (RFC 5681 with RFC 6582's recovery), chosen by `tcp.congestion`.
//!
//! Slow start is shared (RFC 5681 §3.1, with RFC 3465's byte counting limited to one MSS
//! per ACK). What differs is the window after a congestion event and its growth in
//! congestion avoidance: NewReno halves and adds one MSS per RTT; CUBIC keeps 70 % and
//! grows along W_cubic(t) = C·(t − K)³ + W_max, never slower than the Reno-friendly
//! estimate W_est.

use serde::{Deserialize, Serialize};

/// `tcp.congestion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Congestion {
    /// RFC 9438.
    #[default]
    Cubic,
    /// RFC 5681 / RFC 6582.
    Newreno,
}

/// RFC 9438 §4.1: C.
pub const CUBIC_C: f64 = 0.4;
/// RFC 9438 §4.6: β_cubic.
pub const CUBIC_BETA: f64 = 0.7;
/// RFC 9438 §4.3: α_cubic = 3(1 − β)/(1 + β).
pub const CUBIC_ALPHA: f64 = 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA);

/// W_cubic(t) of RFC 9438 §4.2, in segments, for `t` seconds since the epoch began.
pub fn w_cubic(t: f64, w_max: f64, k: f64) -> f64 {
    CUBIC_C * (t - k).powi(3) + w_max
}

/// K of RFC 9438 §4.2 (Eq. 2): the time W_cubic takes to climb from `cwnd_epoch` back to
/// `w_max`, in seconds.
pub fn cubic_k(w_max: f64, cwnd_epoch: f64) -> f64 {
    ((w_max - cwnd_epoch).max(0.0) / CUBIC_C).cbrt()
}

/// HyStart++ (RFC 9406 §4.3): the RTT rise that ends slow start is
/// max(MIN_RTT_THRESH, min(last round's min RTT / MIN_RTT_DIVISOR, MAX_RTT_THRESH)).
pub const HYSTART_MIN_RTT_THRESH_US: u32 = 4_000;
/// RFC 9406: MAX_RTT_THRESH.
pub const HYSTART_MAX_RTT_THRESH_US: u32 = 16_000;
/// RFC 9406: MIN_RTT_DIVISOR.
pub const HYSTART_MIN_RTT_DIVISOR: u32 = 8;
/// RFC 9406: N_RTT_SAMPLE, the RTT samples a round needs before it is judged.
pub const HYSTART_N_RTT_SAMPLE: u8 = 8;
/// RFC 9406: CSS_GROWTH_DIVISOR, how much slower Conservative Slow Start grows.
pub const HYSTART_CSS_GROWTH_DIVISOR: u32 = 4;
/// RFC 9406: CSS_ROUNDS, rounds of Conservative Slow Start before congestion avoidance.
pub const HYSTART_CSS_ROUNDS: u8 = 5;

/// Where HyStart++ is in a connection's first slow start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HyPhase {
    /// Not in use: disabled, or the first slow start is over (RFC 9406 runs it only for
    /// the initial slow start; later ones are standard).
    Off,
    /// Standard slow start, watching each round's minimum RTT.
    SlowStart,
    /// Conservative Slow Start: the RTT rose; growth at a quarter, for a few rounds.
    Css,
}

/// What the ACK did to HyStart++ (counters, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HyEvent {
    /// Nothing changed.
    None,
    /// The RTT rose by the threshold: slow start left for CSS.
    EnteredCss,
    /// CSS saw the RTT fall back below its baseline: the exit was spurious, slow start
    /// again.
    BackToSlowStart,
    /// CSS_ROUNDS rounds of CSS done: ssthresh set to cwnd, congestion avoidance.
    EnteredAvoidance,
}

/// HyStart++ state (RFC 9406), 20 bytes; RTTs in µs, `u32::MAX` for "infinity".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HyStart {
    phase: HyPhase,
    /// RTT samples this round.
    samples: u8,
    /// CSS rounds completed.
    css_rounds: u8,
    /// The round ends when this sequence number is acknowledged (SND.NXT at its start).
    window_end: Option<u32>,
    last_round_min: u32,
    cur_round_min: u32,
    css_baseline: u32,
}

/// One connection's congestion-control state beyond cwnd and ssthresh (which the
/// connection keeps); the NewReno connections carry the CUBIC part unused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cc {
    kind: Congestion,
    hy: HyStart,
    /// W_max in segments (0: no congestion event yet).
    w_max: f32,
    /// K in seconds for the current epoch.
    k: f32,
    /// W_est in segments (RFC 9438 §4.3).
    w_est: f32,
    /// Bytes acknowledged not yet credited to cwnd (growth below one MSS per ACK).
    credit: u32,
    /// Start of the congestion-avoidance epoch, µs on the engine clock (0: none).
    epoch_us: u64,
}

impl Cc {
    /// Fresh state, with HyStart++ in the first slow start if `hystart`.
    pub fn new(kind: Congestion) -> Cc {
        Cc::with_hystart(kind, false)
    }

    /// Fresh state; `hystart` turns HyStart++ on for the first slow start.
    pub fn with_hystart(kind: Congestion, hystart: bool) -> Cc {
        let hy = HyStart {
            phase: if hystart { HyPhase::SlowStart } else { HyPhase::Off },
            samples: 0,
            css_rounds: 0,
            window_end: None,
            last_round_min: u32::MAX,
            cur_round_min: u32::MAX,
            css_baseline: u32::MAX,
        };
        Cc { kind, hy, w_max: 0.0, k: 0.0, w_est: 0.0, credit: 0, epoch_us: 0 }
    }

    /// HyStart++'s phase.
    pub fn hystart_phase(&self) -> HyPhase {
        self.hy.phase
    }

    /// HyStart++ (RFC 9406 §4.2) on an ACK of new data in slow start, before
    /// [`on_ack`](Self::on_ack) grows the window: `ack` and `snd_nxt` delimit the rounds,
    /// `rtt_us` is this ACK's RTT sample if it gave one. Leaving CSS for congestion
    /// avoidance sets `*ssthresh` to `cwnd`.
    pub fn hystart_ack(
        &mut self,
        ack: u32,
        snd_nxt: u32,
        rtt_us: Option<u64>,
        cwnd: u32,
        ssthresh: &mut u32,
    ) -> HyEvent {
        let h = &mut self.hy;
        if h.phase == HyPhase::Off {
            return HyEvent::None;
        }
        if cwnd >= *ssthresh {
            h.phase = HyPhase::Off;
            return HyEvent::None;
        }
        let mut event = HyEvent::None;
        // A round ends when what was outstanding at its start is acknowledged.
        let round_over = h.window_end.is_none_or(|end| super::seq::ge(ack, end));
        if round_over {
            if h.phase == HyPhase::Css && h.window_end.is_some() {
                h.css_rounds += 1;
                if h.css_rounds >= HYSTART_CSS_ROUNDS {
                    *ssthresh = cwnd;
                    h.phase = HyPhase::Off;
                    return HyEvent::EnteredAvoidance;
                }
            }
            h.last_round_min = h.cur_round_min;
            h.cur_round_min = u32::MAX;
            h.samples = 0;
            h.window_end = Some(snd_nxt);
        }
        if let Some(r) = rtt_us {
            h.cur_round_min = h.cur_round_min.min(r.min(u64::from(u32::MAX - 1)) as u32);
            h.samples = h.samples.saturating_add(1);
        }
        if h.samples < HYSTART_N_RTT_SAMPLE || h.cur_round_min == u32::MAX {
            return event;
        }
        match h.phase {
            HyPhase::SlowStart if h.last_round_min != u32::MAX => {
                let thresh = (h.last_round_min / HYSTART_MIN_RTT_DIVISOR)
                    .clamp(HYSTART_MIN_RTT_THRESH_US, HYSTART_MAX_RTT_THRESH_US);
                if u64::from(h.cur_round_min) >= u64::from(h.last_round_min) + u64::from(thresh) {
                    h.css_baseline = h.cur_round_min;
                    h.css_rounds = 0;
                    h.phase = HyPhase::Css;
                    event = HyEvent::EnteredCss;
                }
            }
            HyPhase::Css if h.cur_round_min < h.css_baseline => {
                // The rise did not last: the exit was spurious.
                h.css_baseline = u32::MAX;
                h.phase = HyPhase::SlowStart;
                event = HyEvent::BackToSlowStart;
            }
            _ => {}
        }
        event
    }

    /// The algorithm.
    pub fn kind(&self) -> Congestion {
        self.kind
    }

    /// W_max in segments (tests, diagnostics).
    pub fn w_max(&self) -> f64 {
        f64::from(self.w_max)
    }

    /// K in seconds (tests).
    pub fn k(&self) -> f64 {
        f64::from(self.k)
    }

    /// cwnd after `acked` new bytes were acknowledged outside loss recovery.
    /// `now_us` is the engine clock, `rtt_us` the smoothed RTT (0 if unknown).
    pub fn on_ack(&mut self, cwnd: u32, ssthresh: u32, acked: u32, mss: u32, now_us: u64, rtt_us: u64) -> u32 {
        if cwnd < ssthresh {
            // Slow start: one MSS per ACK at most (RFC 5681 §3.1, RFC 3465 L = 1); in
            // HyStart++'s Conservative Slow Start a quarter of that (RFC 9406 §4.2).
            let step = match self.hy.phase {
                HyPhase::Css => (acked.min(mss) / HYSTART_CSS_GROWTH_DIVISOR).max(1),
                _ => acked.min(mss),
            };
            return cwnd.saturating_add(step).min(ssthresh.max(cwnd + 1));
        }
        match self.kind {
            Congestion::Newreno => {
                // One MSS per RTT: credit bytes until a whole cwnd's worth has been acked.
                self.credit = self.credit.saturating_add(acked);
                if self.credit >= cwnd {
                    self.credit -= cwnd;
                    cwnd.saturating_add(mss)
                } else {
                    cwnd
                }
            }
            Congestion::Cubic => self.cubic_ack(cwnd, acked, mss, now_us, rtt_us),
        }
    }

    fn cubic_ack(&mut self, cwnd: u32, acked: u32, mss: u32, now_us: u64, rtt_us: u64) -> u32 {
        let mss_f = f64::from(mss);
        let w = f64::from(cwnd) / mss_f;
        if self.epoch_us == 0 {
            // A new epoch (RFC 9438 §4.2): after a congestion event, or on leaving slow
            // start without one (then W_max is the current window and K is 0).
            self.epoch_us = now_us.max(1);
            if f64::from(self.w_max) < w {
                self.w_max = w as f32;
            }
            self.k = cubic_k(f64::from(self.w_max), w) as f32;
            self.w_est = w as f32;
            self.credit = 0;
        }
        let t = now_us.saturating_sub(self.epoch_us) as f64 / 1e6;
        let rtt = rtt_us as f64 / 1e6;
        let (w_max, k) = (f64::from(self.w_max), f64::from(self.k));
        // §4.3: the Reno-friendly estimate; α becomes 1 once it passes W_max.
        let alpha = if f64::from(self.w_est) >= w_max { 1.0 } else { CUBIC_ALPHA };
        self.w_est += (alpha * f64::from(acked) / mss_f / w) as f32;
        let cubic = w_cubic(t, w_max, k);
        let next = if cubic < f64::from(self.w_est) {
            // Reno-friendly region (§4.3).
            f64::from(self.w_est)
        } else {
            // Concave and convex regions (§4.4, §4.5): aim for W_cubic(t + RTT), no
            // more than 1.5 × cwnd, adding (target − cwnd)/cwnd per acked segment.
            let target = w_cubic(t + rtt, w_max, k).clamp(w, 1.5 * w);
            w + (target - w) / w * (f64::from(acked) / mss_f)
        };
        let bytes = (next * mss_f) as u64;
        bytes.clamp(u64::from(cwnd), u64::from(u32::MAX / 2)) as u32
    }

    /// Sending resumes after the connection was idle (nothing in flight): CUBIC starts a
    /// new epoch from the current window rather than jumping along the old curve
    /// (RFC 9438 §5.8).
    pub fn restart(&mut self) {
        self.epoch_us = 0;
    }

    /// ssthresh after a congestion event (loss detected, or an RTO) with window `cwnd`
    /// and `flight` bytes outstanding; updates W_max (with fast convergence, §4.7) and
    /// ends the epoch.
    pub fn on_congestion(&mut self, cwnd: u32, flight: u32, mss: u32) -> u32 {
        self.credit = 0;
        // A loss ends HyStart++ (RFC 9406 §4.2: loss in slow start or CSS means
        // congestion avoidance, and later slow starts are standard).
        self.hy.phase = HyPhase::Off;
        match self.kind {
            Congestion::Newreno => (flight / 2).max(2 * mss),
            Congestion::Cubic => {
                let w = f64::from(cwnd) / f64::from(mss);
                self.w_max = if w < f64::from(self.w_max) { (w * (1.0 + CUBIC_BETA) / 2.0) as f32 } else { w as f32 };
                self.epoch_us = 0;
                ((f64::from(cwnd) * CUBIC_BETA) as u32).max(2 * mss)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u32 = 1000;

    /// Drives one ACK per segment, a window per RTT, and returns cwnd (segments) after
    /// `secs` seconds of congestion avoidance following a loss at `w0` segments.
    fn cubic_after(w0: u32, secs: f64, rtt_us: u64) -> (f64, Cc) {
        let mut cc = Cc::new(Congestion::Cubic);
        let ssthresh = cc.on_congestion(w0 * MSS, w0 * MSS, MSS);
        assert_eq!(ssthresh, (f64::from(w0 * MSS) * CUBIC_BETA) as u32, "β = 0.7 (§4.6)");
        let mut cwnd = ssthresh;
        let mut now = 1_000_000u64;
        let end = now + (secs * 1e6) as u64;
        while now < end {
            let segs = cwnd / MSS;
            for i in 0..segs {
                cwnd = cc.on_ack(cwnd, ssthresh, MSS, MSS, now + rtt_us * u64::from(i) / u64::from(segs), rtt_us);
            }
            now += rtt_us;
        }
        (f64::from(cwnd) / f64::from(MSS), cc)
    }

    #[test]
    fn cubic_k_and_w_max_follow_the_rfc() {
        // W_max = 100 segments, cwnd_epoch = 70: K = cbrt(30 / 0.4) = 4.217 s.
        assert!((cubic_k(100.0, 70.0) - 4.2172).abs() < 1e-3);
        let (_, cc) = cubic_after(100, 0.001, 10_000);
        assert_eq!(cc.w_max(), 100.0);
        assert!((cc.k() - 4.2172).abs() < 1e-3, "{}", cc.k());
        // Fast convergence (§4.7): a second loss below W_max remembers less.
        let mut cc = Cc::new(Congestion::Cubic);
        cc.on_congestion(100 * MSS, 100 * MSS, MSS);
        cc.on_congestion(80 * MSS, 80 * MSS, MSS);
        assert!((cc.w_max() - 80.0 * 1.7 / 2.0).abs() < 1e-3);
    }

    #[test]
    fn cubic_window_tracks_w_cubic_at_chosen_times() {
        // After a loss at 1000 segments with a 100 ms RTT, the window follows
        // W_cubic(t + RTT) (concave below K ≈ 6.69 s, plateau at K, convex beyond), and
        // never falls below the Reno-friendly W_est.
        let rtt = 100_000;
        let k = cubic_k(1000.0, 700.0);
        for t in [1.0, 3.0, k, 8.0, 10.0] {
            let (w, cc) = cubic_after(1000, t, rtt);
            let expect = w_cubic(t, 1000.0, k);
            let err = (w - expect).abs() / expect;
            assert!(err < 0.03, "t = {t:.2} s: cwnd {w:.1} segments, W_cubic {expect:.1} ({:.1} %)", err * 100.0);
            assert!(w >= f64::from(cc.w_est) - 1.0);
        }
    }

    #[test]
    fn reno_friendly_region_at_short_rtt() {
        // At a 1 ms RTT and a small window CUBIC grows no slower than Reno would: W_est
        // climbs from 7 to W_max = 10 at α_cubic per RTT, then one segment per RTT, so after
        // 2 s (2000 RTTs) it is ≈ 10 + 2000 − 3/α ≈ 2004 segments; W_cubic(2 s) ≈ 10.
        let (w, _) = cubic_after(10, 2.0, 1000);
        let w_est = 10.0 + 2000.0 - 3.0 / CUBIC_ALPHA;
        assert!((w - w_est).abs() / w_est < 0.05, "cwnd {w:.0}, W_est {w_est:.0}");
    }

    #[test]
    fn newreno_halves_and_adds_one_mss_per_rtt() {
        let mut cc = Cc::new(Congestion::Newreno);
        assert_eq!(cc.on_congestion(40 * MSS, 40 * MSS, MSS), 20 * MSS);
        let mut cwnd = 20 * MSS;
        for _ in 0..3 {
            for _ in 0..cwnd / MSS {
                cwnd = cc.on_ack(cwnd, 20 * MSS, MSS, MSS, 0, 0);
            }
        }
        assert_eq!(cwnd, 23 * MSS);
        // Slow start below ssthresh: one MSS per ACK.
        assert_eq!(cc.on_ack(2 * MSS, 20 * MSS, 5 * MSS, MSS, 0, 0), 3 * MSS);
    }

    /// One round of HyStart++: `acks` ACKs of one MSS each, every one with an RTT sample
    /// of `rtt_us`, in slow start (ssthresh "infinite"); the round ends when `end` is
    /// acknowledged. Returns the events seen.
    fn hy_round(cc: &mut Cc, cwnd: &mut u32, ssthresh: &mut u32, una: &mut u32, rtt_us: u64) -> Vec<HyEvent> {
        let mut events = Vec::new();
        let segs = *cwnd / MSS;
        let snd_nxt = una.wrapping_add(*cwnd);
        for _ in 0..segs {
            *una = una.wrapping_add(MSS);
            let ev = cc.hystart_ack(*una, snd_nxt, Some(rtt_us), *cwnd, ssthresh);
            if ev != HyEvent::None {
                events.push(ev);
            }
            *cwnd = cc.on_ack(*cwnd, *ssthresh, MSS, MSS, 0, rtt_us);
        }
        events
    }

    #[test]
    fn hystart_leaves_slow_start_when_the_rtt_rises_and_enters_avoidance_after_css_rounds() {
        let mut cc = Cc::with_hystart(Congestion::Cubic, true);
        let (mut cwnd, mut ssthresh, mut una) = (10 * MSS, u32::MAX, 0u32);
        // Rounds at a steady 20 ms RTT: standard slow start, the window doubles.
        for _ in 0..3 {
            let before = cwnd;
            assert!(hy_round(&mut cc, &mut cwnd, &mut ssthresh, &mut una, 20_000).is_empty());
            assert_eq!(cwnd, 2 * before, "slow start doubles per round");
        }
        assert_eq!(cc.hystart_phase(), HyPhase::SlowStart);
        // A rise below the threshold (max(4 ms, 20/8 ms) = 4 ms) is ignored.
        assert!(hy_round(&mut cc, &mut cwnd, &mut ssthresh, &mut una, 23_900).is_empty());
        // Round minimum 23.9 ms; the next one 4 ms above it: CSS on the 8th sample.
        let before = cwnd;
        let ev = hy_round(&mut cc, &mut cwnd, &mut ssthresh, &mut una, 27_900);
        assert_eq!(ev, vec![HyEvent::EnteredCss]);
        assert_eq!(cc.hystart_phase(), HyPhase::Css);
        // Seven ACKs at one MSS each; from the eighth, which ends slow start, a quarter.
        let segs = before / MSS;
        assert_eq!(cwnd, before + 7 * MSS + (segs - 7) * (MSS / HYSTART_CSS_GROWTH_DIVISOR));
        // CSS rounds at the same RTT: growth at a quarter, then congestion avoidance with
        // ssthresh = cwnd after CSS_ROUNDS rounds.
        let mut events = Vec::new();
        for _ in 0..HYSTART_CSS_ROUNDS {
            events.extend(hy_round(&mut cc, &mut cwnd, &mut ssthresh, &mut una, 28_000));
        }
        assert_eq!(events, vec![HyEvent::EnteredAvoidance]);
        assert_eq!(cc.hystart_phase(), HyPhase::Off);
        assert!(ssthresh <= cwnd && ssthresh > 10 * MSS, "ssthresh {ssthresh}, cwnd {cwnd}");
    }

    #[test]
    fn hystart_goes_back_to_slow_start_when_the_rise_does_not_last() {
        let mut cc = Cc::with_hystart(Congestion::Cubic, true);
        let (mut cwnd, mut ssthresh, mut una) = (10 * MSS, u32::MAX, 0u32);
        hy_round(&mut cc, &mut cwnd, &mut ssthresh, &mut una, 40_000);
        hy_round(&mut cc, &mut cwnd, &mut ssthresh, &mut una, 40_000);
        // 40 ms / 8 = 5 ms threshold.
        assert_eq!(hy_round(&mut cc, &mut cwnd, &mut ssthresh, &mut una, 45_000), vec![HyEvent::EnteredCss]);
        // The next round's minimum is below the 45 ms baseline: back to slow start.
        assert_eq!(hy_round(&mut cc, &mut cwnd, &mut ssthresh, &mut una, 41_000), vec![HyEvent::BackToSlowStart]);
        assert_eq!(cc.hystart_phase(), HyPhase::SlowStart);
        assert_eq!(ssthresh, u32::MAX);
        let before = cwnd;
        hy_round(&mut cc, &mut cwnd, &mut ssthresh, &mut una, 41_000);
        assert_eq!(cwnd, 2 * before, "standard slow start again");
    }

    #[test]
    fn hystart_needs_eight_samples_and_ends_with_the_first_loss() {
        // Rounds of fewer than N_RTT_SAMPLE samples are never judged.
        let mut cc = Cc::with_hystart(Congestion::Cubic, true);
        let (mut cwnd, mut ssthresh, mut una) = (4 * MSS, u32::MAX, 0u32);
        hy_round(&mut cc, &mut cwnd, &mut ssthresh, &mut una, 10_000);
        assert_eq!(cwnd, 8 * MSS);
        // 4 samples in the first round, 8 in this one: judged, 10 → 100 ms is a rise.
        assert_eq!(hy_round(&mut cc, &mut cwnd, &mut ssthresh, &mut una, 100_000), Vec::<HyEvent>::new());
        assert_eq!(cc.hystart_phase(), HyPhase::SlowStart, "the first round had 4 samples: no baseline yet");
        let _ = cc.on_congestion(cwnd, cwnd, MSS);
        assert_eq!(cc.hystart_phase(), HyPhase::Off);
        // Off: rises change nothing, and growth is standard.
        ssthresh = u32::MAX;
        for rtt in [10_000, 200_000, 400_000] {
            let before = cwnd;
            assert!(hy_round(&mut cc, &mut cwnd, &mut ssthresh, &mut una, rtt).is_empty());
            assert_eq!(cwnd, 2 * before);
        }
        // Disabled from the start: the same.
        let mut cc = Cc::with_hystart(Congestion::Cubic, false);
        assert_eq!(cc.hystart_phase(), HyPhase::Off);
        let (mut cwnd, mut ssthresh, mut una) = (10 * MSS, u32::MAX, 0u32);
        hy_round(&mut cc, &mut cwnd, &mut ssthresh, &mut una, 10_000);
        assert!(hy_round(&mut cc, &mut cwnd, &mut ssthresh, &mut una, 100_000).is_empty());
    }
}
