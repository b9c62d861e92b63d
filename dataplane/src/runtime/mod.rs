//! Starting the core loops, running them, stopping them.
//!
//! Start-up is the same for both transports: the control plane, then one pinned thread
//! per queue that maps its arena memory on its own core (first touch NUMA-local), builds
//! its [`Dispatch`] and its transport, says it is ready, and runs [`run_core`] until
//! shutdown. Only what a transport needs before the threads (bound listeners; the
//! AF_XDP interface, its sockets and program) differs, in [`start`].

mod admin;
mod core;
mod expose;
mod gauge;

pub use self::core::{run_core, turn};
pub use self::gauge::{LoopGauge, LoopSnapshot};

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::app::{ControlPlane, Dispatch, DispatchConfig, ExecCounters, Latency, OutboundCounters};
use crate::config::{Backend, Config};
use crate::http::HttpStats;
use crate::mem::{ChunkPool, PoolStats, Region};
use crate::transport::{kernel, stack, Build, QueuePlan, Transport};

pub use crate::transport::{Doorbell, StartError};

pub use crate::app::AppSet;

/// What one core did, reported when it stops.
#[derive(Debug, Clone, Default)]
pub struct CoreReport {
    /// Queue index.
    pub queue: usize,
    /// CPU it ran on (None if pinning failed).
    pub cpu: Option<usize>,
    /// HTTP counters.
    pub http: HttpStats,
    /// Async tasks.
    pub exec: ExecCounters,
    /// Outbound connections.
    pub outbound: OutboundCounters,
    /// File reads through the core's io_uring.
    pub files: crate::mem::FileReadCounters,
    /// Arena pool occupancy at the end.
    pub pool: PoolStats,
    /// Connections accepted (kernel transport).
    pub accepted: u64,
    /// Connections refused over the per-core and the per-source caps (kernel transport).
    pub refused_over_cap: (u64, u64),
    /// Connections still open when the drain deadline passed.
    pub cut_at_shutdown: usize,
    /// The packet path's counters (stack transport).
    pub stack: Option<stack::StackReport>,
    /// Kernel transport: HTTP connections open, outbound client connections, and
    /// connections lingering after our close.
    pub kernel_conns: Option<(u64, u64, u64)>,
    /// Request latency per route and status class.
    pub latency: Latency,
    /// Jobs queued for the control thread and for the I/O threads (all cores'), and
    /// this core's jobs not yet answered.
    pub jobs: JobQueues,
}

/// Depths of the queues to the control and I/O threads, at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobQueues {
    /// Jobs waiting for the control thread.
    pub control_queued: usize,
    /// Jobs waiting for an I/O thread.
    pub io_queued: usize,
    /// This core's jobs submitted and not yet answered.
    pub outstanding: usize,
}

/// Fills `r` with what `d` and `t` counted so far (the report at exit, and the snapshot
/// the admin listener asks for).
pub(crate) fn fill_report<T: Transport>(r: &mut CoreReport, t: &T, d: &Dispatch) {
    r.http = d.stats.clone();
    r.exec = d.exec().counters();
    r.outbound = d.exec().core().outbound.borrow().counters;
    r.files = d.exec().core().file_read_counters();
    r.pool = d.pool().stats();
    r.latency = d.latency.clone();
    let (control_queued, io_queued) = d.control().queued();
    r.jobs = JobQueues { control_queued, io_queued, outstanding: d.control().outstanding() };
    let tr = t.report();
    r.accepted = tr.accepted;
    r.refused_over_cap = tr.refused_over_cap;
    r.stack = tr.stack;
    r.kernel_conns = tr.kernel_conns;
}

impl std::fmt::Display for CoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (h, e, o) = (&self.http, &self.exec, &self.outbound);
        write!(
            f,
            "queue {} (cpu {:?}): accepted={} http_requests={} http_2xx={} http_4xx={} http_5xx={} \
             http_rejected={} http_panics={} http_arena_failures={} http_bytes_in={} http_bytes_out={} \
             http_body_bytes_by_reference={} tasks_spawned={} tasks_completed={} tasks_cancelled={} \
             tasks_timed_out={} tasks_panicked={} tasks_refused_busy={} upstream_connects={} \
             upstream_established={} upstream_refused={} upstream_failed={} upstream_timed_out={} \
             arena_chunks_free={}/{} arena_chunks_free_min={} cut_at_shutdown={}",
            self.queue,
            self.cpu,
            self.accepted,
            h.requests,
            h.responses_by_class[2],
            h.responses_by_class[4],
            h.responses_by_class[5],
            h.rejected,
            h.handler_panics,
            h.arena_failures,
            h.bytes_in,
            h.bytes_out,
            h.body_bytes_by_reference,
            e.spawned,
            e.completed,
            e.cancelled,
            e.timed_out,
            e.panicked,
            e.refused_busy,
            o.connects,
            o.established,
            o.refused,
            o.failed,
            o.timed_out,
            self.pool.chunks_free,
            self.pool.chunks_total,
            self.pool.chunks_free_min,
            self.cut_at_shutdown,
        )?;
        write!(f, " http_head_timeouts={} http_body_timeouts={}", h.head_timeouts, h.body_timeouts)?;
        write!(
            f,
            " conn_refused_per_core={} conn_refused_per_source={}",
            self.refused_over_cap.0, self.refused_over_cap.1
        )?;
        for (status, n) in crate::http::REJECT_STATUSES.iter().zip(h.rejected_by_status) {
            match status {
                0 => write!(f, " http_rejected_other={n}")?,
                s => write!(f, " http_rejected_{s}={n}")?,
            }
        }
        if self.files.file_reads > 0 {
            let mut r = Ok(());
            crate::stats::Counters::each(&self.files, &mut |name, _, n| {
                if r.is_ok() {
                    r = write!(f, " {name}={n}");
                }
            });
            r?;
        }
        if let Some(s) = &self.stack {
            write!(f, " {s}")?;
        }
        Ok(())
    }
}

