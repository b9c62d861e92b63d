//! Selective acknowledgment: the sender's scoreboard (RFC 6675) with RACK's time-based
//! loss detection (RFC 8985), and the receiver's SACK blocks (RFC 2018, D-SACK RFC 2883).
//!
//! The scoreboard exists only while a SACK connection has data in flight: one record per
//! segment sent (sequence range, last transmission time, flags), in sequence order. An
//! idle connection holds none of it.

use std::collections::VecDeque;

use super::seq::{dist, ge, gt, le, lt};

/// The record was selectively acknowledged.
pub const SACKED: u8 = 1;
/// Marked lost, not retransmitted since.
pub const LOST: u8 = 2;
/// Retransmitted (the last transmission is a retransmission).
pub const RETRANS: u8 = 4;
/// The record's last sequence number is our FIN.
pub const FIN: u8 = 8;

/// One segment sent and not yet cumulatively acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// First sequence number.
    pub start: u32,
    /// One past the last (the FIN counts).
    pub end: u32,
    /// When it was last sent, µs on the engine clock.
    pub xmit_us: u64,
    /// Transmission order on this connection: many segments leave in one loop turn
    /// with the same timestamp, and RACK must still know which left first.
    pub order: u64,
    /// [`SACKED`], [`LOST`], [`RETRANS`], [`FIN`].
    pub flags: u8,
}

impl Sent {
    fn len(&self) -> u32 {
        dist(self.start, self.end)
    }
    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// RFC 8985's RACK.xmit_ts, RACK.end_seq and RACK.rtt: the most recently sent segment
/// known to be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rack {
    /// Its transmission time.
    pub xmit_us: u64,
    /// Its transmission order.
    pub order: u64,
    /// Its end.
    pub end: u32,
    /// The RTT measured by its delivery.
    pub rtt_us: u64,
}

/// What to restore if a recovery episode turns out to be spurious (D-SACK or the
/// timestamp echo says the retransmissions were not needed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Undo {
    /// cwnd before the episode.
    pub cwnd: u32,
    /// ssthresh before it.
    pub ssthresh: u32,
    /// Congestion-control state before it.
    pub cc: super::cc::Cc,
    /// Segments retransmitted in the episode not yet reported as duplicates.
    pub retrans: u32,
    /// Our TSval on the episode's first retransmission (0: no timestamps).
    pub ts: u32,
    /// The episode began with an RTO (else: fast recovery).
    pub rto: bool,
    /// SND.UNA when it began (Linux's undo_marker): only duplicates of data at or above
    /// it can be this episode's retransmissions.
    pub marker: u32,
    /// SND.MAX when it began: once that is acknowledged the episode is over.
    pub end: u32,
}

/// A tail loss probe in flight (RFC 8985 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlp {
    /// SND.MAX when the probe was sent.
    pub end: u32,
    /// The probe was a retransmission (else new data).
    pub retrans: bool,
}

/// The scoreboard of one connection.
#[derive(Debug, Default)]
pub struct Board {
    segs: VecDeque<Sent>,
    /// Bytes in SACKED records.
    pub sacked: u32,
    /// Bytes in LOST records.
    pub lost: u32,
    /// Highest SACKed sequence number (RACK.fack).
    pub fack: Option<u32>,
    /// RACK's state, once something was delivered.
    pub rack: Option<Rack>,
    /// The recovery episode's undo information.
    pub undo: Option<Undo>,
    /// The tail loss probe in flight.
    pub tlp: Option<Tlp>,
    /// SACKed records on the scoreboard (RFC 8985's DupThresh test, Linux's sacked_out).
    pub sacked_segs: u32,
    /// The next transmission's order.
    next_order: u64,
}

/// What one ACK told the scoreboard.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AckInfo {
    /// A D-SACK block arrived: (start, end).
    pub dsack: Option<(u32, u32)>,
    /// Newly SACKed bytes.
    pub newly_sacked: u32,
    /// The RTT of the newest never-retransmitted segment delivered by this ACK, µs.
    pub rtt_us: Option<u64>,
    /// A segment delivered below the highest SACKed one without having been
    /// retransmitted: the network reordered (RFC 8985 §6.2 step 3).
    pub reordered: bool,
}

