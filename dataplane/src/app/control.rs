//! The control thread: serialised work reached from any core over a bounded queue; and
//! beside it a small pool of I/O threads for work that may block (a read from a cold
//! file) but needs no shared state.
//!
//! A core submits a job with the connection it answers; the control thread runs jobs in
//! order against its own [`ControlState`] (an I/O thread runs a [`BlockingJob`] as soon
//! as one is free), pushes each answer to the submitting core's [`CoreMailbox`] and wakes
//! that core. A core never has more jobs outstanding, of both kinds together, than its
//! mailbox holds, so an answer always has room. A panicking job answers 500.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use crate::http::OwnedResponse;

/// Work for the control thread.
pub type ControlJob = Box<dyn FnOnce(&mut ControlState) -> OwnedResponse + Send>;

/// State owned by the control thread, keyed by type.
#[derive(Default)]
pub struct ControlState {
    map: HashMap<TypeId, Box<dyn Any + Send>>,
}

impl ControlState {
    /// The value of type `T`, created with `Default` on first use.
    pub fn get_or_default<T: Default + Send + 'static>(&mut self) -> &mut T {
        self.map
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()))
            .downcast_mut::<T>()
            .expect("keyed by TypeId")
    }
}

/// Work for an I/O thread: it may block; it sees no shared state.
pub type BlockingJob = Box<dyn FnOnce() -> OwnedResponse + Send>;

struct Envelope<J = ControlJob> {
    conn_id: u64,
    mailbox: Arc<CoreMailbox>,
    job: J,
}

/// Posts an answer to its core and wakes it.
fn answer(mailbox: &CoreMailbox, conn_id: u64, r: std::thread::Result<OwnedResponse>) {
    let answer = r.unwrap_or_else(|_| {
        tracing::error!("control job panicked; answering 500");
        OwnedResponse::new(500, "text/plain; charset=utf-8", "internal error\n")
    });
    if mailbox.done.push((conn_id, answer)).is_err() {
        tracing::error!("core mailbox full; answer dropped (outstanding accounting broken)");
    }
    if let Some(wake) = mailbox.waker.get() {
        wake();
    }
}

/// Where a core receives the control thread's answers.
pub struct CoreMailbox {
    done: ArrayQueue<(u64, OwnedResponse)>,
    outstanding: AtomicUsize,
    waker: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl CoreMailbox {
    fn new(depth: usize) -> Self {
        CoreMailbox { done: ArrayQueue::new(depth), outstanding: AtomicUsize::new(0), waker: OnceLock::new() }
    }
}

/// The control thread, the I/O threads, and their queues.
pub struct ControlPlane {
    jobs: Arc<ArrayQueue<Envelope>>,
    io_jobs: Arc<ArrayQueue<Envelope<BlockingJob>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    io_threads: Vec<JoinHandle<()>>,
    next_io: Arc<AtomicUsize>,
    depth: usize,
}

impl ControlPlane {
    /// Starts the control thread with a queue of `depth` jobs, and no I/O threads
    /// (blocking jobs then run on the control thread).
    pub fn start(depth: usize) -> std::io::Result<ControlPlane> {
        ControlPlane::start_with(depth, 0)
    }

    /// Starts the control thread and `io_threads` I/O threads, each kind with a queue
    /// of `depth` jobs.
    pub fn start_with(depth: usize, io_threads: usize) -> std::io::Result<ControlPlane> {
        let depth = depth.max(1);
        let jobs = Arc::new(ArrayQueue::<Envelope>::new(depth));
        let io_jobs = Arc::new(ArrayQueue::<Envelope<BlockingJob>>::new(depth));
        let stop = Arc::new(AtomicBool::new(false));
        let (q, s) = (jobs.clone(), stop.clone());
        let thread = thread::Builder::new().name("px-control".into()).spawn(move || run(&q, &s))?;
        let mut threads = Vec::new();
        for i in 0..io_threads {
            let (q, s) = (io_jobs.clone(), stop.clone());
            threads.push(thread::Builder::new().name(format!("px-io-{i}")).spawn(move || run_io(&q, &s))?);
        }
        Ok(ControlPlane {
            jobs,
            io_jobs,
            stop,
            thread: Some(thread),
            io_threads: threads,
            next_io: Arc::new(AtomicUsize::new(0)),
            depth,
        })
    }

    /// A handle for one core.
    pub fn handle(&self) -> ControlHandle {
        ControlHandle {
            jobs: self.jobs.clone(),
            io_jobs: self.io_jobs.clone(),
            mailbox: Arc::new(CoreMailbox::new(self.depth)),
            control: self.thread.as_ref().expect("running").thread().clone(),
            io: self.io_threads.iter().map(|t| t.thread().clone()).collect(),
            next_io: self.next_io.clone(),
        }
    }

    /// Stops the threads after the queued jobs.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.thread.take().into_iter().chain(self.io_threads.drain(..)) {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn run(jobs: &ArrayQueue<Envelope>, stop: &AtomicBool) {
    let mut state = ControlState::default();
    loop {
        while let Some(env) = jobs.pop() {
            let r = catch_unwind(AssertUnwindSafe(|| (env.job)(&mut state)));
            answer(&env.mailbox, env.conn_id, r);
        }
        if stop.load(Ordering::Acquire) {
            return;
        }
        thread::park_timeout(Duration::from_millis(100));
    }
}

fn run_io(jobs: &ArrayQueue<Envelope<BlockingJob>>, stop: &AtomicBool) {
    loop {
        while let Some(env) = jobs.pop() {
            let r = catch_unwind(AssertUnwindSafe(env.job));
            answer(&env.mailbox, env.conn_id, r);
        }
        if stop.load(Ordering::Acquire) {
            return;
        }
        thread::park_timeout(Duration::from_millis(100));
    }
}

/// A core's end of the control plane.
pub struct ControlHandle {
    jobs: Arc<ArrayQueue<Envelope>>,
    io_jobs: Arc<ArrayQueue<Envelope<BlockingJob>>>,
    mailbox: Arc<CoreMailbox>,
    control: Thread,
    io: Vec<Thread>,
    next_io: Arc<AtomicUsize>,
}

/// The queue (or this core's share of it) is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl ControlHandle {
    /// Sets how the control thread wakes this core after posting an answer.
    pub fn set_waker(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let _ = self.mailbox.waker.set(wake);
    }

