//! Loss recovery: SACK blocks and D-SACK from the receiver, the sender's scoreboard,
//! RACK's reordering window, tail loss probes, undo of spurious episodes, keep-alive,
//! SYN cookies that keep their options; then the whole engine against itself under
//! seeded loss, with and without SACK.

use super::*;

const MSS: usize = 1460;

/// Handshake offering SACK (and timestamps if `ts`); returns the server's ISS and what
/// it sent after the final ACK (its greeting).
fn sack_handshake(s: &mut Script, ts: bool) -> (u32, Vec<Owned>) {
    let mut syn = cseg(1000, None);
    syn.syn = true;
    syn.mss = Some(1460);
    syn.wscale = Some(7);
    syn.sack_permitted = true;
    syn.ts = ts.then_some((100, 0));
    let out = s.inject(syn);
    let sa = out[0].clone();
    assert!(sa.syn && sa.sack_permitted, "SACK-permitted answered: {sa:?}");
    let mut ack = cseg(1001, Some(sa.seq.wrapping_add(1)));
    ack.ts = ts.then_some((101, sa.ts.map_or(0, |t| t.0)));
    let after = s.inject(ack);
    (sa.seq, after)
}

/// A client ACK with SACK blocks.
fn ack_with(ack: u32, blocks: &[(u32, u32)]) -> Owned {
    let mut a = cseg(1001, Some(ack));
    for (i, b) in blocks.iter().enumerate() {
        a.sack[i] = Some(*b);
    }
    a
}

fn data_of(out: &[Owned]) -> Vec<&Owned> {
    out.iter().filter(|o| !o.payload.is_empty()).collect()
}

fn kick(s: &mut Script) -> Vec<Owned> {
    let id = s.cx.opened[0];
    let mut out = Vec::new();
    s.eng.kick(id, s.now, &mut s.cx, &mut |o| out.push(Owned::of(o)));
    out
}

/// Server with a greeting of `segs` full segments, SACK on, no timestamps; the first
/// flight is ACKed after 10 ms, so SRTT = min RTT = 10 ms. Then `more` segments are
/// queued and sent; returns (ISS, those segments).
fn warmed_up(segs: usize, more: usize) -> (Script, u32, Vec<Owned>) {
    let mut s = Script::new(TcpConfig::default());
    s.cx.greeting = vec![b'g'; segs * MSS];
    let (iss, after) = sack_handshake(&mut s, false);
    assert_eq!(data_of(&after).len(), segs);
    s.wait(Duration::from_millis(10));
    s.inject(ack_with(iss + 1 + (segs * MSS) as u32, &[]));
    let srtt = s.eng.srtt(s.cx.opened[0]).unwrap();
    assert!(srtt >= Duration::from_millis(10) && srtt < Duration::from_millis(12), "{srtt:?}");
    s.app().tx.extend(pattern(more * MSS, 7));
    let out = kick(&mut s);
    assert_eq!(data_of(&out).len(), more);
    (s, iss, out)
}

#[test]
fn receiver_reports_sack_blocks_newest_first_and_dsacks_duplicates() {
    let mut s = Script::new(TcpConfig::default());
    let (iss, _) = sack_handshake(&mut s, false);
    // 1001..1006 is lost; 1006..1011 arrives: the ACK names it.
    let out = s.data(1006, iss + 1, b"world");
    assert_eq!((out[0].ack, out[0].sack), (Some(1001), [Some((1006, 1011)), None, None]));
    // A second island: it goes first (RFC 2018 §4: the block of the newest segment).
    let out = s.data(1016, iss + 1, b"again");
    assert_eq!(out[0].sack, [Some((1016, 1021)), Some((1006, 1011)), None]);
    // A duplicate of what waits out of order: a D-SACK block first (RFC 2883 §4.1.3).
    let out = s.data(1006, iss + 1, b"world");
    assert_eq!(out[0].sack, [Some((1006, 1011)), Some((1016, 1021)), Some((1006, 1011))]);
    // The holes fill; the ACK covers all, no blocks remain.
    s.data(1001, iss + 1, b"hello");
    let out = s.data(1011, iss + 1, b"there");
    assert_eq!((out.last().unwrap().ack, out.last().unwrap().sack), (Some(1021), [None; 3]));
    assert_eq!(s.app().rx, b"helloworldthereagain");
    // Old data again, below the cumulative ACK: D-SACK (RFC 2883 §4.1.1).
    let out = s.data(1001, iss + 1, b"hello");
    assert_eq!((out[0].ack, out[0].sack), (Some(1021), [Some((1001, 1006)), None, None]));
    // ... reported once.
    let out = s.data(1021, iss + 1, b"!");
    let _ = out;
    let out = s.wait(Duration::from_millis(50));
    assert!(out.iter().all(|o| o.sack == [None; 3]), "{out:?}");
}