/// Records a spare board may keep room for (a board that grew past it is dropped, not
/// kept for reuse).
const SPARE_SEGS_MAX: usize = 64;

impl Board {
    /// Empties the board for another flight, keeping its room for records; `None` if
    /// that room is past what a spare should hold.
    pub fn recycled(mut self: Box<Self>) -> Option<Box<Self>> {
        if self.segs.capacity() > SPARE_SEGS_MAX {
            return None;
        }
        let mut segs = std::mem::take(&mut self.segs);
        segs.clear();
        *self = Board { segs, ..Board::default() };
        Some(self)
    }

    /// Records sent and not cumulatively acknowledged.
    pub fn len(&self) -> usize {
        self.segs.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// The records (tests, diagnostics).
    pub fn records(&self) -> std::collections::vec_deque::Iter<'_, Sent> {
        self.segs.iter()
    }

    /// Records new data `start..end` sent at `now_us`.
    pub fn sent_new(&mut self, start: u32, end: u32, now_us: u64, fin: bool) {
        if let Some(last) = self.segs.back() {
            debug_assert!(le(last.end, start), "new data after the last record");
        }
        let order = self.next_order;
        self.next_order += 1;
        self.segs.push_back(Sent { start, end, xmit_us: now_us, order, flags: if fin { FIN } else { 0 } });
    }

    /// The first LOST record (the next to retransmit): its index.
    pub fn next_lost(&self) -> Option<usize> {
        if self.lost == 0 {
            return None;
        }
        self.segs.iter().position(|s| s.has(LOST))
    }

    /// Record `i` as the caller is about to retransmit it.
    pub fn get(&self, i: usize) -> Sent {
        self.segs[i]
    }

    /// The last record (the TLP retransmits it when there is no new data).
    pub fn last(&self) -> Option<usize> {
        self.segs.len().checked_sub(1)
    }

    /// Record `i` was retransmitted at `now_us`.
    pub fn retransmitted(&mut self, i: usize, now_us: u64) {
        let s = &mut self.segs[i];
        if s.has(LOST) {
            self.lost -= s.len();
        }
        s.flags = (s.flags & !LOST) | RETRANS;
        s.xmit_us = now_us;
        s.order = self.next_order;
        self.next_order += 1;
        let (start, end) = (s.start, s.end);
        if let Some(u) = self.undo.as_mut().filter(|u| ge(start, u.marker) && le(end, u.end)) {
            // One of the episode's own retransmissions (not a later probe's).
            u.retrans += 1;
        }
    }

    /// Bytes of the flight not known to have left the network (RFC 6675's pipe, as
    /// Linux counts it: outstanding minus SACKed minus lost-not-retransmitted).
    pub fn pipe(&self, flight: u32) -> u32 {
        flight.saturating_sub(self.sacked + self.lost)
    }

    /// A cumulative ACK up to `una`: drops the records it covers.
    pub fn ack(&mut self, una: u32, now_us: u64, min_rtt_us: u64, info: &mut AckInfo) {
        while let Some(s) = self.segs.front_mut() {
            if le(s.end, una) {
                let s = self.segs.pop_front().expect("front");
                if s.has(SACKED) {
                    self.sacked -= s.len();
                    self.sacked_segs -= 1;
                } else {
                    if s.has(LOST) {
                        self.lost -= s.len();
                    }
                    self.delivered(&s, now_us, min_rtt_us, info);
                }
            } else if lt(s.start, una) {
                // ACK inside a record (the peer acknowledged part of a segment).
                let cut = dist(s.start, una);
                s.start = una;
                if s.has(SACKED) {
                    self.sacked -= cut;
                } else if s.has(LOST) {
                    self.lost -= cut;
                }
                break;
            } else {
                break;
            }
        }
    }

