//! The handler API: what an app sees of a request and what it may use to answer, and
//! the dispatch of requests to handlers.
//!
//! Two kinds of handler:
//! - a **sync** handler is a plain function
//!   `for<'a> fn(&'a Request<'a>, &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError>`; it
//!   answers at once, and through [`Ctx`] it reaches the connection's rewindable
//!   [`Arena`](crate::mem::Arena), read-only [`Shared`] state, per-connection
//!   [`ConnState`], and the control thread ([`Ctx::call_control`], PyParallel's
//!   `call_from_main_thread`) or an I/O thread ([`Ctx::call_blocking`]).
//! - an **async** handler is `fn(OwnedRequest, Cx) -> HandlerFuture`, usually written as
//!   `Box::pin(async move { ... })`: a future polled by the core's own executor inside
//!   the loop's turn ([`exec`]). It can wait on timers ([`Cx::sleep`]) and outbound TCP
//!   connections ([`Cx::connect`]) without leaving the core. Each such request has a
//!   deadline (504), is cancelled when its client goes away, and counts against a
//!   per-core cap of requests in flight (503 beyond it).
//!
//! See docs/api.md for a complete example app.

mod control;
pub mod dispatch;
pub mod exec;
pub mod latency;
pub mod outbound;
mod router;
mod shared;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

pub use control::{BlockingJob, ControlHandle, ControlJob, ControlPlane, ControlState, CoreMailbox};
pub use dispatch::{AppSet, CoreInit, Dispatch, DispatchConfig, HttpSession};
pub use exec::{timeout, BackgroundFuture, Elapsed, ExecCounters, Executor, ReadAt, Sleep, Timeout};
pub use latency::Latency;
pub use outbound::{ClientConn, ClientPhase, OutboundCounters, Upstream, UpstreamError};
pub use router::{Route, RouteError, Routed, Router, NO_ROUTE};
pub use shared::{ConnState, Shared};

use crate::http::{Method, Request, Response, Version};
use crate::mem::{Arena, ArenaError};

/// What a sync handler returns on success.
pub enum Reply<'a> {
    /// The response, ready now.
    Now(Response<'a>),
    /// Run this job on the control thread; its answer is the response. Made by
    /// [`Ctx::call_control`].
    Control(ControlJob),
    /// Run this job on an I/O thread; its answer is the response. Made by
    /// [`Ctx::call_blocking`].
    Blocking(BlockingJob),
    /// Finish on the core's executor, as an async handler does (deadline, cancellation,
    /// the per-core cap): a sync handler that answers most requests at once and waits
    /// only for some. Made by [`Ctx::later`].
    Later(HandlerFuture),
}

impl std::fmt::Debug for Reply<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Now(r) => write!(f, "Reply::Now({})", r.status),
            Reply::Control(_) => f.write_str("Reply::Control"),
            Reply::Blocking(_) => f.write_str("Reply::Blocking"),
            Reply::Later(_) => f.write_str("Reply::Later"),
        }
    }
}

impl<'a> From<Response<'a>> for Reply<'a> {
    fn from(r: Response<'a>) -> Self {
        Reply::Now(r)
    }
}

/// Why a handler gave up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// The arena cap or pool ran out: answered 503, connection closed.
    #[error(transparent)]
    Arena(#[from] ArenaError),
    /// An error with its status (4xx, 5xx) and a short message.
    #[error("{status}: {message}")]
    Status {
        /// Status code to answer.
        status: u16,
        /// Body text.
        message: String,
    },
}

impl HandlerError {
    /// An error answered with `status` and `message`.
    pub fn status(status: u16, message: impl Into<String>) -> Self {
        HandlerError::Status { status, message: message.into() }
    }
}

/// A sync request handler.
pub type SyncHandler = for<'a> fn(&'a Request<'a>, &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError>;

/// The future an async handler returns; it runs on the core that received the request.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Response<'static>, HandlerError>>>>;

/// An async request handler.
pub type AsyncHandler = fn(OwnedRequest, Cx) -> HandlerFuture;

/// A route's handler.
#[derive(Clone, Copy)]
pub enum Handler {
    /// Answers at once.
    Sync(SyncHandler),
    /// Answers when its future completes.
    Async(AsyncHandler),
}

/// Everything a sync handler may use besides the request.
pub struct Ctx<'a> {
    pub(crate) arena: &'a Arena,
    pub(crate) shared: &'a Shared,
    pub(crate) conn: &'a mut ConnState,
    pub(crate) now: SystemTime,
    pub(crate) core: &'a Rc<exec::CoreShared>,
    pub(crate) deadline: Instant,
}