#[test]
fn sack_is_not_used_unless_both_sides_offer_it() {
    let mut s = Script::new(TcpConfig::default());
    let iss = s.handshake(false); // no SACK-permitted in this SYN
    let out = s.data(1006, iss + 1, b"world");
    assert_eq!(out[0].sack, [None; 3]);
    let mut s = Script::new(TcpConfig { sack: false, ..TcpConfig::default() });
    let mut syn = cseg(1000, None);
    syn.syn = true;
    syn.sack_permitted = true;
    assert!(!s.inject(syn)[0].sack_permitted, "tcp.sack = false declines");
}

#[test]
fn scoreboard_marks_the_hole_lost_and_only_it_is_resent() {
    let mut s = Script::new(TcpConfig::default());
    s.cx.greeting = vec![b'x'; 10 * MSS];
    let (iss, after) = sack_handshake(&mut s, false);
    let sent = data_of(&after);
    assert_eq!(sent.len(), 10, "initial window of ten segments");
    let id = s.cx.opened[0];
    assert_eq!(s.eng.cc_state(id).map(|c| (c.2, c.3)), Some((true, 10)), "one record per segment");
    s.wait(Duration::from_millis(5));
    // Segment 1 was lost; 2..10 arrived. Nine SACKed segments, no reordering seen:
    // RACK's window is zero and the first segment is lost now (RFC 8985 §6.2).
    let una = iss + 1;
    let out = s.inject(ack_with(una, &[(una + MSS as u32, una + 10 * MSS as u32)]));
    let rtx = data_of(&out);
    assert_eq!(rtx.len(), 1, "{out:?}");
    assert_eq!((rtx[0].seq, rtx[0].payload.len()), (una, MSS));
    let c = s.eng.counters();
    assert_eq!((c.fast_retransmits, c.sack_retransmits, c.rto_retransmits), (1, 1, 0));
    let (cwnd, ssthresh, _, _) = s.eng.cc_state(id).unwrap();
    assert_eq!(ssthresh, (10.0 * MSS as f64 * 0.7) as u32, "CUBIC's β = 0.7");
    assert_eq!(cwnd, ssthresh);
    // More duplicate ACKs resend nothing more (only one hole).
    assert!(data_of(&s.inject(ack_with(una, &[(una + MSS as u32, una + 10 * MSS as u32)]))).is_empty());
    // The repair is acknowledged: recovery ends, the scoreboard is released.
    s.inject(ack_with(una + 10 * MSS as u32, &[]));
    assert_eq!(s.eng.cc_state(id).map(|c| c.3), Some(0));
    assert_eq!(s.app().acked, 10 * MSS);
}

#[test]
fn rack_waits_a_quarter_rtt_before_calling_a_reordered_segment_lost() {
    let (mut s, iss, _) = warmed_up(3, 3);
    let base = iss + 1 + 3 * MSS as u32;
    s.wait(Duration::from_millis(10));
    // Only the third segment is SACKed: below DupThresh, so RACK's window is
    // min_RTT / 4 = 2.5 ms after the delivered segment's RTT.
    let out = s.inject(ack_with(base, &[(base + 2 * MSS as u32, base + 3 * MSS as u32)]));
    assert!(data_of(&out).is_empty(), "not yet: it may be reordered");
    let early = s.wait(Duration::from_millis(2));
    assert!(data_of(&early).is_empty(), "still inside the reordering window");
    let late = s.wait(Duration::from_millis(2));
    let rtx = data_of(&late);
    assert_eq!(rtx.iter().map(|o| o.seq).collect::<Vec<_>>(), vec![base, base + MSS as u32], "both holes resent");
    assert_eq!(s.eng.counters().fast_retransmits, 1);
}

