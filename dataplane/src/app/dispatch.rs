//! Dispatch: drives one core's HTTP connections through routing and handlers.
//!
//! The HTTP engine yields requests and takes responses; this module is what sits
//! between it and the apps. A sync handler runs at once, inside `catch_unwind` (a panic
//! answers 500 and closes that connection; the core goes on). An async handler's future
//! is spawned on the core's [`Executor`] with the request copied out of the buffer, and
//! its response is delivered when it completes (or 504 at the deadline). Jobs for the
//! control thread and the I/O threads are submitted here and their answers delivered the
//! same way. A transport calls [`Dispatch::received`], [`Dispatch::consumed`],
//! [`Dispatch::peer_closed`] for each connection event and [`Dispatch::run`] once a
//! turn, then sends what the sessions queued.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::exec::{Outcome, TaskGuard};
use super::{
    ConnState, ControlHandle, Ctx, Cx, Executor, Handler, HandlerError, Latency, OwnedRequest, Reply, Routed, Router,
    Shared,
};
use crate::http::{
    header_slots, Answer, DateCache, HttpConn, HttpLimits, HttpStats, Incoming, OwnedResponse, Request, Response,
    Waiting,
};
use crate::mem::{Arena, ChunkPool};

/// What the core loops serve: the routes and the read-only state, built before start.
pub struct AppSet {
    /// All routes.
    pub router: Router,
    /// Read-only shared state.
    pub shared: Shared,
    /// Run on each core as it starts, before it serves (an app opens its per-core
    /// client connections here).
    pub core_init: Vec<CoreInit>,
}

/// A hook run on each core as it starts, with a context that has no request behind it.
pub type CoreInit = Arc<dyn Fn(&Cx) + Send + Sync>;

impl AppSet {
    /// Routes and shared state, with no per-core hooks.
    pub fn new(router: Router, shared: Shared) -> AppSet {
        AppSet { router, shared, core_init: Vec::new() }
    }
}

/// Dispatch settings (from `[http]`, `[arena]` and `[handlers]`).
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// HTTP limits.
    pub limits: HttpLimits,
    /// Arena cap per connection.
    pub arena_cap: usize,
    /// Time an async handler has before 504.
    pub deadline: Duration,
    /// Async requests in flight per core before 503.
    pub max_in_flight: usize,
    /// File reads in flight on the core's io_uring.
    pub file_reads: usize,
}

/// One HTTP connection's state above the transport.
pub struct HttpSession {
    /// The protocol engine.
    pub http: HttpConn,
    state: ConnState,
    task: Option<TaskGuard>,
    /// The wait a deadline was last armed for.
    watched: (Waiting, u64),
    /// The route and the turn's clock of the request whose answer is awaited.
    pending: (u16, Instant),
}

/// Something a request was waiting for, now here.
#[derive(Debug)]
pub enum Delivery {
    /// An async handler's task ended.
    Task(Outcome),
    /// The control thread or an I/O thread answered.
    Job(OwnedResponse),
    /// A client deadline (`header_timeout_ms`, `body_timeout_ms`) passed for the wait
    /// [`HttpConn::waiting`] named then; stale if the connection has moved on.
    Deadline(Waiting, u64),
}

/// One core's dispatcher.
pub struct Dispatch {
    apps: Arc<AppSet>,
    cfg: DispatchConfig,
    pool: Rc<ChunkPool>,
    control: ControlHandle,
    exec: Executor,
    /// The Date header cache.
    pub date: DateCache,
    /// HTTP counters.
    pub stats: HttpStats,
    /// Request latency per route and status class.
    pub latency: Latency,
    now: SystemTime,
    mono: Instant,
    /// Client deadlines armed: (due, connection, the wait), earliest first. Entries are
    /// not removed when a wait ends; a stale one is recognised when it comes due.
    deadlines: BinaryHeap<Reverse<(Instant, u64, u64, u8)>>,
}

