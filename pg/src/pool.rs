//! A core's connections to PostgreSQL: [`Pool::start`] on each core opens
//! `connections` of them, each owned by a background task on the core's executor (its
//! driver); a request hands its batch to the least-loaded connection that is up
//! ([`Pool::batch`]) and waits for the answer.
//!
//! - **Pipelining.** A driver sends every batch queued since its last turn at once and
//!   keeps up to `max_pipeline` batches in flight; answers come back in order, so the
//!   driver matches them to their waiters with a FIFO. Batches of different requests
//!   share one connection and one round trip.
//! - **Failure.** When the database goes away, the connection ends (EOF, reset, the
//!   server's FATAL, or no answer within `query_timeout` while batches are in flight):
//!   everything in flight on it fails at once with the reason, the connection is marked
//!   down, and new batches on a core with no connection up fail at once with
//!   [`PgError::Unavailable`], so handlers answer 503 without waiting. A request whose
//!   batch is not answered within `query_timeout` (or its own deadline) gets
//!   [`PgError::TimedOut`].
//! - **Recovery.** A driver whose connection ended tries again after a backoff that
//!   doubles from `reconnect_min` to `reconnect_max` and starts over once a connection
//!   has served; the pool serves again as soon as one connection is up.
//! - **Start-up.** Every outcome of a connection attempt is reported to the process's
//!   [`Health`], so the start-up can wait for the first one and refuse to start on bad
//!   credentials.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use px_dataplane::app::{Cx, Upstream, UpstreamError};

use crate::proto::{ConnectParams, Event, PgConn, Query, Rows, Statement};
use crate::PgError;

/// How a core's pool connects and behaves.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The server.
    pub addr: SocketAddr,
    /// Credentials and database.
    pub params: ConnectParams,
    /// Statements prepared on every connection.
    pub statements: &'static [Statement],
    /// Connections per core.
    pub connections: usize,
    /// Time allowed to connect and authenticate.
    pub connect_timeout: Duration,
    /// Time a batch may wait for its answer.
    pub query_timeout: Duration,
    /// First wait before reconnecting.
    pub reconnect_min: Duration,
    /// Longest wait before reconnecting.
    pub reconnect_max: Duration,
    /// Batches in flight per connection at most (more wait in its queue).
    pub max_pipeline: usize,
}

/// Counters summed over every core's pool.
#[derive(Debug, Default)]
pub struct PoolCounters {
    /// Connections that authenticated and prepared their statements.
    pub connects: AtomicU64,
    /// Connection attempts that failed (refused, timed out, rejected).
    pub connect_failures: AtomicU64,
    /// Connections that ended after serving.
    pub disconnects: AtomicU64,
    /// Batches sent.
    pub batches: AtomicU64,
    /// Queries in them.
    pub queries: AtomicU64,
    /// Batches that failed (server error, connection lost).
    pub failed: AtomicU64,
    /// Batches refused at once: no connection up.
    pub unavailable: AtomicU64,
    /// Batches not answered in time.
    pub timed_out: AtomicU64,
}

impl std::fmt::Display for PoolCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write!(
            f,
            "db_connects={} db_connect_failures={} db_disconnects={} db_batches={} db_queries={} db_failed={} \
             db_unavailable={} db_timed_out={}",
            g(&self.connects),
            g(&self.connect_failures),
            g(&self.disconnects),
            g(&self.batches),
            g(&self.queries),
            g(&self.failed),
            g(&self.unavailable),
            g(&self.timed_out)
        )
    }
}

/// What the process knows of its database connections (shared by every core).
#[derive(Debug, Default)]
pub struct Health {
    first: Mutex<Option<Result<(), PgError>>>,
    cv: Condvar,
    /// Counters.
    pub counters: PoolCounters,
}

impl Health {
    fn report(&self, r: &Result<(), PgError>) {
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(r.clone());
            self.cv.notify_all();
        }
    }

    /// The outcome of the first connection attempt of any core, waiting at most
    /// `limit` for it (`None`: no attempt finished in time).
    pub fn wait_first(&self, limit: Duration) -> Option<Result<(), PgError>> {
        let first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        let (first, _) = self.cv.wait_timeout_while(first, limit, |f| f.is_none()).unwrap_or_else(|e| e.into_inner());
        first.clone()
    }
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

#[derive(Default)]
struct Waiter {
    result: Option<Result<Vec<Rows>, PgError>>,
    waker: Option<Waker>,
}

type WaiterRef = Rc<RefCell<Waiter>>;

fn complete(w: &WaiterRef, r: Result<Vec<Rows>, PgError>) {
    let mut w = w.borrow_mut();
    w.result = Some(r);
    if let Some(k) = w.waker.take() {
        k.wake();
    }
}