impl<'a> Ctx<'a> {
    /// The connection's arena; what is allocated here lives until the response is sent.
    pub fn arena(&self) -> &'a Arena {
        self.arena
    }

    /// Read-only state of type `T` registered before the loops started.
    pub fn shared<T: Send + Sync + 'static>(&self) -> Option<&'a T> {
        self.shared.get::<T>()
    }

    /// This connection's state of type `T`, created with `Default` on first use.
    pub fn conn_state<T: Default + 'static>(&mut self) -> &mut T {
        self.conn.get_or_default::<T>()
    }

    /// The time passed to the engine for this request.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// Runs `job` on the control thread; its [`OwnedResponse`](crate::http::OwnedResponse)
    /// becomes this request's response. Later pipelined requests on the connection wait.
    /// When the bounded queue is full the answer is 503 at once.
    pub fn call_control(&mut self, job: ControlJob) -> Result<Reply<'a>, HandlerError> {
        Ok(Reply::Control(job))
    }

    /// Runs `job`, which may block (a cold file read), on one of the I/O threads
    /// (`control.io_threads`); its answer becomes this request's response, as with
    /// [`call_control`](Self::call_control). 503 at once when the queue is full.
    pub fn call_blocking(&mut self, job: BlockingJob) -> Result<Reply<'a>, HandlerError> {
        Ok(Reply::Blocking(job))
    }

    /// The async context this request would have as an async handler's: its timers,
    /// file reads, outbound connections and deadline, for a future given to
    /// [`later`](Self::later).
    pub fn cx(&self) -> Cx {
        Cx { core: self.core.clone(), deadline: self.deadline }
    }

    /// Answers with `fut`, run on the core's executor like an async handler's future
    /// (503 at once when the core has `handlers.max_in_flight_per_core` in flight).
    pub fn later(&mut self, fut: HandlerFuture) -> Result<Reply<'a>, HandlerError> {
        Ok(Reply::Later(fut))
    }
}

/// A request copied out of the connection's buffer, for an async handler to own.
#[derive(Debug, Clone)]
pub struct OwnedRequest {
    /// The method.
    pub method: Method,
    /// The version.
    pub version: Version,
    /// The path, still percent-encoded.
    pub path: String,
    /// The raw query string ("" when absent).
    pub query: String,
    /// Header fields in arrival order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The decoded body.
    pub body: Vec<u8>,
    /// Path parameters (name, raw value).
    pub params: Vec<(&'static str, String)>,
}

impl OwnedRequest {
    /// Copies `req`.
    pub fn from_request(req: &Request<'_>) -> OwnedRequest {
        OwnedRequest {
            method: req.method(),
            version: req.version(),
            path: req.path().to_string(),
            query: req.query_string().to_string(),
            headers: req.headers().iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect(),
            body: req.body().to_vec(),
            params: req.params().iter().map(|(k, v)| (*k, v.to_string())).collect(),
        }
    }

    /// Path parameter `name` as it appeared on the wire.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// The first query parameter named `name`, decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        crate::http::query_param(&self.query, name).map(|c| c.into_owned())
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }
}

/// What an async handler may use: the core's timers and outbound connections, shared
/// state, the time. Cheap to clone; it stays on the core (it is not `Send`).
#[derive(Clone)]
pub struct Cx {
    pub(crate) core: Rc<exec::CoreShared>,
    pub(crate) deadline: Instant,
}

impl Cx {
    /// Read-only state of type `T` registered before the loops started.
    pub fn shared<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.core.shared().get::<T>()
    }

    /// The core's time at the start of this turn.
    pub fn now(&self) -> Instant {
        self.core.now()
    }

    /// When this request's deadline passes (it is then answered 504 and its future
    /// dropped).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// A future that completes `d` after now, on this core's timer heap.
    pub fn sleep(&self, d: Duration) -> Sleep {
        Sleep::until(self.core.clone(), self.core.now() + d)
    }

    /// `fut`, or [`Elapsed`] once the core's time reaches `at`.
    pub fn timeout<F: Future>(&self, at: Instant, fut: F) -> Timeout<F> {
        exec::timeout(&self.core, at, fut)
    }

    /// Opens a TCP connection to `addr` from this core, through whichever transport the
    /// core runs (kernel sockets, or our TCP engine over AF_XDP). Fails with a typed
    /// error when refused, reset, or not established within `timeout`.
    pub async fn connect(&self, addr: std::net::SocketAddr, timeout: Duration) -> Result<Upstream, UpstreamError> {
        outbound::connect(&self.core, addr, timeout).await
    }

    /// Reads `len` bytes of `file` at `offset` through this core's io_uring, with the
    /// core's other reads in one submission per loop turn: bytes in the page cache come
    /// back in the same turn, others when the disk has them, while the core serves
    /// other requests. Fewer bytes at the end of the file. Fails with
    /// `ErrorKind::Unsupported` where io_uring is refused
    /// ([`file_reads_available`](Self::file_reads_available) says so beforehand).
    pub fn read_at(&self, file: std::sync::Arc<std::fs::File>, offset: u64, len: usize) -> ReadAt {
        ReadAt::new(self.core.clone(), file, offset, len)
    }

    /// True when [`read_at`](Self::read_at) can run on this core (io_uring is allowed;
    /// the ring is made on first use and a refusal is logged once).
    pub fn file_reads_available(&self) -> bool {
        self.core.file_reads_available()
    }

    /// Starts `fut` as a background task on this core: it answers no request, has no
    /// deadline, and is dropped when the core stops serving (after its last request).
    /// App-level clients run their connections this way.
    pub fn spawn(&self, fut: impl Future<Output = ()> + 'static) {
        self.core.spawn(Box::pin(fut));
    }

    /// This core's value of type `T`, built by `init` the first time the core asks (a
    /// connection pool, a cache): per core, never shared with another, no locks.
    pub fn local<T: 'static>(&self, init: impl FnOnce() -> T) -> Rc<T> {
        self.core.local(init)
    }

    /// A context with no request behind it (for [`CoreInit`] hooks and the background
    /// tasks they start): its deadline is far away.
    pub(crate) fn for_core(core: Rc<exec::CoreShared>) -> Cx {
        let deadline = core.now() + Duration::from_secs(100 * 365 * 86_400);
        Cx { core, deadline }
    }
}