/// A running server.
pub struct Running {
    stop: Arc<AtomicBool>,
    bells: Vec<Doorbell>,
    threads: Vec<JoinHandle<CoreReport>>,
    plane: Option<ControlPlane>,
    addr: Option<SocketAddr>,
    attached: Attached,
    gauges: Arc<[LoopGauge]>,
    admin: Option<admin::Admin>,
}

/// What a packet backend keeps alive while the loops run (dropped after they stop).
enum Attached {
    /// The kernel-socket backend: nothing.
    None,
    /// The XDP program and sockets.
    Xdp(stack::XdpRunning),
    /// EAL and the port.
    #[cfg(feature = "dpdk")]
    Dpdk(stack::DpdkRunning),
}

impl Running {
    /// The address clients connect to (kernel backend).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The AF_XDP attach mode ("native" or "generic") and whether the sockets got
    /// zero-copy, on the AF_XDP backend.
    pub fn xdp_mode(&self) -> Option<(&'static str, bool)> {
        match &self.attached {
            Attached::Xdp(x) => Some((x.attach_mode, x.zerocopy)),
            _ => None,
        }
    }

    /// On the DPDK backend: the port's name and a one-line summary (driver, link, how
    /// flows are spread).
    pub fn dpdk_port(&self) -> Option<(String, String)> {
        match &self.attached {
            #[cfg(feature = "dpdk")]
            Attached::Dpdk(d) => Some((d.port_name().to_string(), d.summary.clone())),
            _ => None,
        }
    }

    /// The admin listener's address, if it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr())
    }

    /// Each queue's loop figures as last published.
    pub fn loop_snapshots(&self) -> Vec<LoopSnapshot> {
        self.gauges.iter().map(LoopGauge::read).collect()
    }

    /// A function that starts a graceful shutdown from another thread.
    pub fn shutdown_trigger(&self) -> Arc<dyn Fn() + Send + Sync> {
        let stop = self.stop.clone();
        let bells = self.bells.clone();
        Arc::new(move || {
            stop.store(true, Ordering::Release);
            for b in &bells {
                b();
            }
        })
    }

    /// Asks every loop to stop.
    pub fn shutdown(&self) {
        (self.shutdown_trigger())();
    }

    /// Waits for every loop to exit (then detaches the XDP program, if any).
    pub fn join(mut self) -> Vec<CoreReport> {
        let reports = self.threads.drain(..).filter_map(|t| t.join().ok()).collect();
        drop(self.admin.take());
        self.attached = Attached::None;
        if let Some(p) = self.plane.take() {
            p.shutdown();
        }
        reports
    }
}

/// Starts the configured backend; returns once every core loop is serving.
pub fn start(cfg: &Config, apps: Arc<AppSet>) -> Result<Running, StartError> {
    let plane = ControlPlane::start_with(cfg.control.queue_depth, cfg.control.io_threads)
        .map_err(|source| StartError::Io { what: "spawning the control thread", source })?;
    match cfg.server.backend {
        Backend::Kernel => {
            let (addr, plans) = kernel::plan(cfg)?;
            spawn(cfg, apps, plane, plans, Some(addr), Attached::None)
        }
        Backend::AfXdp => {
            let (xdp, plans) = stack::plan(cfg)?;
            spawn(cfg, apps, plane, plans, None, Attached::Xdp(xdp))
        }
        #[cfg(feature = "dpdk")]
        Backend::Dpdk => {
            let (dpdk, plans) = stack::plan_dpdk(cfg)?;
            spawn(cfg, apps, plane, plans, None, Attached::Dpdk(dpdk))
        }
        #[cfg(not(feature = "dpdk"))]
        Backend::Dpdk => Err(crate::nic::dpdk::DpdkError::NotBuilt.into()),
    }
}