/// One connection's queue, shared by the pool and the connection's driver. `last_error`
/// is None only until the first attempt ends.
#[derive(Default)]
struct Link {
    up: bool,
    queued: VecDeque<(Vec<Query>, WaiterRef)>,
    in_flight: usize,
    driver: Option<Waker>,
    last_error: Option<PgError>,
}

/// One core's database connections.
pub struct Pool {
    cfg: Rc<PoolConfig>,
    links: Vec<Rc<RefCell<Link>>>,
    health: Arc<Health>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} → {}, {} up)", self.links.len(), self.cfg.addr, self.up())
    }
}

impl Pool {
    /// Starts `cfg.connections` connection drivers on the core of `cx`.
    pub fn start(cx: &Cx, cfg: PoolConfig, health: Arc<Health>) -> Pool {
        let cfg = Rc::new(cfg);
        let links: Vec<_> = (0..cfg.connections.max(1)).map(|_| Rc::new(RefCell::new(Link::default()))).collect();
        for link in &links {
            cx.spawn(drive(cx.clone(), cfg.clone(), link.clone(), health.clone()));
        }
        Pool { cfg, links, health }
    }

    /// Connections up now.
    pub fn up(&self) -> usize {
        self.links.iter().filter(|l| l.borrow().up).count()
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    /// Runs `queries` as one batch (one implicit transaction) and returns one [`Rows`]
    /// per query. Fails at once when no connection is up, with
    /// [`PgError::TimedOut`] when no answer comes within `query_timeout` (or the
    /// request's deadline, if sooner).
    pub async fn batch(&self, cx: &Cx, queries: Vec<Query>) -> Result<Vec<Rows>, PgError> {
        let c = &self.health.counters;
        let Some(link) = self.pick() else {
            bump(&c.unavailable, 1);
            let why = self.links.iter().find_map(|l| l.borrow().last_error.clone());
            return Err(PgError::Unavailable(why.map_or_else(|| "still connecting".into(), |e| e.to_string())));
        };
        bump(&c.batches, 1);
        bump(&c.queries, queries.len() as u64);
        let waiter: WaiterRef = Rc::default();
        {
            let mut l = link.borrow_mut();
            l.queued.push_back((queries, waiter.clone()));
            if let Some(w) = l.driver.take() {
                w.wake();
            }
        }
        let limit = self.cfg.query_timeout;
        let at = (cx.now() + limit).min(cx.deadline());
        let answer = poll_fn(|tcx| {
            let mut w = waiter.borrow_mut();
            match w.result.take() {
                Some(r) => Poll::Ready(r),
                None => {
                    w.waker = Some(tcx.waker().clone());
                    Poll::Pending
                }
            }
        });
        match cx.timeout(at, answer).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => {
                bump(&c.failed, 1);
                Err(e)
            }
            Err(_) => {
                bump(&c.timed_out, 1);
                Err(PgError::TimedOut(limit))
            }
        }
    }

    /// Runs one query.
    pub async fn query(&self, cx: &Cx, q: Query) -> Result<Rows, PgError> {
        let mut rows = self.batch(cx, vec![q]).await?;
        rows.pop().ok_or_else(|| PgError::Protocol("a query returned no result".into()))
    }

    /// The connection that is up with the least work queued and in flight; while none
    /// is up, one still making its first attempt (the batch waits for it: the core has
    /// just started). None when every connection has failed since it was last up.
    fn pick(&self) -> Option<Rc<RefCell<Link>>> {
        let load = |l: &&Rc<RefCell<Link>>| {
            let l = l.borrow();
            l.queued.len() + l.in_flight
        };
        let up = self.links.iter().filter(|l| l.borrow().up).min_by_key(load);
        up.or_else(|| self.links.iter().filter(|l| l.borrow().last_error.is_none()).min_by_key(load)).cloned()
    }
}

/// One connection's life, again and again: connect, serve until it ends, back off.
async fn drive(cx: Cx, cfg: Rc<PoolConfig>, link: Rc<RefCell<Link>>, health: Arc<Health>) {
    let mut backoff = cfg.reconnect_min;
    let mut was_up = true; // log the first failure
    loop {
        let (err, served) = session(&cx, &cfg, &link, &health).await;
        let c = &health.counters;
        if served {
            bump(&c.disconnects, 1);
            backoff = cfg.reconnect_min;
        } else {
            bump(&c.connect_failures, 1);
            health.report(&Err(err.clone()));
        }
        if served || was_up {
            tracing::warn!("db {}: {err}; reconnecting (backoff from {:?})", cfg.addr, backoff);
        } else {
            tracing::debug!("db {}: {err}; next attempt in {:?}", cfg.addr, backoff);
        }
        was_up = false;
        let queued = {
            let mut l = link.borrow_mut();
            l.up = false;
            l.in_flight = 0;
            l.last_error = Some(err.clone());
            std::mem::take(&mut l.queued)
        };
        for (_, w) in queued {
            complete(&w, Err(PgError::Unavailable(err.to_string())));
        }
        cx.sleep(backoff).await;
        backoff = (backoff * 2).min(cfg.reconnect_max);
    }
}

