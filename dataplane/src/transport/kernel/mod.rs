//! The kernel-socket transport: per core, an SO_REUSEPORT listener and every socket of
//! the core (accepted and outbound) in one epoll (mio); the kernel is the TCP stack.
//!
//! A turn: the events of one `epoll_wait` (at most `kernel.events_per_turn`), a bounded
//! accept batch, each ready connection read at most `kernel.reads_per_turn_max` times —
//! bytes to the dispatcher, its answers written until the socket would block.
//! Connections cut off by a bound go on a ready list served next turn, so every loop is
//! bounded and fair. Writes that would block stay queued in the session and resume on
//! the next writable event; nothing is dropped.

mod listener;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::{QueuePlan, StartError, Transport, TransportReport};
use crate::app::dispatch::Delivery;
use crate::app::outbound::EndReason;
use crate::app::{ClientConn, Dispatch, HttpSession};
use crate::config::{Config, KernelConfig};

/// What [`KernelTransport::refuse_one`] did.
enum Refusal {
    Refused,
    NothingWaiting,
    Failed,
}

/// Pieces of output handed to one `writev` at most.
const WRITEV_PIECES: usize = 64;
const WAKER: Token = Token(usize::MAX - 1);
const LISTENER: Token = Token(usize::MAX - 2);
/// Longest sleep in epoll_wait (shutdown and the idle sweep are checked this often).
const TICK: Duration = Duration::from_millis(250);

/// Binds every listener and plans one kernel transport per queue.
pub(crate) fn plan(cfg: &Config) -> Result<(SocketAddr, Vec<QueuePlan<KernelTransport>>), StartError> {
    let listeners = listener::bind_all(cfg)?;
    let addr = listeners[0].local_addr().map_err(|source| StartError::Io { what: "local_addr", source })?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut plans = Vec::new();
    for (queue, l) in listeners.into_iter().enumerate() {
        let poll = Poll::new().map_err(|source| StartError::Io { what: "epoll_create", source })?;
        let waker = Arc::new(
            mio::Waker::new(poll.registry(), WAKER).map_err(|source| StartError::Io { what: "eventfd", source })?,
        );
        let w = waker.clone();
        let kcfg = cfg.kernel.clone();
        let idle = Duration::from_millis(cfg.http.idle_timeout_ms);
        let linger = Duration::from_millis(cfg.http.linger_ms);
        plans.push(QueuePlan {
            queue,
            cpu: cfg.core_for_queue(queue, cpus),
            bell: Arc::new(move || {
                let _ = w.wake();
            }),
            build: Box::new(move || KernelTransport::new(poll, l, kcfg, (idle, linger), waker)),
        });
    }
    Ok((addr, plans))
}

// Boxing the HTTP session would cost an allocation per accepted connection, the
// common case; outbound clients are the few.
#[allow(clippy::large_enum_variant)]
enum Kind {
    Http {
        s: HttpSession,
        read_paused: bool,
    },
    Client {
        c: ClientConn,
        connected: bool,
    },
    /// Closed by us with our side shut (FIN sent): what the client still sends is read
    /// and dropped until it closes or `until`, so the kernel does not answer it with an
    /// RST that could destroy our last response before the client read it (RFC 9112 §9.6).
    Linger {
        until: Instant,
    },
}

struct Conn {
    sock: TcpStream,
    /// The client's address, for the per-source count (accepted connections).
    peer: Option<std::net::IpAddr>,
    gen: u32,
    last_active: Instant,
    kind: Kind,
}

/// One core's kernel-socket transport.
pub struct KernelTransport {
    cfg: KernelConfig,
    idle_timeout: Duration,
    /// How long a connection we closed reads and drops what the client still sends.
    linger: Duration,
    /// Shutting down: no lingering (the drain waits for every connection).
    draining: bool,
    /// Open client connections per source address (kept only with a per-source cap).
    per_source: std::collections::HashMap<std::net::IpAddr, u32>,
    /// Connections refused over the per-core and the per-source cap.
    refused_over_cap: (u64, u64),
    poll: Poll,
    events: Events,
    _waker: Arc<mio::Waker>,
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
    readbuf: Vec<u8>,
    accepted: u64,
    next_sweep: Option<Instant>,
}

