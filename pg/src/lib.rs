//! A PostgreSQL client that lives on a px-appliance core.
//!
//! Two layers, like the rest of the appliance:
//! - [`proto`]: the protocol as a state machine with no I/O in it ([`PgConn`]): bytes in,
//!   bytes out, events. Startup (SCRAM-SHA-256, md5 or cleartext password), named
//!   statements prepared once per connection, and batches of Bind/Execute pipelined
//!   behind one Sync each. Message encoding and decoding come from the
//!   `postgres-protocol` crate.
//! - [`pool`]: the glue to a core's outbound connections ([`px_dataplane::app::Cx`]):
//!   `connections_per_core` connections per core, each driven by a background task on
//!   the core's executor, batches from many requests in flight on each at once,
//!   reconnection with backoff, and fast typed failures while the database is away.
//!
//! Nothing here blocks and nothing crosses a thread but the start-up [`Health`] report.

#![deny(unsafe_code)]

pub mod pool;
pub mod proto;

pub use pool::{Health, Pool, PoolConfig, PoolCounters};
pub use proto::{BatchId, ConnectParams, Event, Param, PgConn, Query, Row, Rows, Statement};

use std::time::Duration;

/// Why a database request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The TCP connection could not be opened.
    #[error("cannot connect to the database at {addr}: {reason}")]
    Connect {
        /// Where.
        addr: String,
        /// Why (refused, timed out, unreachable).
        reason: String,
    },
    /// The server refused our credentials, or asked for a method we do not speak.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The server answered with an error.
    #[error("server error {code} ({severity}): {message}")]
    Server {
        /// ERROR, FATAL, PANIC.
        severity: String,
        /// SQLSTATE, e.g. `42P01`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The server sent something the protocol does not allow here.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The connection closed with this request in flight.
    #[error("the connection to the database closed")]
    Closed,
    /// No connection to the database is up on this core (it is down, or still
    /// connecting): the request failed at once.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database did not answer in time.
    #[error("the database did not answer within {0:?}")]
    TimedOut(Duration),
}

impl PgError {
    /// The SQLSTATE of a server error.
    pub fn code(&self) -> Option<&str> {
        match self {
            PgError::Server { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True for errors that retrying later will not cure: bad credentials, a database
    /// or a table that does not exist.
    pub fn is_config(&self) -> bool {
        match self {
            PgError::Auth(_) => true,
            // 28xxx invalid authorisation, 3D000 no such database, 42xxx a statement
            // that does not prepare (schema missing).
            PgError::Server { code, .. } => code.starts_with("28") || code == "3D000" || code.starts_with("42"),
            _ => false,
        }
    }
}
