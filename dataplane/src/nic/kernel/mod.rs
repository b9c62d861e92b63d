//! Kernel-socket backend: N pinned threads, each with its own SO_REUSEPORT listener and
//! epoll loop (mio), in the shape the AF_XDP loop has: read burst → HTTP engine → write
//! burst. Writes that would block stay queued in the connection's engine and resume on
//! the next writable event; nothing is dropped.

mod core_loop;
mod listener;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use crate::app::ControlPlane;
use crate::config::Config;
use crate::runtime::{AppSet, CoreReport, StartError};

pub use core_loop::CoreLoop;

/// The running kernel backend.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    wakers: Arc<Vec<Arc<mio::Waker>>>,
    threads: Vec<JoinHandle<CoreReport>>,
    control: Option<ControlPlane>,
}

impl Server {
    /// Binds every listener, starts the control thread and the core loops, and returns
    /// when all loops are ready.
    pub fn start(cfg: &Config, apps: Arc<AppSet>) -> Result<Server, StartError> {
        let listeners = listener::bind_all(cfg)?;
        let addr = listeners[0].local_addr().map_err(|source| StartError::Io { what: "local_addr", source })?;
        let control = ControlPlane::start_with(cfg.control.queue_depth, cfg.control.io_threads)
            .map_err(|source| StartError::Io { what: "spawning the control thread", source })?;
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut threads = Vec::new();
        let mut wakers = Vec::new();
        for (queue, l) in listeners.into_iter().enumerate() {
            let cpu = cfg.core_for_queue(queue, cpus);
            let poll = mio::Poll::new().map_err(|source| StartError::Io { what: "epoll_create", source })?;
            let waker = Arc::new(
                mio::Waker::new(poll.registry(), core_loop::WAKER)
                    .map_err(|source| StartError::Io { what: "eventfd", source })?,
            );
            wakers.push(waker.clone());
            let handle = control.handle();
            let w = waker.clone();
            handle.set_waker(Box::new(move || {
                let _ = w.wake();
            }));
            let args = core_loop::Args {
                queue,
                cpu,
                cfg: cfg.clone(),
                apps: apps.clone(),
                control: handle,
                stop: stop.clone(),
                poll,
                listener: l,
            };
            let tx = ready_tx.clone();
            let t = std::thread::Builder::new()
                .name(format!("px-core-{queue}"))
                .spawn(move || core_loop::run(args, tx))
                .map_err(|source| StartError::Io { what: "spawning a core thread", source })?;
            threads.push(t);
        }
        drop(ready_tx);
        let server = Server { addr, stop, wakers: Arc::new(wakers), threads, control: Some(control) };
        for _ in 0..server.threads.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    server.shutdown();
                    server.join();
                    return Err(e);
                }
                Err(_) => {
                    server.shutdown();
                    server.join();
                    return Err(StartError::Unavailable("a core thread died during start".into()));
                }
            }
        }
        Ok(server)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts a graceful shutdown.
    pub fn shutdown(&self) {
        (self.shutdown_trigger())();
    }

    /// A callable that starts a graceful shutdown.
    pub fn shutdown_trigger(&self) -> Arc<dyn Fn() + Send + Sync> {
        let stop = self.stop.clone();
        let wakers = self.wakers.clone();
        Arc::new(move || {
            stop.store(true, Ordering::Release);
            for w in wakers.iter() {
                let _ = w.wake();
            }
        })
    }

    /// Waits for the loops and the control thread.
    pub fn join(mut self) -> Vec<CoreReport> {
        let reports = self.threads.drain(..).filter_map(|t| t.join().ok()).collect();
        if let Some(c) = self.control.take() {
            c.shutdown();
        }
        reports
    }
}