#[test]
fn a_reordered_segment_arriving_in_the_window_is_not_resent() {
    let (mut s, iss, _) = warmed_up(3, 3);
    let base = iss + 1 + 3 * MSS as u32;
    s.wait(Duration::from_millis(10));
    s.inject(ack_with(base, &[(base + 2 * MSS as u32, base + 3 * MSS as u32)]));
    s.wait(Duration::from_millis(1));
    // The "missing" two arrive late, inside the window: reordering, no retransmission.
    let out = s.inject(ack_with(base + 3 * MSS as u32, &[]));
    assert!(data_of(&out).is_empty());
    assert!(data_of(&s.wait(Duration::from_millis(30))).is_empty());
    let c = s.eng.counters();
    assert_eq!((c.fast_retransmits, c.sack_retransmits), (0, 0));
}

#[test]
fn tail_loss_probe_fires_after_two_rtts_and_rack_repairs_the_rest() {
    let (mut s, iss, _) = warmed_up(3, 3);
    let base = iss + 1 + 3 * MSS as u32;
    // Segments 2 and 3 of the flight are lost; the ACK of the first comes after 10 ms.
    s.wait(Duration::from_millis(10));
    s.inject(ack_with(base + MSS as u32, &[]));
    // PTO = 2 × SRTT = 20 ms (two segments out: no delayed-ACK allowance), far below
    // the 200 ms RTO. The probe is the last segment again (no new data to send).
    let before = s.wait(Duration::from_millis(18));
    assert!(data_of(&before).is_empty(), "{before:?}");
    let probe = s.wait(Duration::from_millis(4));
    let p = data_of(&probe);
    assert_eq!(p.len(), 1, "{probe:?}");
    assert_eq!(p[0].seq, base + 2 * MSS as u32, "the probe resends the tail");
    assert_eq!(s.eng.counters().tlp_probes, 1);
    // The probe's SACK shows segment 2 missing, sent before it: RACK marks it lost.
    s.wait(Duration::from_millis(10));
    let out = s.inject(ack_with(base + MSS as u32, &[(base + 2 * MSS as u32, base + 3 * MSS as u32)]));
    let rtx = data_of(&out);
    assert_eq!(rtx.iter().map(|o| o.seq).collect::<Vec<_>>(), vec![base + MSS as u32]);
    s.inject(ack_with(base + 3 * MSS as u32, &[]));
    let c = s.eng.counters();
    assert_eq!(c.rto_retransmits, 0, "no timeout was needed: {c:?}");
    assert_eq!(s.app().acked, 6 * MSS);
}

#[test]
fn a_probe_for_a_single_segment_allows_for_a_delayed_ack() {
    let (mut s, _, _) = warmed_up(3, 1);
    // One segment out: PTO = 2 × SRTT + the peer's delayed ACK (50 ms) = 70 ms.
    assert!(data_of(&s.wait(Duration::from_millis(65))).is_empty());
    assert_eq!(data_of(&s.wait(Duration::from_millis(10))).len(), 1);
    assert_eq!((s.eng.counters().tlp_probes, s.eng.counters().rto_retransmits), (1, 0));
}

#[test]
fn spurious_rto_is_undone_by_the_timestamp_echo() {
    let mut s = Script::new(TcpConfig::default());
    s.cx.greeting = vec![b'y'; 4 * MSS];
    let (iss, after) = sack_handshake(&mut s, true);
    let first = data_of(&after)[0].clone();
    let id = s.cx.opened[0];
    let (cwnd0, ssthresh0, ..) = s.eng.cc_state(id).unwrap();
    // The ACKs are only late: the RTO (200 ms: the handshake measured a 0 ms RTT) fires
    // and resends.
    let rtx = s.wait(Duration::from_millis(205));
    assert!(!data_of(&rtx).is_empty());
    assert_eq!(s.eng.counters().rto_retransmits, 1);
    assert_eq!(s.eng.cc_state(id).unwrap().0, 1448, "the window collapsed to one segment");
    // The late ACK echoes the TSval of the original transmission, older than the
    // retransmission's: the timeout was spurious (RFC 3522) and is undone.
    let mut late = cseg(1001, Some(iss + 1 + 4 * MSS as u32 - 4 * 12));
    late.ts = Some((150, first.ts.unwrap().0));
    s.inject(late);
    assert_eq!(s.eng.counters().undos, 1);
    let (cwnd, ssthresh, ..) = s.eng.cc_state(id).unwrap();
    assert_eq!((cwnd, ssthresh), (cwnd0, ssthresh0), "window restored");
}