fn lost(e: UpstreamError) -> PgError {
    match e {
        UpstreamError::Closed => PgError::Closed,
        e => PgError::Unavailable(format!("connection lost: {e}")),
    }
}

/// Feeds what arrived to `pg`; `Some(error)` when the connection is over.
fn read_into(
    up: &mut Upstream,
    pg: &mut PgConn,
    tcx: &mut std::task::Context<'_>,
    buf: &mut [u8],
) -> Poll<Result<(), PgError>> {
    match up.poll_read(tcx, buf) {
        Poll::Pending => Poll::Pending,
        Poll::Ready(Ok(0)) => Poll::Ready(Err(PgError::Closed)),
        Poll::Ready(Ok(n)) => Poll::Ready(pg.receive(&buf[..n])),
        Poll::Ready(Err(e)) => Poll::Ready(Err(lost(e))),
    }
}

/// One connection: returns why it ended and whether it served.
async fn session(cx: &Cx, cfg: &PoolConfig, link: &RefCell<Link>, health: &Health) -> (PgError, bool) {
    let addr = cfg.addr;
    let mut up = match cx.connect(addr, cfg.connect_timeout).await {
        Ok(u) => u,
        Err(e) => return (PgError::Connect { addr: addr.to_string(), reason: e.to_string() }, false),
    };
    let mut pg = PgConn::new(cfg.params.clone(), cfg.statements);
    let mut buf = vec![0u8; 64 << 10];
    let startup = poll_fn(|tcx| loop {
        let out = pg.take_output();
        if !out.is_empty() {
            if let Err(e) = up.queue(&out) {
                return Poll::Ready(Err(lost(e)));
            }
        }
        if pg.is_ready() {
            return Poll::Ready(Ok(()));
        }
        match read_into(&mut up, &mut pg, tcx, &mut buf) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {}
        }
    });
    match cx.timeout(cx.now() + cfg.connect_timeout, startup).await {
        Err(_) => return (PgError::TimedOut(cfg.connect_timeout), false),
        Ok(Err(e)) => return (e, false),
        Ok(Ok(())) => {}
    }
    while let Some(ev) = pg.poll_event() {
        debug_assert!(matches!(ev, Event::Ready));
    }
    link.borrow_mut().up = true;
    health.report(&Ok(()));
    bump(&health.counters.connects, 1);
    tracing::debug!("db {addr}: connected (server {})", pg.server_version().unwrap_or("?"));

    let mut in_flight: VecDeque<WaiterRef> = VecDeque::new();
    let mut stall = None;
    let err = poll_fn(|tcx| loop {
        {
            let mut l = link.borrow_mut();
            while in_flight.len() < cfg.max_pipeline {
                let Some((queries, w)) = l.queued.pop_front() else { break };
                if Rc::strong_count(&w) == 1 {
                    continue; // its request gave up waiting
                }
                match pg.submit(&queries) {
                    Ok(_) => in_flight.push_back(w),
                    Err(e) => complete(&w, Err(e)),
                }
            }
            l.in_flight = in_flight.len();
            l.driver = Some(tcx.waker().clone());
        }
        let out = pg.take_output();
        if !out.is_empty() {
            if let Err(e) = up.queue(&out) {
                return Poll::Ready(lost(e));
            }
        }
        match read_into(&mut up, &mut pg, tcx, &mut buf) {
            Poll::Ready(Err(e)) => return Poll::Ready(e),
            Poll::Ready(Ok(())) => {
                while let Some(ev) = pg.poll_event() {
                    if let (Event::Done { result, .. }, Some(w)) = (ev, in_flight.pop_front()) {
                        complete(&w, result);
                    }
                }
                stall = None; // progress
                continue;
            }
            Poll::Pending => {}
        }
        // No answer at all for query_timeout while batches wait: the server is stuck or
        // the path is gone without a reset. End the connection and start over.
        if in_flight.is_empty() {
            stall = None;
        } else {
            let timer = stall.get_or_insert_with(|| cx.sleep(cfg.query_timeout));
            if Pin::new(timer).poll(tcx).is_ready() {
                return Poll::Ready(PgError::TimedOut(cfg.query_timeout));
            }
        }
        return Poll::Pending;
    })
    .await;
    for w in in_flight {
        complete(&w, Err(err.clone()));
    }
    pg.terminate();
    let _ = up.queue(&pg.take_output());
    (err, true)
}