impl Dispatch {
    /// A dispatcher for one core.
    pub fn new(apps: Arc<AppSet>, cfg: DispatchConfig, pool: Rc<ChunkPool>, control: ControlHandle) -> Dispatch {
        let (now, mono) = (SystemTime::now(), Instant::now());
        let mut date = DateCache::default();
        date.update(now);
        let exec = Executor::new(cfg.max_in_flight, mono, apps.shared.clone());
        exec.set_file_reads(cfg.file_reads);
        let latency = Latency::new(apps.router.labels().len());
        let cx = Cx::for_core(exec.core().clone());
        for init in &apps.core_init {
            init(&cx);
        }
        Dispatch {
            apps,
            cfg,
            pool,
            control,
            exec,
            date,
            stats: HttpStats::default(),
            latency,
            now,
            mono,
            deadlines: BinaryHeap::new(),
        }
    }

    /// Sets the turn's time (wall clock for Date and handlers, monotonic for deadlines).
    pub fn tick(&mut self, wall: SystemTime, mono: Instant) {
        self.now = wall;
        self.mono = mono;
        self.date.update(wall);
    }

    /// The executor (the transport takes outbound work from its shared state).
    pub fn exec(&self) -> &Executor {
        &self.exec
    }

    /// The executor, to start tasks outside a request (tests, app-level clients).
    pub fn exec_mut(&mut self) -> &mut Executor {
        &mut self.exec
    }

    /// The control-plane handle.
    pub fn control(&self) -> &ControlHandle {
        &self.control
    }

    /// The arena pool.
    pub fn pool(&self) -> &Rc<ChunkPool> {
        &self.pool
    }

    /// A new connection's session.
    pub fn open(&self) -> HttpSession {
        let arena = Arena::new(self.pool.clone(), self.cfg.arena_cap);
        HttpSession {
            http: HttpConn::new(arena, &self.cfg.limits),
            state: ConnState::default(),
            task: None,
            watched: (Waiting::Nothing, 0),
            pending: (0, self.mono),
        }
    }

    /// Bytes arrived on connection `key`.
    pub fn received(&mut self, key: u64, s: &mut HttpSession, data: &[u8]) {
        s.http.receive(data, &mut self.stats);
        self.serve(key, s);
    }

    /// The transport sent (or the peer acknowledged) `n` bytes of `s`'s output.
    pub fn consumed(&mut self, key: u64, s: &mut HttpSession, n: usize) {
        s.http.consume(n, &mut self.stats);
        self.serve(key, s);
    }

    /// The peer closed its side. A request still waiting for its handler is cancelled
    /// (its future dropped) and the connection closes: the client went away.
    pub fn peer_closed(&mut self, key: u64, s: &mut HttpSession) {
        if s.http.awaiting().is_some() {
            s.task = None; // dropping the guard cancels the task
            s.http.abandon_awaiting();
        } else {
            s.http.peer_closed();
            self.serve(key, s);
        }
    }

    /// Graceful shutdown of one connection.
    pub fn begin_drain(&mut self, key: u64, s: &mut HttpSession) {
        s.http.begin_drain();
        self.serve(key, s);
    }

    /// One turn of the executor and of job answers: what arrived for which connection.
    /// The transport hands each to [`deliver`](Self::deliver) with the session.
    pub fn run(&mut self, now: Instant) -> Vec<(u64, Delivery)> {
        if self.latency.has_pending() {
            // The requests answered in this turn's I/O: one clock read for all of them.
            self.latency.flush(Instant::now().saturating_duration_since(self.mono));
        }
        let mut out: Vec<(u64, Delivery)> =
            self.exec.run(now).into_iter().map(|c| (c.conn, Delivery::Task(c.outcome))).collect();
        self.control.drain(|id, r| out.push((id, Delivery::Job(r))));
        while let Some(&Reverse((due, key, seq, kind))) = self.deadlines.peek() {
            if due > now {
                break;
            }
            self.deadlines.pop();
            let what = if kind == 0 { Waiting::Head } else { Waiting::Body };
            out.push((key, Delivery::Deadline(what, seq)));
        }
        out
    }

    /// True when [`run`](Self::run) has work now (a task was woken).
    pub fn has_ready(&self) -> bool {
        self.exec.has_ready()
    }