    /// The SACK blocks of one ACK (after its cumulative part, `una`).
    pub fn sack(&mut self, blocks: &[(u32, u32)], una: u32, now_us: u64, min_rtt_us: u64, info: &mut AckInfo) {
        for (i, &(l, r)) in blocks.iter().enumerate() {
            if !lt(l, r) {
                continue;
            }
            // RFC 2883 §4: a first block below the cumulative ACK, or inside the second
            // block, reports a duplicate.
            if i == 0 && (le(r, una) || blocks.get(1).is_some_and(|&(l2, r2)| ge(l, l2) && le(r, r2) && lt(l2, r2))) {
                info.dsack = Some((l, r));
                continue;
            }
            // Mark the records the block covers whole (block edges fall on the segment
            // edges we sent; a record partly covered stays unSACKed).
            let first = self.segs.partition_point(|s| lt(s.start, l));
            for idx in first..self.segs.len() {
                let s = self.segs[idx];
                if gt(s.end, r) {
                    break;
                }
                if s.has(SACKED) {
                    continue;
                }
                let s = &mut self.segs[idx];
                if s.has(LOST) {
                    self.lost -= s.len();
                }
                s.flags = (s.flags & !LOST) | SACKED;
                let s = *s;
                self.sacked += s.len();
                self.sacked_segs += 1;
                info.newly_sacked += s.len();
                if self.fack.is_none_or(|f| gt(s.end, f)) {
                    self.fack = Some(s.end);
                }
                self.delivered(&s, now_us, min_rtt_us, info);
            }
        }
    }

    /// RFC 8985 §6.2 steps 1–3 for one delivered record.
    fn delivered(&mut self, s: &Sent, now_us: u64, min_rtt_us: u64, info: &mut AckInfo) {
        let rtt = now_us.saturating_sub(s.xmit_us);
        if s.has(RETRANS) && rtt < min_rtt_us {
            // Delivered faster than any round trip: the original, not the retransmission.
            return;
        }
        if !s.has(RETRANS) {
            if self.fack.is_some_and(|f| lt(s.end, f)) {
                info.reordered = true;
            }
            info.rtt_us = Some(rtt);
        }
        if self.rack.is_none_or(|r| s.order > r.order) {
            self.rack = Some(Rack { xmit_us: s.xmit_us, order: s.order, end: s.end, rtt_us: rtt });
        }
    }

    /// RFC 8985 §6.2 step 5: marks LOST every record sent before the newest delivered
    /// one and outstanding longer than RACK.rtt + `reo_wnd_us`. Returns whether any was
    /// newly marked and, for the others sent before it, when the next one would expire
    /// (the reordering timer).
    pub fn detect_loss(&mut self, now_us: u64, reo_wnd_us: u64) -> (bool, Option<u64>) {
        let Some(rack) = self.rack else { return (false, None) };
        let (mut marked, mut timeout) = (false, None::<u64>);
        for s in self.segs.iter_mut() {
            if s.has(SACKED) || s.has(LOST) {
                continue;
            }
            if s.order >= rack.order {
                continue;
            }
            let deadline = s.xmit_us + rack.rtt_us + reo_wnd_us;
            if now_us >= deadline {
                s.flags = (s.flags & !RETRANS) | LOST;
                self.lost += dist(s.start, s.end);
                marked = true;
            } else {
                let left = deadline - now_us;
                timeout = Some(timeout.map_or(left, |t| t.max(left)));
            }
        }
        (marked, timeout)
    }

    /// Marks record `i` lost (the tail loss probe resends it).
    pub fn mark_lost(&mut self, i: usize) {
        let s = &mut self.segs[i];
        if !s.has(LOST) && !s.has(SACKED) {
            s.flags = (s.flags & !RETRANS) | LOST;
            self.lost += s.len();
        }
    }