#[test]
fn dsack_of_every_retransmission_undoes_the_recovery() {
    let mut s = Script::new(TcpConfig::default());
    s.cx.greeting = vec![b'x'; 10 * MSS];
    let (iss, _) = sack_handshake(&mut s, false);
    let id = s.cx.opened[0];
    let (cwnd0, ..) = s.eng.cc_state(id).unwrap();
    s.wait(Duration::from_millis(5));
    let una = iss + 1;
    let end = una + 10 * MSS as u32;
    s.inject(ack_with(una, &[(una + MSS as u32, end)]));
    assert_eq!(s.eng.counters().sack_retransmits, 1);
    assert!(s.eng.cc_state(id).unwrap().0 < cwnd0);
    // The first segment was only delayed: the ACK of everything reports the
    // retransmission as a duplicate.
    s.inject(ack_with(end, &[(una, una + MSS as u32)]));
    let c = s.eng.counters();
    assert_eq!((c.dsacks_received, c.undos), (1, 1));
    assert!(s.eng.cc_state(id).unwrap().0 >= cwnd0, "window restored");
}

#[test]
fn keepalive_probes_an_idle_peer_and_resets_when_it_is_gone() {
    let cfg =
        TcpConfig { keepalive_idle_ms: 1000, keepalive_interval_ms: 100, keepalive_probes: 3, ..TcpConfig::default() };
    let mut s = Script::new(cfg);
    let iss = s.handshake(false);
    let out = s.wait(Duration::from_millis(990));
    assert!(out.is_empty(), "quiet until idle for keepalive_idle_ms");
    let probe = s.wait(Duration::from_millis(20));
    assert_eq!(probe.len(), 1);
    assert_eq!((probe[0].seq, probe[0].payload.len()), (iss, 0), "SEG.SEQ = SND.NXT − 1");
    // The peer answers: the connection stays, the count starts over.
    s.inject(cseg(1001, Some(iss + 1)));
    assert!(s.wait(Duration::from_millis(900)).is_empty());
    // Now it is gone: three probes 100 ms apart, then RST.
    let out = s.wait(Duration::from_millis(450));
    assert_eq!(out.iter().filter(|o| !o.rst).count(), 3, "{out:?}");
    assert!(out.last().unwrap().rst);
    assert_eq!(s.eng.connections(), 0);
    let c = s.eng.counters();
    assert_eq!((c.keepalive_probes, c.keepalive_timeouts), (4, 1));
}

#[test]
fn keepalive_is_off_for_accepted_connections_by_default() {
    let mut s = Script::new(TcpConfig { idle_timeout_ms: 3_600_000, ..TcpConfig::default() });
    s.handshake(false);
    assert!(s.wait(Duration::from_secs(120)).is_empty());
    assert_eq!(s.eng.counters().keepalive_probes, 0);
}

#[test]
fn syn_cookies_keep_window_scale_and_sack_in_the_timestamp() {
    let mut s = Script::new(TcpConfig { syn_backlog: 1, ..TcpConfig::default() });
    let mut syn = cseg(10, None);
    syn.syn = true;
    syn.src = SocketAddr::new(CLIENT.ip(), 50000);
    s.inject(syn);
    // The queue is full: this SYN gets a cookie, carrying its options in TSval.
    let mut syn = cseg(5000, None);
    syn.syn = true;
    syn.mss = Some(1460);
    syn.wscale = Some(9);
    syn.sack_permitted = true;
    syn.ts = Some((777, 0));
    let out = s.inject(syn.clone());
    let sa = &out[0];
    assert_eq!(s.eng.counters().syn_cookies_sent, 1);
    assert!(sa.syn && sa.sack_permitted && sa.wscale == Some(7));
    let (tsval, tsecr) = sa.ts.unwrap();
    assert_eq!(tsecr, 777);
    let mut ack = cseg(5001, Some(sa.seq.wrapping_add(1)));
    ack.ts = Some((778, tsval));
    ack.window = 100; // scaled by 2^9: 51200 bytes
    s.inject(ack);
    assert_eq!(s.eng.counters().syn_cookies_accepted, 1);
    let id = *s.cx.opened.last().unwrap();
    assert_eq!(s.eng.cc_state(id).map(|c| c.2), Some(true), "SACK survived the cookie");
    // Out-of-order data is SACKed.
    let mut d = cseg(5101, Some(sa.seq.wrapping_add(1)));
    d.ts = Some((779, tsval));
    d.payload = vec![1; 10];
    let out = s.inject(d);
    assert_eq!(out[0].sack[0], Some((5101, 5111)));
    // A SYN without timestamps still gets a plain cookie.
    let mut syn = cseg(9000, None);
    syn.syn = true;
    syn.sack_permitted = true;
    syn.src = SocketAddr::new(CLIENT.ip(), 50002);
    let out = s.inject(syn);
    assert!(out[0].ts.is_none() && !out[0].sack_permitted && out[0].wscale.is_none());
}

