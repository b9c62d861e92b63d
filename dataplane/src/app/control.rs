//! The control thread: serialised work reached from any core over a bounded queue.
//!
//! A core submits a job with the connection it answers; the control thread runs jobs in
//! order against its own [`ControlState`], pushes each answer to the submitting core's
//! [`CoreMailbox`] and wakes that core. A core never has more jobs outstanding than its
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

struct Envelope {
    conn_id: u64,
    mailbox: Arc<CoreMailbox>,
    job: ControlJob,
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

/// The control thread and its queue.
pub struct ControlPlane {
    jobs: Arc<ArrayQueue<Envelope>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    depth: usize,
}

impl ControlPlane {
    /// Starts the control thread with a queue of `depth` jobs.
    pub fn start(depth: usize) -> std::io::Result<ControlPlane> {
        let jobs = Arc::new(ArrayQueue::<Envelope>::new(depth.max(1)));
        let stop = Arc::new(AtomicBool::new(false));
        let (q, s) = (jobs.clone(), stop.clone());
        let thread = thread::Builder::new().name("px-control".into()).spawn(move || run(&q, &s))?;
        Ok(ControlPlane { jobs, stop, thread: Some(thread), depth: depth.max(1) })
    }

    /// A handle for one core.
    pub fn handle(&self) -> ControlHandle {
        ControlHandle {
            jobs: self.jobs.clone(),
            mailbox: Arc::new(CoreMailbox::new(self.depth)),
            control: self.thread.as_ref().expect("running").thread().clone(),
        }
    }

    /// Stops the thread after the queued jobs.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn run(jobs: &ArrayQueue<Envelope>, stop: &AtomicBool) {
    let mut state = ControlState::default();
    loop {
        while let Some(env) = jobs.pop() {
            let answer = catch_unwind(AssertUnwindSafe(|| (env.job)(&mut state))).unwrap_or_else(|_| {
                tracing::error!("control job panicked; answering 500");
                OwnedResponse::new(500, "text/plain; charset=utf-8", "internal error\n")
            });
            if env.mailbox.done.push((env.conn_id, answer)).is_err() {
                tracing::error!("core mailbox full; answer dropped (outstanding accounting broken)");
            }
            if let Some(wake) = env.mailbox.waker.get() {
                wake();
            }
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
    mailbox: Arc<CoreMailbox>,
    control: Thread,
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
        if self.mailbox.outstanding.load(Ordering::Acquire) >= self.mailbox.done.capacity() {
            return Err(Busy);
        }
        self.mailbox.outstanding.fetch_add(1, Ordering::AcqRel);
        let env = Envelope { conn_id, mailbox: self.mailbox.clone(), job };
        if self.jobs.push(env).is_err() {
            self.mailbox.outstanding.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy);
        }
        self.control.unpark();
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