    /// When the executor's next timer or the next client deadline is due.
    pub fn next_timer(&self) -> Option<Instant> {
        let deadline = self.deadlines.peek().map(|Reverse((due, ..))| *due);
        match (self.exec.next_timer(), deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Delivers what request of `s` was waiting for, then serves what follows it.
    pub fn deliver(&mut self, key: u64, s: &mut HttpSession, d: Delivery) {
        if let Delivery::Deadline(what, seq) = d {
            if s.http.waiting() == (what, seq) {
                s.http.time_out(what, &self.date, &mut self.stats);
                self.serve(key, s);
            }
            return;
        }
        let Some(id) = s.http.awaiting() else { return };
        let route = s.pending.0;
        let (resp, close) = match d {
            Delivery::Deadline(..) => unreachable!("handled above"),
            Delivery::Job(r) => (r.into_response(), false),
            Delivery::Task(outcome) => {
                if let Some(g) = s.task.take() {
                    g.disarm();
                }
                match outcome {
                    Outcome::Done(Ok(r)) => (r, false),
                    Outcome::Done(Err(HandlerError::Status { status, message })) => {
                        (Response::text(status, message), false)
                    }
                    Outcome::Done(Err(HandlerError::Arena(e))) => {
                        self.stats.arena_failures += 1;
                        (Response::text(503, format!("{e}\n")), true)
                    }
                    Outcome::TimedOut => (Response::text(504, "the handler's deadline passed\n"), false),
                    Outcome::Panicked => {
                        self.stats.handler_panics += 1;
                        (Response::text(500, "internal error\n"), true)
                    }
                }
            }
        };
        let status = resp.status;
        s.http.respond(id, resp, close, &self.date, &mut self.stats);
        self.answered(route, status, s.pending.1);
        self.serve(key, s);
        if self.latency.has_pending() {
            // Pipelined requests behind this one, answered now, after the turn's I/O.
            self.latency.flush(Instant::now().saturating_duration_since(self.mono));
        }
    }

    /// Answers every request of `s` that can be answered now, then arms the deadline
    /// of what the connection waits for from its client, if that changed.
    pub fn serve(&mut self, key: u64, s: &mut HttpSession) {
        self.answer_ready(key, s);
        let now = s.http.waiting();
        if now == s.watched {
            return;
        }
        s.watched = now;
        let (limit, kind) = match now.0 {
            Waiting::Nothing => return,
            Waiting::Head => (self.cfg.limits.header_timeout_ms, 0),
            Waiting::Body => (self.cfg.limits.body_timeout_ms, 1),
        };
        if limit > 0 {
            self.deadlines.push(Reverse((self.mono + Duration::from_millis(limit), key, now.1, kind)));
        }
    }

    /// Records one request of `route` answered after the turn it was taken up in (an
    /// async handler, a job), taken up in the turn that began at `start`.
    fn answered(&mut self, route: u16, status: u16, start: Instant) {
        self.latency.record(route, status, Instant::now().saturating_duration_since(start));
    }

    fn answer_ready(&mut self, key: u64, s: &mut HttpSession) {
        let HttpSession { http, state, task, pending, .. } = s;
        loop {
            let mut slots = header_slots();
            let Some((incoming, answer)) = http.poll_request(&mut slots, &self.cfg.limits, &self.date, &mut self.stats)
            else {
                return;
            };
            let mut req = match incoming {
                Incoming::Invalid(resp) => {
                    let status = resp.status;
                    answer.send(resp);
                    self.latency.defer(0, status);
                    continue;
                }
                Incoming::Request(req) => req,
            };
            let (handler, route) = match self.apps.router.route(req.method(), req.path()) {
                Routed::Found { handler, params, n_params, route } => {
                    req.set_params(params, n_params);
                    (handler, route)
                }
                Routed::MethodNotAllowed(allow) => {
                    answer.send(Response::text(405, "method not allowed\n").with_header("Allow", allow));
                    self.latency.defer(0, 405);
                    continue;
                }
                Routed::NotFound => {
                    answer.send(Response::text(404, "not found\n"));
                    self.latency.defer(0, 404);
                    continue;
                }
            };
            *pending = (route, self.mono);
            match handler {
                Handler::Sync(h) => {
                    let arena = answer.arena();
                    let deadline = self.mono + self.cfg.deadline;
                    let core = self.exec.core();
                    let mut ctx =
                        Ctx { arena, shared: &self.apps.shared, conn: &mut *state, now: self.now, core, deadline };
                    let result = catch_unwind(AssertUnwindSafe(|| h(&req, &mut ctx)));
                    if let Ok(Ok(Reply::Later(_))) = &result {
                        let Ok(Ok(Reply::Later(fut))) = result else { unreachable!() };
                        let Some(answer) = room_for_one_more(&mut self.exec, &mut self.latency, answer, route) else {
                            continue;
                        };
                        let id = answer.defer();
                        *task = Some(self.exec.spawn(fut, key, id, deadline));
                        continue;
                    }
                    if let Some(status) = finish_sync(result, answer, &req, &self.control, key) {
                        self.latency.defer(route, status);
                    }
                }
                Handler::Async(h) => {
                    let Some(answer) = room_for_one_more(&mut self.exec, &mut self.latency, answer, route) else {
                        continue;
                    };
                    let deadline = self.mono + self.cfg.deadline;
                    let cx = Cx { core: self.exec.core().clone(), deadline };
                    let owned = OwnedRequest::from_request(&req);
                    match catch_unwind(AssertUnwindSafe(|| h(owned, cx))) {
                        Ok(fut) => {
                            let id = answer.defer();
                            *task = Some(self.exec.spawn(fut, key, id, deadline));
                        }
                        Err(_) => {
                            panicked(answer, &req);
                            self.latency.defer(route, 500);
                        }
                    }
                }
            }
        }
    }
}

/// The answer back if the executor has room for another task; else it is answered
/// 503 with `Retry-After: 1` (`handlers.max_in_flight_per_core` in flight) and counted.
fn room_for_one_more<'c>(
    exec: &mut Executor,
    latency: &mut Latency,
    answer: Answer<'c>,
    route: u16,
) -> Option<Answer<'c>> {
    if exec.has_room() {
        return Some(answer);
    }
    exec.count_refused();
    let busy = Response::text(503, "too many requests in flight on this core\n");
    answer.send(busy.with_header("Retry-After", "1"));
    latency.defer(route, 503);
    None
}