// ---- the engine against itself -----------------------------------------------------

/// Simulated time to move `n` bytes from server to client at `loss_ppm` in both
/// directions (10 ms one way), and the server's counters.
fn bulk(seed: u64, loss_ppm: u64, cfg: TcpConfig, n: usize) -> (Duration, TcpCounters) {
    let faults =
        Faults { reorder_data_only: false, loss_ppm, dup_ppm: 0, reorder_ppm: 0, delay: Duration::from_millis(10) };
    let mut sim = Sim::new(seed, faults, cfg);
    let body = pattern(n, seed as u8);
    sim.scx.greeting = body.clone();
    sim.scx.close_after_greeting = true;
    let id = sim.connect();
    let start = sim.now;
    let ok = sim.run(Duration::from_secs(600), |s| s.client.app_mut(id).is_some_and(|a| a.peer_closed));
    assert!(ok, "transfer finished");
    assert!(sim.client_app(id).rx == body, "byte-exact");
    (sim.now - start, sim.server.counters())
}

#[test]
fn sack_recovers_faster_than_without_it_and_needs_no_timeouts() {
    for seed in [5u64, 23, 71] {
        let n = 2 << 20;
        let (t_sack, c_sack) = bulk(seed, 20_000, TcpConfig::default(), n);
        let (t_reno, c_reno) = bulk(seed, 20_000, TcpConfig { sack: false, ..TcpConfig::default() }, n);
        assert!(c_sack.sack_retransmits > 0 && c_reno.sack_retransmits == 0);
        assert!(
            t_sack < t_reno && c_sack.rto_retransmits < c_reno.rto_retransmits.max(1),
            "seed {seed}: SACK {t_sack:?} ({} RTOs), without {t_reno:?} ({} RTOs)",
            c_sack.rto_retransmits,
            c_reno.rto_retransmits
        );
    }
}

#[test]
fn reordering_alone_ends_in_undo_not_in_a_smaller_window() {
    // Data is reordered, ACKs are not (late ACKs older than SND.UNA are dropped by PAWS,
    // as Linux drops them, and their D-SACKs with them).
    let faults = Faults {
        reorder_data_only: true,
        loss_ppm: 0,
        dup_ppm: 0,
        reorder_ppm: 100_000,
        delay: Duration::from_millis(10),
    };
    let mut sim = Sim::new(13, faults, TcpConfig::default());
    let body = pattern(1 << 20, 3);
    sim.scx.greeting = body.clone();
    sim.scx.close_after_greeting = true;
    let id = sim.connect();
    assert!(sim.run(Duration::from_secs(60), |s| s.client.app_mut(id).is_some_and(|a| a.peer_closed)));
    assert!(sim.client_app(id).rx == body);
    let c = sim.server.counters();
    // Nothing was lost: every retransmission was spurious, reported by D-SACK, and
    // each recovery episode was undone.
    assert!(c.sack_retransmits > 0, "reordering triggered retransmissions: {c:?}");
    assert!(c.dsacks_received > 0 && c.undos > 0, "{c:?}");
}

#[test]
fn survives_loss_duplication_and_reordering_with_newreno_too() {
    let cfg = TcpConfig { congestion: Congestion::Newreno, ..TcpConfig::default() };
    let faults = Faults {
        reorder_data_only: false,
        loss_ppm: 50_000,
        dup_ppm: 10_000,
        reorder_ppm: 250_000,
        delay: Duration::from_millis(10),
    };
    let mut sim = Sim::new(41, faults, cfg);
    sim.scx.echo = true;
    let id = sim.connect();
    assert!(sim.run(Duration::from_secs(10), |s| s.client.state(id) == Some(State::Established)));
    let data = pattern(200_000, 9);
    sim.client_app(id).tx = data.clone();
    sim.client_app(id).finishing = true;
    sim.kick_client(id);
    assert!(sim.run(Duration::from_secs(300), |s| s.client.app_mut(id).is_some_and(|a| a.peer_closed)));
    assert!(sim.client_app(id).rx == data);
}

