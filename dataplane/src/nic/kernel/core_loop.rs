//! One core's event loop over kernel sockets.
//!
//! A turn: wait for readiness (no wait if work is left over), accept a bounded batch,
//! read each ready connection at most `reads_per_turn_max` times, feeding the HTTP
//! engine, and write its output until the socket would block. Connections cut off by a
//! bound go on a ready list served next turn, so every loop is bounded and fair.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::app::ControlHandle;
use crate::config::Config;
use crate::http::{DateCache, Env, HttpConn, HttpStats, OwnedResponse};
use crate::mem::{cpu_numa_node, Arena, ChunkPool, Region};
use crate::runtime::{AppSet, CoreReport, StartError};

/// Pieces of output handed to one `writev` at most.
const WRITEV_PIECES: usize = 64;

pub(super) const WAKER: Token = Token(usize::MAX - 1);
const LISTENER: Token = Token(usize::MAX - 2);
const TICK: Duration = Duration::from_millis(250);

pub(super) struct Args {
    pub queue: usize,
    pub cpu: usize,
    pub cfg: Config,
    pub apps: Arc<AppSet>,
    pub control: ControlHandle,
    pub stop: Arc<AtomicBool>,
    pub poll: Poll,
    pub listener: StdListener,
}

struct Conn {
    sock: TcpStream,
    http: HttpConn,
    gen: u32,
    last_active: Instant,
    read_paused: bool,
}

/// Everything of the core but the connection table (so both can be borrowed at once).
struct Core {
    cfg: Config,
    apps: Arc<AppSet>,
    control: ControlHandle,
    date: DateCache,
    stats: HttpStats,
    now: SystemTime,
    readbuf: Vec<u8>,
}

impl Core {
    fn env(&mut self, conn_id: u64) -> Env<'_> {
        Env {
            now: self.now,
            date: &self.date,
            limits: &self.cfg.http,
            router: &self.apps.router,
            shared: &self.apps.shared,
            control: &self.control,
            conn_id,
            stats: &mut self.stats,
        }
    }
}

/// The loop's state.
pub struct CoreLoop {
    core: Core,
    poll: Poll,
    listener: Option<TcpListener>,
    listener_backlogged: bool,
    accept_errors: u64,
    last_accept_warn: Option<Instant>,
    /// A descriptor held in reserve, given up to refuse connections when out of them.
    spare_fd: Option<std::fs::File>,
    refused_no_fd: u64,
    conns: Vec<Option<Conn>>,
    gens: Vec<u32>,
    free: Vec<usize>,
    ready: VecDeque<usize>,
    pool: Rc<ChunkPool>,
    accepted: u64,
    stop: Arc<AtomicBool>,
    cpu: usize,
}

pub(super) fn run(args: Args, ready: mpsc::Sender<Result<(), StartError>>) -> CoreReport {
    let queue = args.queue;
    let pinned = core_affinity::set_for_current(core_affinity::CoreId { id: args.cpu });
    if !pinned {
        tracing::warn!("queue {queue}: could not pin to CPU {}", args.cpu);
    }
    let mut lp = match CoreLoop::new(args) {
        Ok(lp) => lp,
        Err(e) => {
            let _ = ready.send(Err(e));
            return CoreReport { queue, ..Default::default() };
        }
    };
    let _ = ready.send(Ok(()));
    let cut = lp.serve();
    CoreReport {
        queue,
        cpu: pinned.then_some(lp.cpu()),
        http: lp.core.stats.clone(),
        accepted: lp.accepted,
        cut_at_shutdown: cut,
        pool: lp.pool.stats(),
    }
}