fn key(idx: usize, gen: u32) -> u64 {
    (u64::from(gen) << 32) | idx as u64
}

impl KernelTransport {
    fn new(
        poll: Poll,
        listener: std::net::TcpListener,
        cfg: KernelConfig,
        (idle_timeout, linger): (Duration, Duration),
        waker: Arc<mio::Waker>,
    ) -> Result<Self, StartError> {
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|source| StartError::Io { what: "epoll_ctl(listener)", source })?;
        Ok(KernelTransport {
            events: Events::with_capacity(cfg.events_per_turn),
            readbuf: vec![0; cfg.read_buf_bytes],
            cfg,
            idle_timeout,
            linger,
            draining: false,
            per_source: std::collections::HashMap::new(),
            refused_over_cap: (0, 0),
            poll,
            _waker: waker,
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
            accepted: 0,
            next_sweep: None,
        })
    }

    fn live(&self) -> usize {
        self.conns.len() - self.free.len()
    }

    fn lookup(&self, k: u64) -> Option<usize> {
        let (idx, gen) = ((k & 0xffff_ffff) as usize, (k >> 32) as u32);
        self.conns.get(idx)?.as_ref().filter(|c| c.gen == gen).map(|_| idx)
    }

    fn accept_batch(&mut self, now: Instant, d: &Dispatch) {
        self.listener_backlogged = false;
        for _ in 0..self.cfg.accepts_per_turn_max {
            let Some(l) = &self.listener else { return };
            match l.accept() {
                Ok((sock, peer)) => {
                    let ip = peer.ip();
                    if let Some(over) = self.over_cap(ip) {
                        refuse_busy(sock);
                        match over {
                            Cap::Core => self.refused_over_cap.0 += 1,
                            Cap::Source => self.refused_over_cap.1 += 1,
                        }
                        continue;
                    }
                    let _ = sock.set_nodelay(true);
                    if let Some(k) = self.insert(sock, now, Kind::Http { s: d.open(), read_paused: false }) {
                        if self.cfg.max_connections_per_source > 0 {
                            *self.per_source.entry(ip).or_insert(0) += 1;
                            if let Some(Some(c)) = self.conns.get_mut((k & 0xffff_ffff) as usize) {
                                c.peer = Some(ip);
                            }
                        }
                    }
                    self.accepted += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors (EMFILE) repeats for every connection waiting:
                    // one warning a second, with the count, instead of one per attempt.
                    self.accept_errors += 1;
                    if self.last_accept_warn.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                        tracing::warn!(
                            "accept failed: {e} ({} failures, {} connections refused for want of descriptors; \
                             spare descriptor {})",
                            self.accept_errors,
                            self.refused_no_fd,
                            if self.spare_fd.is_some() { "held" } else { "lost" }
                        );
                        self.last_accept_warn = Some(now);
                    }
                    if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
                        match self.refuse_one() {
                            // More may be waiting: the turn's accept budget bounds this.
                            Refusal::Refused => continue,
                            // accept(2) fails with EMFILE before it looks at the queue:
                            // nothing waits, and a connection that comes will raise an
                            // event of its own. Not backlogged (that would spin the loop).
                            Refusal::NothingWaiting => {}
                            // Not refused: another thread took the descriptor the spare
                            // gave back (or the spare is gone). Connections still wait,
                            // and the listener is edge-triggered (no new event for them):
                            // try again next turn.
                            Refusal::Failed => {
                                self.spare_fd = self.spare_fd.take().or_else(|| std::fs::File::open("/dev/null").ok());
                                self.listener_backlogged = true;
                            }
                        }
                    }
                    return;
                }
            }
        }
        self.listener_backlogged = true;
    }

    /// Out of descriptors: give back the spare one, accept the oldest waiting connection
    /// and close it at once, so its client learns now (a FIN) instead of hanging in the
    /// accept queue; then take the spare again. Says whether one was refused, none was
    /// waiting, or it failed.
    fn refuse_one(&mut self) -> Refusal {
        let Some(l) = &self.listener else { return Refusal::NothingWaiting };
        if self.spare_fd.take().is_none() {
            return Refusal::Failed;
        }
        let refused = match l.accept() {
            Ok((sock, _)) => {
                drop(sock);
                self.refused_no_fd += 1;
                Refusal::Refused
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Refusal::NothingWaiting,
            Err(_) => Refusal::Failed,
        };
        self.spare_fd = std::fs::File::open("/dev/null").ok();
        refused
    }

    /// Registers `sock` and stores it; returns its key.
    fn insert(&mut self, mut sock: TcpStream, now: Instant, kind: Kind) -> Option<u64> {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.gens.push(0);
            self.conns.len() - 1
        });
        if let Err(e) = self.poll.registry().register(&mut sock, Token(idx), Interest::READABLE | Interest::WRITABLE) {
            tracing::warn!("epoll_ctl(add) failed: {e}");
            self.free.push(idx);
            return None;
        }
        let gen = self.gens[idx];
        self.conns[idx] = Some(Conn { sock, peer: None, gen, last_active: now, kind });
        Some(key(idx, gen))
    }

    /// Which cap a new connection from `ip` would exceed, if any.
    fn over_cap(&self, ip: std::net::IpAddr) -> Option<Cap> {
        if self.live() >= self.cfg.max_connections {
            return Some(Cap::Core);
        }
        let per = self.cfg.max_connections_per_source;
        (per > 0 && self.per_source.get(&ip).is_some_and(|&n| n as usize >= per)).then_some(Cap::Source)
    }

    fn close(&mut self, idx: usize, d: &mut Dispatch, why: Option<EndReason>) {
        if let Some(mut c) = self.conns.get_mut(idx).and_then(Option::take) {
            if let Some(ip) = c.peer {
                if let Some(n) = self.per_source.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_source.remove(&ip);
                    }
                }
            }
            let _ = self.poll.registry().deregister(&mut c.sock);
            self.gens[idx] = self.gens[idx].wrapping_add(1);
            self.free.push(idx);
            if let Kind::Client { c, .. } = &c.kind {
                c.ended(why, &mut d.exec().core().outbound.borrow_mut().counters);
            }
            // Dropping an HTTP session cancels a task it was waiting for.
        }
    }

    fn event(&mut self, idx: usize, ev: &mio::event::Event, now: Instant, d: &mut Dispatch) {
        if matches!(self.conns.get(idx), Some(Some(Conn { kind: Kind::Linger { .. }, .. }))) {
            return self.discard(idx, d);
        }
        let is_client = matches!(self.conns.get(idx), Some(Some(Conn { kind: Kind::Client { .. }, .. })));
        if is_client {
            return self.client_event(
                idx,
                ev.is_writable(),
                ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                d,
            );
        }
        if ev.is_writable() {
            self.flush(idx, now, d);
        }
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            self.read(idx, now, d, ev.is_read_closed() || ev.is_error());
        }
    }

    /// Reads a bounded burst, feeding the dispatcher and flushing its answers. `hup`: the
    /// event said the peer closed, so a short read is followed by the read that sees it.
    fn read(&mut self, idx: usize, now: Instant, d: &mut Dispatch, hup: bool) {
        for _ in 0..self.cfg.reads_per_turn_max {
            let Some(Some(c)) = self.conns.get_mut(idx) else { return };
            let k = key(idx, c.gen);
            let Kind::Http { s, read_paused } = &mut c.kind else { return };
            if !s.http.wants_read() && !hup {
                *read_paused = true;
                break;
            }
            match c.sock.read(&mut self.readbuf) {
                Ok(0) => {
                    d.peer_closed(k, s);
                    break;
                }
                Ok(n) => {
                    c.last_active = now;
                    let drained = n < self.readbuf.len();
                    d.received(k, s, &self.readbuf[..n]);
                    if !self.write_out(idx, d) {
                        return;
                    }
                    if drained && !hup {
                        // A short read took everything queued; edge-triggered epoll
                        // reports the next arrival, so skip the read that would only
                        // return EAGAIN (one syscall per request saved).
                        return self.finish(idx, d);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.finish(idx, d),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("read: {e}; closing");
                    return self.close(idx, d, None);
                }
            }
            if self.wants_close(idx) {
                return self.end(idx, d);
            }
        }
        // Bound reached (or reading paused): come back next turn if the engine wants more.
        if let Some(Some(Conn { kind: Kind::Http { s, read_paused }, .. })) = self.conns.get(idx) {
            if s.http.wants_read() && !*read_paused {
                self.ready.push_back(idx);
            }
        }
        self.finish(idx, d);
    }

    fn wants_close(&self, idx: usize) -> bool {
        matches!(self.conns.get(idx), Some(Some(Conn { kind: Kind::Http { s, .. }, .. })) if s.http.wants_close())
    }

    fn finish(&mut self, idx: usize, d: &mut Dispatch) {
        if self.wants_close(idx) {
            self.end(idx, d);
        }
    }

    /// Closes an HTTP connection whose session is done: our side shut at once, then
    /// lingering (see [`Kind::Linger`]) unless that is off or the core is draining.
    fn end(&mut self, idx: usize, d: &mut Dispatch) {
        if self.linger.is_zero() || self.draining {
            return self.close(idx, d, None);
        }
        let Some(Some(c)) = self.conns.get_mut(idx) else { return };
        if c.sock.shutdown(std::net::Shutdown::Write).is_err() {
            return self.close(idx, d, None);
        }
        // Dropping the session cancels a task it was waiting for and frees its arena.
        c.kind = Kind::Linger { until: Instant::now() + self.linger };
        self.discard(idx, d);
    }

    /// Reads and drops what a lingering connection's client sent; closes it at EOF.
    fn discard(&mut self, idx: usize, d: &mut Dispatch) {
        for _ in 0..self.cfg.reads_per_turn_max {
            let Some(Some(c)) = self.conns.get_mut(idx) else { return };
            match c.sock.read(&mut self.readbuf) {
                Ok(0) => return self.close(idx, d, None),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(idx, d, None),
            }
        }
        // More than a turn's worth: the rest next readable event (edge-triggered: one
        // arrives only for new data, so come back through the ready list).
        self.ready.push_back(idx);
    }

    fn flush(&mut self, idx: usize, now: Instant, d: &mut Dispatch) {
        if self.write_out(idx, d) {
            if let Some(Some(c)) = self.conns.get_mut(idx) {
                c.last_active = now;
            }
            self.finish(idx, d);
        }
    }

    /// Writes until the session has nothing left or the socket is full. Returns false
    /// if the connection was closed.
    fn write_out(&mut self, idx: usize, d: &mut Dispatch) -> bool {
        loop {
            let Some(Some(c)) = self.conns.get_mut(idx) else { return false };
            let k = key(idx, c.gen);
            let Kind::Http { s, read_paused } = &mut c.kind else { return true };
            if s.http.output_len() == 0 {
                if *read_paused && s.http.wants_read() {
                    *read_paused = false;
                    self.ready.push_back(idx);
                }
                return true;
            }
            // Heads and bodies go out in one writev, bodies straight from the arena.
            let mut bufs = [io::IoSlice::new(&[]); WRITEV_PIECES];
            let pieces = s.http.output_slices(&mut bufs);
            let written = if pieces == 1 { c.sock.write(&bufs[0]) } else { c.sock.write_vectored(&bufs[..pieces]) };
            match written {
                Ok(n) => d.consumed(k, s, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("write: {e}; closing");
                    self.close(idx, d, None);
                    return false;
                }
            }
        }
    }

    /// An outbound socket became writable and/or readable.
    fn client_event(&mut self, idx: usize, writable: bool, readable: bool, d: &mut Dispatch) {
        let Some(Some(Conn { sock, kind: Kind::Client { c, connected }, .. })) = self.conns.get_mut(idx) else {
            return;
        };
        if !*connected && (writable || readable) {
            // A non-blocking connect finished: SO_ERROR says how.
            match sock.take_error() {
                Ok(None) if sock.peer_addr().is_ok() => {
                    *connected = true;
                    c.established(&mut d.exec().core().outbound.borrow_mut().counters);
                }
                Ok(None) => return, // not yet
                Ok(Some(e)) | Err(e) => {
                    let why = if e.kind() == io::ErrorKind::ConnectionRefused {
                        EndReason::Refused
                    } else {
                        EndReason::Failed
                    };
                    tracing::debug!("connect to {}: {e}", c.addr());
                    return self.close(idx, d, Some(why));
                }
            }
        }
        self.client_io(idx, d);
    }

    /// Moves an open outbound connection's bytes both ways, and closes it when done.
    fn client_io(&mut self, idx: usize, d: &mut Dispatch) {
        let Some(Some(Conn { sock, kind: Kind::Client { c, connected }, .. })) = self.conns.get_mut(idx) else {
            return;
        };
        if !*connected {
            if c.abandoned() {
                self.close(idx, d, None);
            }
            return;
        }
        let c = c.clone();
        let mut ob = d.exec().core().outbound.borrow_mut();
        // Write what is queued.
        let mut failure = None;
        loop {
            let written = {
                let st = c.0.borrow();
                if st.tx.is_empty() {
                    break;
                }
                sock.write(&st.tx)
            };
            match written {
                Ok(n) => c.sent(n, &mut ob.counters),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(reason(&e));
                    break;
                }
            }
        }
        // Read while the handler has room.
        let mut eof = false;
        while failure.is_none() && c.wants_read() {
            match sock.read(&mut self.readbuf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => c.received(&self.readbuf[..n], &mut ob.counters),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => failure = Some(reason(&e)),
            }
        }
        drop(ob);
        if eof {
            c.peer_closed();
        }
        if failure.is_some() || c.wants_close() || (eof && c.abandoned()) {
            self.close(idx, d, failure);
        }
    }

    fn sweep_idle(&mut self, now: Instant, d: &mut Dispatch) {
        let stale: Vec<usize> = (0..self.conns.len())
            .filter(|&i| {
                self.conns[i].as_ref().is_some_and(|c| match &c.kind {
                    Kind::Http { s, .. } => {
                        s.http.output_len() == 0
                            && s.http.awaiting().is_none()
                            && now.duration_since(c.last_active) > self.idle_timeout
                    }
                    Kind::Client { .. } => false,
                    Kind::Linger { until } => now >= *until,
                })
            })
            .collect();
        for idx in stale {
            self.close(idx, d, None);
        }
    }

    /// Runs `f` on the HTTP session of connection `k`, then writes what it queued.
    fn with_http(&mut self, k: u64, d: &mut Dispatch, f: impl FnOnce(&mut Dispatch, u64, &mut HttpSession)) {
        let Some(idx) = self.lookup(k) else { return };
        let Some(Some(Conn { kind: Kind::Http { s, .. }, .. })) = self.conns.get_mut(idx) else { return };
        f(d, k, s);
        if self.write_out(idx, d) {
            self.finish(idx, d);
            if self.conns.get(idx).is_some_and(Option::is_some) {
                self.ready.push_back(idx);
            }
        }
    }
}