#[test]
fn tcp_over_ipv6_addresses_with_the_ipv6_mss_under_loss() {
    let faults = Faults {
        reorder_data_only: false,
        loss_ppm: 30_000,
        dup_ppm: 5_000,
        reorder_ppm: 100_000,
        delay: Duration::from_millis(5),
    };
    let mut sim = Sim::new6(19, faults, TcpConfig::default());
    sim.scx.echo = true;
    let id = sim.connect();
    assert!(sim.run(Duration::from_secs(10), |s| s.client.state(id) == Some(State::Established)));
    let data = pattern(300_000, 5);
    sim.client_app(id).tx = data.clone();
    sim.client_app(id).finishing = true;
    sim.kick_client(id);
    assert!(sim.run(Duration::from_secs(300), |s| s.client.app_mut(id).is_some_and(|a| a.peer_closed)));
    assert!(sim.client_app(id).rx == data, "byte-exact over IPv6");
    // The MSS on IPv6 leaves room for the 40-byte header: 1440, less 12 for timestamps.
    let mut s = Script::new(TcpConfig::default());
    let v6 = |last| {
        SocketAddr::new(Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, last).into(), if last == 1 { 8080 } else { 40000 })
    };
    let mut syn = cseg(1000, None);
    syn.src = v6(2);
    syn.dst = v6(1);
    syn.syn = true;
    let mut out = Vec::new();
    s.eng.on_segment(s.now, v6(1).ip(), v6(2).ip(), &syn.seg(), &mut s.cx, &mut |o| out.push(Owned::of(o)));
    assert_eq!((out[0].mss, out[0].src, out[0].dst), (Some(1440), v6(1), v6(2)));
    let _: IpAddr = v6(1).ip();
}

#[test]
fn a_later_probes_dsack_does_not_undo_an_earlier_real_recovery() {
    let mut s = Script::new(TcpConfig::default());
    s.cx.greeting = vec![b'x'; 10 * MSS];
    let (iss, _) = sack_handshake(&mut s, false);
    let id = s.cx.opened[0];
    s.wait(Duration::from_millis(5));
    let una = iss + 1;
    let end = una + 10 * MSS as u32;
    // A real loss: the first segment is resent and the repair acknowledged, no D-SACK.
    s.inject(ack_with(una, &[(una + MSS as u32, end)]));
    s.wait(Duration::from_millis(5));
    s.inject(ack_with(end, &[]));
    let reduced = s.eng.cc_state(id).unwrap().0;
    // More data; its ACK is late, so the tail probe resends the last segment, and the
    // peer reports that duplicate.
    s.app().tx.extend(pattern(2 * MSS, 1));
    kick(&mut s);
    let probe = s.wait(Duration::from_millis(80));
    assert_eq!(s.eng.counters().tlp_probes, 1, "{probe:?}");
    let last = end + MSS as u32;
    s.inject(ack_with(end + 2 * MSS as u32, &[(last, last + MSS as u32)]));
    let c = s.eng.counters();
    assert_eq!((c.dsacks_received, c.undos), (1, 0), "the probe's duplicate is not the old episode's");
    assert!(s.eng.cc_state(id).unwrap().0 <= reduced + 2 * MSS as u32, "no window restored from before the loss");
}

/// TCP option bytes a segment without timestamps carries for its SACK blocks.
fn sack_option_bytes(o: &Owned) -> usize {
    match o.sack.iter().flatten().count() {
        0 => 0,
        n => 2 + 8 * n + 2, // kind, length, the blocks, two NOPs to align
    }
}