    /// An RTO: every record not SACKed is lost (RFC 6675 §5.1, as Linux does).
    pub fn mark_all_lost(&mut self) {
        for s in self.segs.iter_mut() {
            if !s.has(SACKED) && !s.has(LOST) {
                s.flags = (s.flags & !RETRANS) | LOST;
                self.lost += dist(s.start, s.end);
            }
        }
    }

    /// The head record is SACKed though nothing acknowledged it cumulatively: the
    /// receiver reneged (RFC 2018 §8); forget every SACK.
    pub fn renege_check(&mut self) -> bool {
        if !self.segs.front().is_some_and(|s| s.has(SACKED)) {
            return false;
        }
        for s in self.segs.iter_mut() {
            s.flags &= !SACKED;
        }
        self.sacked = 0;
        self.sacked_segs = 0;
        self.fack = None;
        true
    }

    /// A spurious episode was undone: what was marked lost is in flight after all.
    pub fn unmark_lost(&mut self) {
        for s in self.segs.iter_mut() {
            s.flags &= !LOST;
        }
        self.lost = 0;
    }
}

/// The SACK blocks for an ACK (RFC 2018 §4, RFC 2883): a pending D-SACK first, then the
/// block holding the most recently received segment (`last`), then the others from the
/// highest down. `ooo` is the out-of-order queue, sorted by start.
pub fn blocks(ooo: &[(u32, Vec<u8>)], last: Option<u32>, dsack: Option<(u32, u32)>) -> [Option<(u32, u32)>; 3] {
    let mut merged: [(u32, u32); 8] = [(0, 0); 8];
    let mut n = 0;
    let mut out = [None; 3];
    let mut k = 0;
    if let Some(d) = dsack {
        out[0] = Some(d);
        k = 1;
    }
    for (s, d) in ooo {
        let e = s.wrapping_add(d.len() as u32);
        if n > 0 && le(*s, merged[n - 1].1) {
            if gt(e, merged[n - 1].1) {
                merged[n - 1].1 = e;
            }
        } else if n < merged.len() {
            merged[n] = (*s, e);
            n += 1;
        } else {
            // Beyond eight ranges only the lowest ones are reported; the rest wait.
            break;
        }
    }
    let merged = &merged[..n];
    let recent = last.and_then(|l| merged.iter().position(|&(s, e)| le(s, l) && lt(l, e)));
    if let Some(i) = recent {
        out[k] = Some(merged[i]);
        k += 1;
    }
    for (i, b) in merged.iter().enumerate().rev() {
        if k == out.len() {
            break;
        }
        if Some(i) != recent {
            out[k] = Some(*b);
            k += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(n: u32) -> Board {
        let mut b = Board::default();
        for i in 0..n {
            b.sent_new(1000 + i * 100, 1100 + i * 100, u64::from(i) * 10, false);
        }
        b
    }

    #[test]
    fn a_recycled_board_is_empty_and_keeps_its_room_unless_it_grew_large() {
        let mut b = Box::new(board(4));
        let mut info = AckInfo::default();
        b.sack(&[(1100, 1200)], 1000, 50, 10, &mut info);
        assert!(b.sacked > 0 && b.fack.is_some());
        let room = b.segs.capacity();
        let r = b.recycled().expect("a small board is kept");
        assert_eq!((r.len(), r.sacked, r.lost, r.fack, r.sacked_segs, r.next_order), (0, 0, 0, None, 0, 0));
        assert!(r.rack.is_none() && r.undo.is_none() && r.tlp.is_none());
        assert_eq!(r.segs.capacity(), room);
        assert!(Box::new(board(SPARE_SEGS_MAX as u32 + 1)).recycled().is_none());
    }

    #[test]
    fn blocks_put_the_newest_first_then_the_highest() {
        let ooo = vec![(200, vec![0; 100]), (300, vec![0; 50]), (500, vec![0; 100]), (800, vec![0; 10])];
        // 200..350 merged; the newest arrival (at 500) first; then 800.., then 200..350.
        assert_eq!(blocks(&ooo, Some(500), None), [Some((500, 600)), Some((800, 810)), Some((200, 350))]);
        // A D-SACK goes first and pushes the lowest out.
        assert_eq!(blocks(&ooo, Some(300), Some((50, 100))), [Some((50, 100)), Some((200, 350)), Some((800, 810))]);
        assert_eq!(blocks(&[], None, None), [None; 3]);
    }

    #[test]
    fn scoreboard_counts_sacked_and_lost_bytes() {
        let mut b = board(5); // 1000..1500 in five records sent at 0, 10, .. 40 µs
        let mut info = AckInfo::default();
        // Segments 3 and 4 (1200..1400) arrive; 1 and 2 do not.
        b.sack(&[(1200, 1400)], 1000, 100, 0, &mut info);
        assert_eq!((b.sacked, info.newly_sacked, b.fack), (200, 200, Some(1400)));
        assert_eq!(b.rack.map(|r| (r.xmit_us, r.end, r.rtt_us)), Some((30, 1400, 70)));
        // RACK: records sent before 30 µs and older than rtt + reo_wnd are lost.
        assert_eq!(b.detect_loss(100, 0), (true, None));
        assert_eq!(b.lost, 200);
        assert_eq!(b.pipe(500), 100, "only the last record is still in the network");
        assert_eq!(b.next_lost(), Some(0));
        b.retransmitted(0, 110);
        assert_eq!((b.lost, b.next_lost()), (100, Some(1)));
        // The cumulative ACK passes the SACKed range.
        let mut info = AckInfo::default();
        b.retransmitted(1, 111);
        b.ack(1400, 200, 50, &mut info);
        assert_eq!((b.len(), b.sacked, b.lost), (1, 0, 0));
        assert_eq!(info.rtt_us, None, "only retransmitted records were delivered: no RTT sample (Karn)");
    }

    #[test]
    fn rack_waits_a_reordering_window() {
        let mut b = board(3);
        let mut info = AckInfo::default();
        b.sack(&[(1200, 1300)], 1000, 100, 0, &mut info);
        // The delivered record's RTT is 80 µs: record 0 (sent at 0) is due at 80 + 50,
        // record 1 (sent at 10) at 140; the timer waits for the later (RFC 8985 §6.2).
        assert_eq!(b.detect_loss(100, 50), (false, Some(40)));
        assert_eq!(b.detect_loss(130, 50), (true, Some(10)));
        assert_eq!(b.lost, 100);
        assert_eq!(b.detect_loss(140, 50), (true, None));
        assert_eq!(b.lost, 200);
    }

    #[test]
    fn reordering_and_dsack_are_recognised() {
        let mut b = board(3);
        let mut info = AckInfo::default();
        b.sack(&[(1200, 1300)], 1000, 100, 0, &mut info);
        assert!(!info.reordered);
        // The first record arrives late, never retransmitted: reordering, not loss.
        let mut info = AckInfo::default();
        b.ack(1100, 120, 0, &mut info);
        assert!(info.reordered);
        // A block below the cumulative ACK is a D-SACK.
        let mut info = AckInfo::default();
        b.sack(&[(1000, 1100), (1200, 1300)], 1100, 130, 0, &mut info);
        assert_eq!(info.dsack, Some((1000, 1100)));
        // So is a first block inside the second.
        let mut info = AckInfo::default();
        b.sack(&[(1200, 1300), (1200, 1300)], 1100, 130, 0, &mut info);
        assert_eq!(info.dsack, Some((1200, 1300)));
    }

    #[test]
    fn rto_marks_all_but_sacked_and_reneging_clears() {
        let mut b = board(4);
        let mut info = AckInfo::default();
        b.sack(&[(1100, 1200)], 1000, 100, 0, &mut info);
        b.mark_all_lost();
        assert_eq!((b.lost, b.sacked), (300, 100));
        assert!(!b.renege_check());
        let mut b = board(2);
        b.sack(&[(1000, 1100)], 1000, 100, 0, &mut AckInfo::default());
        assert!(b.renege_check());
        assert_eq!(b.sacked, 0);
    }
}