/// The cap a refused connection was over.
enum Cap {
    Core,
    Source,
}

/// Answers a connection over a cap with 503 and closes it: the response fits in an
/// empty socket buffer, so one non-blocking write is enough (if it does not go, the
/// client gets the close alone).
fn refuse_busy(mut sock: TcpStream) {
    use std::io::Write;
    let _ = sock.write(
        b"HTTP/1.1 503 Service Unavailable\r\nServer: px-appliance\r\nContent-Type: text/plain; charset=utf-8\r\n\
          Content-Length: 26\r\nRetry-After: 1\r\nConnection: close\r\n\r\ntoo many connections open\n",
    );
    let _ = sock.shutdown(std::net::Shutdown::Write);
}

fn reason(e: &io::Error) -> EndReason {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => EndReason::Refused,
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => EndReason::Reset,
        io::ErrorKind::TimedOut => EndReason::TimedOut,
        _ => EndReason::Failed,
    }
}

impl Transport for KernelTransport {
    fn wait(&mut self, _now: Instant, timeout: Duration) {
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!("epoll_wait failed: {e}");
            }
            self.events.clear();
        }
    }

    fn has_backlog(&self) -> bool {
        !self.ready.is_empty() || self.listener_backlogged
    }

    fn turn(&mut self, now: Instant, d: &mut Dispatch) -> usize {
        let mut work = 0;
        let evs = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for ev in evs.iter() {
            work += 1;
            match ev.token() {
                LISTENER => self.accept_batch(now, d),
                WAKER => {}
                Token(idx) => self.event(idx, ev, now, d),
            }
        }
        self.events = evs;
        self.events.clear();
        if self.listener_backlogged {
            self.accept_batch(now, d);
        }
        for _ in 0..self.ready.len() {
            let Some(idx) = self.ready.pop_front() else { break };
            work += 1;
            if matches!(self.conns.get(idx), Some(Some(Conn { kind: Kind::Linger { .. }, .. }))) {
                self.discard(idx, d);
            } else {
                self.read(idx, now, d, false);
            }
        }
        let sweep = *self.next_sweep.get_or_insert(now + Duration::from_secs(1));
        if now >= sweep {
            self.sweep_idle(now, d);
            self.next_sweep = Some(now + Duration::from_secs(1));
        }
        work
    }

    fn deliver(&mut self, _now: Instant, d: &mut Dispatch, items: Vec<(u64, Delivery)>) {
        for (k, item) in items {
            self.with_http(k, d, |d, k, s| d.deliver(k, s, item));
        }
    }

    fn outbound(&mut self, now: Instant, d: &mut Dispatch) -> usize {
        let (connects, dirty) = {
            let core = d.exec().core();
            let mut ob = core.outbound.borrow_mut();
            if !ob.has_work() {
                return 0;
            }
            (ob.take_connects(), ob.take_dirty())
        };
        let work = connects.len() + dirty.len();
        for c in connects {
            if c.abandoned() {
                c.ended(None, &mut d.exec().core().outbound.borrow_mut().counters);
                continue;
            }
            match TcpStream::connect(c.addr()) {
                Ok(sock) => {
                    let _ = sock.set_nodelay(true);
                    match self.insert(sock, now, Kind::Client { c: c.clone(), connected: false }) {
                        Some(k) => c.connecting(k),
                        None => c.ended(Some(EndReason::Failed), &mut d.exec().core().outbound.borrow_mut().counters),
                    }
                }
                Err(e) => {
                    tracing::debug!("connect to {}: {e}", c.addr());
                    c.ended(Some(reason(&e)), &mut d.exec().core().outbound.borrow_mut().counters);
                }
            }
        }
        for c in dirty {
            if let Some(idx) = c.key().and_then(|k| self.lookup(k)) {
                self.client_io(idx, d);
            }
        }
        work
    }

    fn begin_drain(&mut self, now: Instant, d: &mut Dispatch) {
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.listener_backlogged = false;
        self.draining = true;
        for idx in 0..self.conns.len() {
            let Some(Some(c)) = self.conns.get_mut(idx) else { continue };
            let k = key(idx, c.gen);
            match &mut c.kind {
                Kind::Http { s, .. } => {
                    d.begin_drain(k, s);
                    self.flush(idx, now, d);
                }
                // Its responses are all out; the drain should not wait out its linger.
                Kind::Linger { .. } => self.close(idx, d, None),
                Kind::Client { .. } => {}
            }
        }
    }

    fn active(&self) -> usize {
        self.live()
    }

    fn max_sleep(&self) -> Duration {
        TICK
    }

    fn report(&self) -> TransportReport {
        let mut by_kind = (0, 0, 0);
        for c in self.conns.iter().flatten() {
            match c.kind {
                Kind::Http { .. } => by_kind.0 += 1,
                Kind::Client { .. } => by_kind.1 += 1,
                Kind::Linger { .. } => by_kind.2 += 1,
            }
        }
        TransportReport {
            accepted: self.accepted,
            refused_over_cap: self.refused_over_cap,
            stack: None,
            kernel_conns: Some(by_kind),
        }
    }
}