fn panicked(mut answer: Answer<'_>, req: &Request<'_>) {
    answer.stats().handler_panics += 1;
    tracing::error!("handler for {} {} panicked; answered 500", req.method().as_str(), req.path());
    answer.send_and_close(Response::text(500, "internal error\n"));
}

/// Turns a sync handler's result into the answer (or a submitted job). Returns the
/// status answered, or `None` if the answer waits for a job.
fn finish_sync(
    result: std::thread::Result<Result<Reply<'_>, HandlerError>>,
    mut answer: Answer<'_>,
    req: &Request<'_>,
    control: &ControlHandle,
    key: u64,
) -> Option<u16> {
    let busy = |what: &'static str| Response::text(503, what).with_header("Retry-After", "1");
    let submitted = match result {
        Ok(Ok(Reply::Now(resp))) => {
            let status = resp.status;
            answer.send(resp);
            return Some(status);
        }
        Ok(Ok(Reply::Control(job))) => control.submit(key, job).map_err(|_| "control queue full\n"),
        Ok(Ok(Reply::Blocking(job))) => control.submit_blocking(key, job).map_err(|_| "I/O queue full\n"),
        Ok(Ok(Reply::Later(_))) => unreachable!("spawned by the caller"),
        Ok(Err(HandlerError::Status { status, message })) => {
            answer.send(Response::text(status, message));
            return Some(status);
        }
        Ok(Err(HandlerError::Arena(e))) => {
            answer.stats().arena_failures += 1;
            tracing::debug!("arena: {e}; answering 503 and closing");
            answer.send_and_close(Response::text(503, format!("{e}\n")));
            return Some(503);
        }
        Err(_) => {
            panicked(answer, req);
            return Some(500);
        }
    };
    match submitted {
        Ok(()) => {
            let _ = answer.defer();
            None
        }
        Err(what) => {
            answer.send(busy(what));
            Some(503)
        }
    }
}