fn spawn<T: Transport + 'static>(
    cfg: &Config,
    apps: Arc<AppSet>,
    plane: ControlPlane,
    plans: Vec<QueuePlan<T>>,
    addr: Option<SocketAddr>,
    attached: Attached,
) -> Result<Running, StartError> {
    let stop = Arc::new(AtomicBool::new(false));
    let draining = Arc::new(AtomicUsize::new(plans.len()));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), StartError>>();
    let gauges: Arc<[LoopGauge]> = (0..plans.len()).map(|_| LoopGauge::default()).collect();
    let backend = match &attached {
        Attached::None => "kernel",
        Attached::Xdp(_) => "af-xdp",
        #[cfg(feature = "dpdk")]
        Attached::Dpdk(_) => "dpdk",
    };
    let mut server = Running {
        stop: stop.clone(),
        bells: Vec::new(),
        threads: Vec::new(),
        plane: None,
        addr,
        attached,
        gauges,
        admin: None,
    };
    for (i, plan) in plans.into_iter().enumerate() {
        server.bells.push(plan.bell.clone());
        let core = CoreArgs {
            cfg: cfg.clone(),
            apps: apps.clone(),
            control: plane.handle(),
            stop: stop.clone(),
            draining: draining.clone(),
            gauges: server.gauges.clone(),
            index: i,
        };
        let ready = ready_tx.clone();
        let queue = plan.queue;
        let t = std::thread::Builder::new()
            .name(format!("px-core-{queue}"))
            .spawn(move || core.run(plan, ready))
            .map_err(|source| StartError::Io { what: "spawning a core thread", source })?;
        server.threads.push(t);
    }
    server.plane = Some(plane);
    drop(ready_tx);
    let mut failure = None;
    for i in 0..server.threads.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or(Some(StartError::ThreadDied(i))),
        }
    }
    if let Some(e) = failure {
        server.shutdown();
        server.join();
        return Err(e);
    }
    if !cfg.admin.listen.is_empty() {
        let mut config = serde_json::to_value(cfg).unwrap_or_default();
        if let Some(p) = config.pointer_mut("/db/password") {
            *p = serde_json::Value::from("(not shown)");
        }
        let about = admin::About {
            backend,
            xdp_mode: server
                .xdp_mode()
                .map(|(mode, zc)| format!("{mode}{}", if zc { ", zero-copy" } else { ", copy" })),
            started: std::time::Instant::now(),
            draining: stop.clone(),
            config,
            routes: apps.router.labels().to_vec(),
        };
        let cores = admin::Cores { gauges: server.gauges.clone(), bells: server.bells.clone() };
        server.admin = admin::Admin::start(&cfg.admin.listen, cores, about);
    }
    Ok(server)
}

/// What a core thread takes with it.
struct CoreArgs {
    cfg: Config,
    apps: Arc<AppSet>,
    control: crate::app::ControlHandle,
    stop: Arc<AtomicBool>,
    draining: Arc<AtomicUsize>,
    gauges: Arc<[LoopGauge]>,
    index: usize,
}

impl CoreArgs {
    fn run<T: Transport>(self, plan: QueuePlan<T>, ready: mpsc::Sender<Result<(), StartError>>) -> CoreReport {
        let QueuePlan { queue, cpu, bell, build } = plan;
        let pinned = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
        if !pinned {
            tracing::warn!("queue {queue}: could not pin to CPU {cpu}");
        }
        let mut report = CoreReport { queue, cpu: pinned.then_some(cpu), ..Default::default() };
        let CoreArgs { cfg, apps, control, stop, draining, gauges, index } = self;
        let (mut d, mut t) = match core_parts(&cfg, apps, control, queue, cpu, &bell, build) {
            Ok(v) => v,
            Err(e) => {
                let _ = ready.send(Err(e));
                return report;
            }
        };
        let _ = ready.send(Ok(()));
        let drain = Duration::from_millis(cfg.server.shutdown_timeout_ms);
        gauges[index].set_cpu(report.cpu);
        report.cut_at_shutdown = run_core(&mut t, &mut d, &stop, drain, &draining, &gauges[index]);
        fill_report(&mut report, &t, &d);
        report
    }
}

/// Maps the arena on this core, builds the dispatcher and the transport.
fn core_parts<T>(
    cfg: &Config,
    apps: Arc<AppSet>,
    control: crate::app::ControlHandle,
    queue: usize,
    cpu: usize,
    bell: &Doorbell,
    build: Build<T>,
) -> Result<(Dispatch, T), StartError> {
    {
        let a = &cfg.arena;
        let region = Region::map(a.pool_bytes_per_core, crate::mem::cpu_numa_node(cpu), a.hugepages)
            .map_err(|source| StartError::Memory { queue, source })?;
        tracing::debug!(queue, cpu, backing = ?region.backing(), "arena pool mapped");
        let pool = Rc::new(ChunkPool::new(region, a.chunk_bytes));
        let dcfg = DispatchConfig {
            limits: cfg.http.clone(),
            arena_cap: a.max_bytes_per_conn,
            deadline: Duration::from_millis(cfg.handlers.deadline_ms),
            max_in_flight: cfg.handlers.max_in_flight_per_core,
            file_reads: cfg.handlers.file_reads_per_core,
        };
        let (b1, b2) = (bell.clone(), bell.clone());
        control.set_waker(Box::new(move || b1()));
        let d = Dispatch::new(apps, dcfg, pool, control);
        d.exec().set_doorbell(Box::new(move || b2()));
        Ok((d, build()?))
    }
}