impl CoreLoop {
    fn new(args: Args) -> Result<CoreLoop, StartError> {
        let Args { queue, cpu, cfg, apps, control, stop, poll, listener } = args;
        let region = Region::map(cfg.arena.pool_bytes_per_core, cpu_numa_node(cpu), cfg.arena.hugepages)
            .map_err(|source| StartError::Memory { queue, source })?;
        tracing::debug!(queue, cpu, backing = ?region.backing(), "arena pool mapped");
        let pool = Rc::new(ChunkPool::new(region, cfg.arena.chunk_bytes));
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|source| StartError::Io { what: "epoll_ctl(listener)", source })?;
        let readbuf = vec![0; cfg.kernel.read_buf_bytes];
        let mut date = DateCache::default();
        let now = SystemTime::now();
        date.update(now);
        let core = Core { cfg, apps, control, date, stats: HttpStats::default(), now, readbuf };
        Ok(CoreLoop {
            core,
            poll,
            listener: Some(listener),
            listener_backlogged: false,
            accept_errors: 0,
            last_accept_warn: None,
            spare_fd: std::fs::File::open("/dev/null").ok(),
            refused_no_fd: 0,
            conns: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            ready: VecDeque::new(),
            pool,
            accepted: 0,
            stop,
            cpu,
        })
    }

    fn cpu(&self) -> usize {
        self.cpu
    }

    /// Runs until shutdown completes; returns the connections cut at the deadline.
    fn serve(&mut self) -> usize {
        let mut events = Events::with_capacity(self.core.cfg.kernel.events_per_turn);
        let mut next_sweep = Instant::now() + Duration::from_secs(1);
        let mut deadline: Option<Instant> = None;
        loop {
            let busy = !self.ready.is_empty() || self.listener_backlogged;
            let timeout = if busy { Duration::ZERO } else { TICK };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!("epoll_wait failed: {e}");
                    return self.live();
                }
            }
            self.core.now = SystemTime::now();
            self.core.date.update(self.core.now);
            let mono = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_batch(mono),
                    WAKER => {}
                    Token(idx) => {
                        if ev.is_writable() {
                            self.flush(idx, mono);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.read(idx, mono);
                        }
                    }
                }
            }
            if self.listener_backlogged {
                self.accept_batch(mono);
            }
            for _ in 0..self.ready.len() {
                let Some(idx) = self.ready.pop_front() else { break };
                self.read(idx, mono);
            }
            self.deliver_control_answers(mono);
            if mono >= next_sweep {
                self.sweep_idle(mono);
                next_sweep = mono + Duration::from_secs(1);
            }
            if deadline.is_none() && self.stop.load(Ordering::Acquire) {
                deadline = Some(mono + Duration::from_millis(self.core.cfg.server.shutdown_timeout_ms));
                self.begin_drain(mono);
            }
            if let Some(d) = deadline {
                if self.live() == 0 {
                    return 0;
                }
                if mono >= d {
                    let cut = self.live();
                    tracing::warn!("shutdown deadline passed with {cut} connections still open; closing them");
                    return cut;
                }
            }
        }
    }

    fn live(&self) -> usize {
        self.conns.len() - self.free.len()
    }

    fn accept_batch(&mut self, now: Instant) {
        self.listener_backlogged = false;
        for _ in 0..self.core.cfg.kernel.accepts_per_turn_max {
            let Some(l) = &self.listener else { return };
            match l.accept() {
                Ok((sock, _)) => self.insert(sock, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors (EMFILE) repeats for every connection waiting:
                    // one warning a second, with the count, instead of one per attempt.
                    self.accept_errors += 1;
                    if self.last_accept_warn.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                        tracing::warn!(
                            "accept failed: {e} ({} failures, {} connections refused for want of descriptors)",
                            self.accept_errors,
                            self.refused_no_fd
                        );
                        self.last_accept_warn = Some(now);
                    }
                    if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) && self.refuse_one() {
                        continue; // more may be waiting: the turn's accept budget bounds this
                    }
                    return;
                }
            }
        }
        self.listener_backlogged = true;
    }

    /// Out of descriptors: give back the spare one, accept the oldest waiting connection
    /// and close it at once, so its client learns now (a FIN) instead of hanging in the
    /// accept queue; then take the spare again.
    /// Returns true if one was refused.
    fn refuse_one(&mut self) -> bool {
        let Some(l) = &self.listener else { return false };
        if self.spare_fd.take().is_none() {
            return false;
        }
        let refused = match l.accept() {
            Ok((sock, _)) => {
                drop(sock);
                self.refused_no_fd += 1;
                true
            }
            Err(_) => false,
        };
        self.spare_fd = std::fs::File::open("/dev/null").ok();
        refused
    }

    fn insert(&mut self, mut sock: TcpStream, now: Instant) {
        let _ = sock.set_nodelay(true);
        let idx = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.gens.push(0);
            self.conns.len() - 1
        });
        if let Err(e) = self.poll.registry().register(&mut sock, Token(idx), Interest::READABLE | Interest::WRITABLE) {
            tracing::warn!("epoll_ctl(add) failed: {e}");
            self.free.push(idx);
            return;
        }
        let arena = Arena::new(self.pool.clone(), self.core.cfg.arena.max_bytes_per_conn);
        let http = HttpConn::new(arena, &self.core.cfg.http);
        self.conns[idx] = Some(Conn { sock, http, gen: self.gens[idx], last_active: now, read_paused: false });
        self.accepted += 1;
    }

    fn close(&mut self, idx: usize) {
        if let Some(mut c) = self.conns.get_mut(idx).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut c.sock);
            self.gens[idx] = self.gens[idx].wrapping_add(1);
            self.free.push(idx);
        }
    }

    /// Reads a bounded burst, feeding the engine and flushing its answers.
    fn read(&mut self, idx: usize, now: Instant) {
        let reads_max = self.core.cfg.kernel.reads_per_turn_max;
        for _ in 0..reads_max {
            let Some(Some(c)) = self.conns.get_mut(idx) else { return };
            if !c.http.wants_read() {
                c.read_paused = true;
                break;
            }
            let id = conn_id(idx, c.gen);
            match c.sock.read(&mut self.core.readbuf) {
                Ok(0) => {
                    c.http.peer_closed();
                    break;
                }
                Ok(n) => {
                    c.last_active = now;
                    let data = std::mem::take(&mut self.core.readbuf);
                    let drained = n < data.len();
                    c.http.receive(&data[..n], &mut self.core.env(id));
                    self.core.readbuf = data;
                    if !self.write_out(idx) {
                        return;
                    }
                    if drained {
                        // A short read took everything queued; edge-triggered epoll
                        // reports the next arrival, so skip the read that would only
                        // return EAGAIN (one syscall per request saved).
                        return self.finish(idx);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.finish(idx),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("read: {e}; closing");
                    return self.close(idx);
                }
            }
            if self.conns[idx].as_ref().is_some_and(|c| c.http.wants_close()) {
                return self.close(idx);
            }
        }
        // Bound reached (or reading paused): come back next turn if the engine wants more.
        if let Some(Some(c)) = self.conns.get(idx) {
            if c.http.wants_read() && !c.read_paused {
                self.ready.push_back(idx);
            }
        }
        self.finish(idx);
    }

    fn finish(&mut self, idx: usize) {
        if self.conns.get(idx).and_then(Option::as_ref).is_some_and(|c| c.http.wants_close()) {
            self.close(idx);
        }
    }

    fn flush(&mut self, idx: usize, now: Instant) {
        if self.write_out(idx) {
            if let Some(Some(c)) = self.conns.get_mut(idx) {
                c.last_active = now;
            }
            self.finish(idx);
        }
    }

    /// Writes until the engine has nothing left or the socket is full. Returns false if
    /// the connection was closed.
    fn write_out(&mut self, idx: usize) -> bool {
        loop {
            let Some(Some(c)) = self.conns.get_mut(idx) else { return false };
            let id = conn_id(idx, c.gen);
            if c.http.output_len() == 0 {
                if c.read_paused && c.http.wants_read() {
                    c.read_paused = false;
                    self.ready.push_back(idx);
                }
                return true;
            }
            // Heads and bodies go out in one writev, bodies straight from the arena.
            let mut bufs = [io::IoSlice::new(&[]); WRITEV_PIECES];
            let pieces = c.http.output_slices(&mut bufs);
            let written = if pieces == 1 { c.sock.write(&bufs[0]) } else { c.sock.write_vectored(&bufs[..pieces]) };
            match written {
                Ok(n) => c.http.consume(n, &mut self.core.env(id)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("write: {e}; closing");
                    self.close(idx);
                    return false;
                }
            }
        }
    }

    fn deliver_control_answers(&mut self, now: Instant) {
        let mut answers: Vec<(u64, OwnedResponse)> = Vec::new();
        self.core.control.drain(|id, r| answers.push((id, r)));
        for (id, resp) in answers {
            let (idx, gen) = ((id & 0xffff_ffff) as usize, (id >> 32) as u32);
            let Some(Some(c)) = self.conns.get_mut(idx) else { continue };
            if c.gen != gen {
                continue; // the connection closed while the job ran
            }
            c.http.complete_deferred(resp, &mut self.core.env(id));
            self.flush(idx, now);
            if self.conns.get(idx).is_some_and(Option::is_some) {
                self.ready.push_back(idx);
            }
        }
    }

    fn sweep_idle(&mut self, now: Instant) {
        let idle = Duration::from_millis(self.core.cfg.http.idle_timeout_ms);
        let stale: Vec<usize> = (0..self.conns.len())
            .filter(|&i| {
                self.conns[i]
                    .as_ref()
                    .is_some_and(|c| c.http.output_len() == 0 && now.duration_since(c.last_active) > idle)
            })
            .collect();
        for idx in stale {
            self.close(idx);
        }
    }

    fn begin_drain(&mut self, now: Instant) {
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.listener_backlogged = false;
        for idx in 0..self.conns.len() {
            if let Some(c) = self.conns[idx].as_mut() {
                c.http.begin_drain();
            }
            self.flush(idx, now);
        }
    }
}

fn conn_id(idx: usize, gen: u32) -> u64 {
    (u64::from(gen) << 32) | idx as u64
}