#[test]
fn a_retransmission_sized_before_sack_blocks_were_due_drops_blocks_rather_than_exceed_the_mss() {
    // Found by the stack_http fuzzer (fuzz/corpus/stack_http/regress_sack_blocks_past_the_mss):
    // a full segment recorded before the peer's data arrived out of order was sent again
    // with two SACK blocks beside its 1460 bytes, a 1522-byte frame on a 1500-byte link.
    let mut s = Script::new(TcpConfig::default());
    s.cx.greeting = vec![b'x'; 10 * MSS];
    let (iss, after) = sack_handshake(&mut s, false);
    assert_eq!(data_of(&after).len(), 10);
    let una = iss + 1;
    // The client's own data arrives with holes: the server now holds two ranges out of
    // order, so its segments carry two SACK blocks.
    s.data(1006, una, b"bbbbb");
    let dup = s.data(1016, una, b"ccccc");
    assert_eq!(dup.last().unwrap().sack.iter().flatten().count(), 2, "{dup:?}");
    s.wait(Duration::from_millis(5));
    // Segment 1 lost, 2..10 SACKed: it is resent whole.
    let out = s.inject(ack_with(una, &[(una + MSS as u32, una + 10 * MSS as u32)]));
    let rtx = data_of(&out);
    assert_eq!(rtx.len(), 1, "{out:?}");
    assert_eq!((rtx[0].seq, rtx[0].payload.len()), (una, MSS));
    assert!(rtx[0].payload.len() + sack_option_bytes(rtx[0]) <= MSS, "over the MSS: {:?}", rtx[0].sack);
    // New data sized now leaves room for both blocks and carries them.
    s.inject(ack_with(una + 10 * MSS as u32, &[]));
    s.app().tx.extend(pattern(3 * MSS, 3));
    let fresh = kick(&mut s);
    let d = data_of(&fresh);
    assert!(!d.is_empty());
    for seg in d {
        assert_eq!(seg.sack.iter().flatten().count(), 2);
        assert!(seg.payload.len() + sack_option_bytes(seg) <= MSS, "{} + {:?}", seg.payload.len(), seg.sack);
    }
}

/// A 4 MiB download through a 10 Mbit/s bottleneck with a 100-segment buffer (≈ 120 ms
/// of queue) and 20 ms RTT: (bottleneck drops, server counters, simulated time).
fn through_bottleneck(hystart: bool) -> (u64, TcpCounters, Duration) {
    let faults =
        Faults { reorder_data_only: false, loss_ppm: 0, dup_ppm: 0, reorder_ppm: 0, delay: Duration::from_millis(10) };
    let cfg = TcpConfig { hystart, ..TcpConfig::default() };
    let mut sim = Sim::new(7, faults, cfg);
    sim.bottleneck = Some((1_250, 100 * 1_514));
    let n = 4 << 20;
    let body = pattern(n, 7);
    sim.scx.greeting = body.clone();
    sim.scx.close_after_greeting = true;
    let id = sim.connect();
    let start = sim.now;
    assert!(sim.run(Duration::from_secs(120), |s| s.client.app_mut(id).is_some_and(|a| a.peer_closed)), "finished");
    assert!(sim.client_app(id).rx == body, "byte-exact");
    (sim.bottleneck_drops, sim.server.counters(), sim.now - start)
}

#[test]
fn hystart_leaves_slow_start_before_the_bottleneck_queue_overflows() {
    // Standard slow start doubles until the buffer overflows: a burst of drops, then
    // recovery. HyStart++ sees the RTT rise as the queue builds and slows down first.
    let (drops_ss, c_ss, t_ss) = through_bottleneck(false);
    let (drops_hy, c_hy, t_hy) = through_bottleneck(true);
    assert!(drops_ss > 20, "slow start overflowed the buffer: {drops_ss} drops");
    assert_eq!(c_ss.hystart_css, 0);
    assert_eq!((c_hy.hystart_css, c_hy.hystart_avoidance), (1, 1), "{c_hy:?}");
    assert!(drops_hy < drops_ss / 4, "HyStart++ {drops_hy} drops, slow start {drops_ss}");
    assert!(
        c_hy.sack_retransmits + c_hy.rto_retransmits < c_ss.sack_retransmits + c_ss.rto_retransmits,
        "retransmissions: HyStart++ {}, slow start {}",
        c_hy.sack_retransmits + c_hy.rto_retransmits,
        c_ss.sack_retransmits + c_ss.rto_retransmits
    );
    // A link this slow takes ≈ 3.4 s for 4 MiB either way; neither may fall far behind it.
    assert!(t_hy < t_ss + Duration::from_millis(500), "HyStart++ {t_hy:?}, slow start {t_ss:?}");
}
