//! Starting the configured backend's core loops and stopping them.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::app::{Router, Shared};
use crate::config::{Backend, Config};
use crate::http::HttpStats;
use crate::mem::{MemError, PoolStats};
use crate::nic::kernel;
use crate::packet_loop::{QueueReport, XdpServer};

/// What the core loops serve: the routes and the read-only state, built before start.
pub struct AppSet {
    /// All routes.
    pub router: Router,
    /// Read-only shared state.
    pub shared: Shared,
}

/// Why the runtime did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Binding or configuring a listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// A core's arena memory could not be mapped.
    #[error("queue {queue}: arena memory: {source}")]
    Memory {
        /// Queue.
        queue: usize,
        /// Cause.
        source: MemError,
    },
    /// Creating the poller or a thread failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
    /// The backend is not available in this build or on this machine.
    #[error("{0}")]
    Unavailable(String),
}

/// What one core did, reported when it stops.
#[derive(Debug, Clone, Default)]
pub struct CoreReport {
    /// Queue index.
    pub queue: usize,
    /// CPU it ran on (None if pinning failed).
    pub cpu: Option<usize>,
    /// HTTP counters.
    pub http: HttpStats,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections still open when the drain deadline passed.
    pub cut_at_shutdown: usize,
    /// Arena pool occupancy at the end.
    pub pool: PoolStats,
}

/// A running server.
pub enum Running {
    /// The kernel-socket backend.
    Kernel(kernel::Server),
    /// The AF_XDP backend.
    Xdp(XdpServer),
}

/// What the loops reported when they stopped.
#[derive(Debug, Default)]
pub struct Reports {
    /// Kernel-backend cores.
    pub cores: Vec<CoreReport>,
    /// AF_XDP queues.
    pub queues: Vec<QueueReport>,
}

impl Running {
    /// The address clients connect to (kernel backend).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Running::Kernel(s) => Some(s.local_addr()),
            Running::Xdp(_) => None,
        }
    }

    /// A function that starts a graceful shutdown from another thread.
    pub fn shutdown_trigger(&self) -> Arc<dyn Fn() + Send + Sync> {
        match self {
            Running::Kernel(s) => s.shutdown_trigger(),
            Running::Xdp(s) => s.shutdown_trigger(),
        }
    }

    /// Asks every loop to stop.
    pub fn shutdown(&self) {
        (self.shutdown_trigger())();
    }

    /// Waits for every loop to exit.
    pub fn join(self) -> Reports {
        match self {
            Running::Kernel(s) => Reports { cores: s.join(), queues: Vec::new() },
            Running::Xdp(s) => Reports { cores: Vec::new(), queues: s.join() },
        }
    }
}

/// Starts the configured backend; returns once every core loop is serving.
pub fn start(cfg: &Config, apps: Arc<AppSet>) -> Result<Running, StartError> {
    match cfg.server.backend {
        Backend::Kernel => Ok(Running::Kernel(kernel::Server::start(cfg, apps)?)),
        Backend::AfXdp => Ok(Running::Xdp(XdpServer::start(cfg, apps)?)),
    }
}