    /// Queues `job` for connection `conn_id`.
    pub fn submit(&self, conn_id: u64, job: ControlJob) -> Result<(), Busy> {
        self.enqueue(&self.jobs, conn_id, job)?;
        self.control.unpark();
        Ok(())
    }

    /// Counts the job against this core's mailbox and queues it.
    fn enqueue<J>(&self, queue: &ArrayQueue<Envelope<J>>, conn_id: u64, job: J) -> Result<(), Busy> {
        if self.mailbox.outstanding.load(Ordering::Acquire) >= self.mailbox.done.capacity() {
            return Err(Busy);
        }
        self.mailbox.outstanding.fetch_add(1, Ordering::AcqRel);
        if queue.push(Envelope { conn_id, mailbox: self.mailbox.clone(), job }).is_err() {
            self.mailbox.outstanding.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy);
        }
        Ok(())
    }

    /// Queues a job that may block for connection `conn_id` on an I/O thread (on the
    /// control thread, wrapped, when the plane has none).
    pub fn submit_blocking(&self, conn_id: u64, job: BlockingJob) -> Result<(), Busy> {
        if self.io.is_empty() {
            return self.submit(conn_id, Box::new(move |_: &mut ControlState| job()));
        }
        self.enqueue(&self.io_jobs, conn_id, job)?;
        // Any idle I/O thread drains the shared queue: wake them in turn.
        let i = self.next_io.fetch_add(1, Ordering::Relaxed) % self.io.len();
        self.io[i].unpark();
        Ok(())
    }

    /// Takes every answer that has arrived.
    pub fn drain(&self, mut f: impl FnMut(u64, OwnedResponse)) {
        while let Some((id, resp)) = self.mailbox.done.pop() {
            self.mailbox.outstanding.fetch_sub(1, Ordering::AcqRel);
            f(id, resp);
        }
    }

    /// Jobs submitted whose answers have not been drained.
    pub fn outstanding(&self) -> usize {
        self.mailbox.outstanding.load(Ordering::Acquire)
    }

    /// Jobs waiting in the control thread's queue and in the I/O threads' queue (every
    /// core's, not only this one's).
    pub fn queued(&self) -> (usize, usize) {
        (self.jobs.len(), self.io_jobs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn jobs_run_in_order_with_state_and_answer_back() {
        let plane = ControlPlane::start(4).unwrap();
        let h = plane.handle();
        let (tx, rx) = mpsc::channel();
        h.set_waker(Box::new(move || {
            let _ = tx.send(());
        }));
        for i in 0..3u64 {
            h.submit(
                i,
                Box::new(|s: &mut ControlState| {
                    let n = s.get_or_default::<u64>();
                    *n += 1;
                    OwnedResponse::new(200, "text/plain", n.to_string())
                }),
            )
            .unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 3 {
            rx.recv_timeout(Duration::from_secs(5)).expect("woken");
            h.drain(|id, r| got.push((id, r.body)));
        }
        assert_eq!(got, vec![(0, b"1".to_vec()), (1, b"2".to_vec()), (2, b"3".to_vec())]);
        assert_eq!(h.outstanding(), 0);
        plane.shutdown();
    }

    #[test]
    fn blocking_jobs_run_in_parallel_on_io_threads() {
        let plane = ControlPlane::start_with(8, 4).unwrap();
        let h = plane.handle();
        let started = std::time::Instant::now();
        for i in 0..4u64 {
            h.submit_blocking(
                i,
                Box::new(move || {
                    thread::sleep(Duration::from_millis(300));
                    OwnedResponse::new(200, "text/plain", i.to_string())
                }),
            )
            .unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 4 {
            assert!(started.elapsed() < Duration::from_secs(10), "answers arrive");
            h.drain(|id, r| got.push((id, r.body)));
            thread::sleep(Duration::from_millis(5));
        }
        // Four 300 ms jobs on four threads: well under the 1.2 s they take in a row.
        assert!(started.elapsed() < Duration::from_millis(1000), "{:?}", started.elapsed());
        got.sort();
        assert_eq!(got, (0..4u64).map(|i| (i, i.to_string().into_bytes())).collect::<Vec<_>>());
        assert_eq!(h.outstanding(), 0);
        plane.shutdown();
    }

    #[test]
    fn full_queue_is_busy_and_panics_answer_500() {
        let plane = ControlPlane::start(1).unwrap();
        let h = plane.handle();
        h.submit(7, Box::new(|_: &mut ControlState| panic!("boom"))).unwrap();
        // one outstanding of a mailbox of one: the next is refused
        assert_eq!(h.submit(8, Box::new(|_: &mut ControlState| OwnedResponse::new(200, "x", ""))), Err(Busy));
        let mut got = None;
        for _ in 0..500 {
            h.drain(|id, r| got = Some((id, r.status)));
            if got.is_some() {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(got, Some((7, 500)));
        plane.shutdown();
    }
}
