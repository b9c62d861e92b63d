//! The handler API: what an app sees of a request and what it may use to answer.
//!
//! A handler is a plain function
//! `for<'a> fn(&'a Request<'a>, &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError>`.
//! Through [`Ctx`] it reaches:
//! - the connection's rewindable [`Arena`] (everything allocated there is freed in one
//!   step once the response is on its way);
//! - read-only [`Shared`] state built before the core loops start (an index, a table);
//! - per-connection [`ConnState`] that outlives one request;
//! - the control thread, for work that must be serialised across cores
//!   ([`Ctx::call_control`], PyParallel's `call_from_main_thread`).
//!
//! See docs/api.md for a complete example app.

mod control;
mod router;
mod shared;

use std::time::SystemTime;

pub use control::{BlockingJob, ControlHandle, ControlJob, ControlPlane, ControlState, CoreMailbox};
pub use router::{Route, RouteError, Routed, Router};
pub use shared::{ConnState, Shared};

use crate::http::{Request, Response};
use crate::mem::{Arena, ArenaError};

/// What a handler returns on success.
#[derive(Debug)]
pub enum Reply<'a> {
    /// The response, ready now.
    Now(Response<'a>),
    /// The answer will come from the control thread ([`Ctx::call_control`]).
    Deferred,
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
    /// A client error with its status (4xx) and a short message.
    #[error("{status}: {message}")]
    Status {
        /// Status code to answer.
        status: u16,
        /// Body text.
        message: String,
    },
}

impl HandlerError {
    /// A client error answered with `status` and `message`.
    pub fn status(status: u16, message: impl Into<String>) -> Self {
        HandlerError::Status { status, message: message.into() }
    }
}

/// A request handler.
pub type Handler = for<'a> fn(&'a Request<'a>, &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError>;

/// Everything a handler may use besides the request.
pub struct Ctx<'a> {
    pub(crate) arena: &'a Arena,
    pub(crate) shared: &'a Shared,
    pub(crate) conn: &'a mut ConnState,
    pub(crate) control: &'a ControlHandle,
    pub(crate) now: SystemTime,
    pub(crate) conn_id: u64,
    pub(crate) deferred: bool,
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
        let queued = self.control.submit(self.conn_id, job).is_ok();
        Ok(self.defer_if(queued, "control queue full\n"))
    }

    /// `Reply::Deferred` if the job was queued, else 503 now.
    fn defer_if(&mut self, queued: bool, full: &'static str) -> Reply<'a> {
        if queued {
            self.deferred = true;
            Reply::Deferred
        } else {
            Reply::Now(Response::text(503, full).with_header("Retry-After", "1"))
        }
    }

    /// Runs `job`, which may block (a cold file read), on one of the I/O threads
    /// (`control.io_threads`); its answer becomes this request's response, as with
    /// [`call_control`](Self::call_control). 503 at once when the queue is full.
    pub fn call_blocking(&mut self, job: BlockingJob) -> Result<Reply<'a>, HandlerError> {
        let queued = self.control.submit_blocking(self.conn_id, job).is_ok();
        Ok(self.defer_if(queued, "I/O queue full\n"))
    }
}
