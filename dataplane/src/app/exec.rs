//! The per-core executor for async handlers: a slab of tasks, a ready queue their
//! wakers push to, and a timer heap, all owned by one core loop.
//!
//! No thread is spawned and no task moves between cores. A waker holds the task's slot
//! and the core's ready queue; waking pushes the slot (an uncontended lock: only this
//! core takes it, unless a waker was handed to another thread, which also works) and
//! rings the core's doorbell, so a task woken from elsewhere runs within a turn.
//! [`Executor::run`] polls the tasks woken before it was called, fires due timers, and
//! ends tasks whose deadline passed. It is given the time; it reads no clock.

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use super::outbound::OutboundState;
use super::{HandlerError, HandlerFuture, Shared};
use crate::http::{ReqId, Response};
use crate::mem::{FileReadCounters, FileReads, ReadKey};

/// Woken tasks polled per executor turn at most.
pub const POLLS_PER_TURN: usize = 256;

/// File reads in flight on one core's io_uring unless set (`handlers.file_reads_per_core`).
pub const DEFAULT_FILE_READS: usize = 512;

/// A task's slot and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskKey {
    idx: u32,
    gen: u32,
}

/// Woken tasks, and how to wake the core that runs them.
pub(crate) struct ReadyQueue {
    woken: Mutex<Vec<TaskKey>>,
    doorbell: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

thread_local! {
    /// The ready queue of the executor made on this thread (its address), if any.
    static ON_CORE: Cell<usize> = const { Cell::new(0) };
}

struct TaskWaker {
    key: TaskKey,
    queue: Arc<ReadyQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.queue.woken.lock().unwrap_or_else(|e| e.into_inner()).push(self.key);
        // On the core's own thread the loop sees the queue before it sleeps (it checks
        // `has_ready` each turn): ringing would only cost an eventfd write per wake.
        let here = ON_CORE.with(|c| c.get() == Arc::as_ptr(&self.queue) as usize);
        if !here {
            if let Some(ring) = self.queue.doorbell.get() {
                ring();
            }
        }
    }
}

enum TimerKind {
    /// Wake the task, unless the future that armed it is gone (its token dropped).
    Wake(Waker, Weak<()>),
    /// End the task, unless it already ended.
    Deadline(TaskKey),
}

struct Timer {
    at: Instant,
    seq: u64,
    kind: TimerKind,
}

impl PartialEq for Timer {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Timer {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// A background task's future: it answers no request and has no deadline (an
/// app-level client's connection driver, say).
pub type BackgroundFuture = Pin<Box<dyn Future<Output = ()>>>;

/// What the core's futures share: the turn's time, the timer heap, the outbound
/// connections, the apps' read-only state, and per-core values apps keep here.
pub struct CoreShared {
    now: Cell<Instant>,
    timers: RefCell<BinaryHeap<Reverse<Timer>>>,
    seq: Cell<u64>,
    pub(crate) outbound: RefCell<OutboundState>,
    shared: Shared,
    spawned: RefCell<Vec<BackgroundFuture>>,
    locals: RefCell<Vec<(TypeId, Rc<dyn Any>)>>,
    files: RefCell<Files>,
    ready: Arc<ReadyQueue>,
}

/// The core's io_uring for file reads: made on first use.
enum Files {
    /// Not asked for yet; reads in flight at most.
    Untried(usize),
    /// Boxed: most cores of an appliance without file-reading apps never make one.
    Ready(Box<FileReads>),
    /// The kernel or a sandbox refused io_uring.
    Unavailable,
}

/// io_uring was refused on some core: said once in the log.
static URING_REFUSED: std::sync::Once = std::sync::Once::new();

impl CoreShared {
    /// The core's time at the start of this turn.
    pub fn now(&self) -> Instant {
        self.now.get()
    }

    /// The apps' read-only state.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Starts `fut` as a background task of this core (polled from the next executor
    /// turn on). It ends when it completes or when the core stops serving.
    pub fn spawn(&self, fut: BackgroundFuture) {
        self.spawned.borrow_mut().push(fut);
    }

    /// This core's value of type `T`, made by `init` on first use. Not shared with other
    /// cores: each core that asks builds its own.
    pub fn local<T: 'static>(&self, init: impl FnOnce() -> T) -> Rc<T> {
        let id = TypeId::of::<T>();
        if let Some((_, v)) = self.locals.borrow().iter().find(|(t, _)| *t == id) {
            if let Ok(v) = v.clone().downcast::<T>() {
                return v;
            }
        }
        let v = Rc::new(init());
        self.locals.borrow_mut().push((id, v.clone()));
        v
    }

    /// Wakes `waker` once `at` has passed, while the returned token lives (the future
    /// that waits keeps it: once that future is gone, the timer is dropped unfired and
    /// does not wake the loop).
    pub(crate) fn wake_at(&self, at: Instant, waker: Waker) -> Rc<()> {
        let token = Rc::new(());
        self.push_timer(at, TimerKind::Wake(waker, Rc::downgrade(&token)));
        token
    }

    /// True when file reads go through this core's io_uring (made now if it was not
    /// yet); false where io_uring is refused (said once in the log).
    pub fn file_reads_available(&self) -> bool {
        let mut f = self.files.borrow_mut();
        if let Files::Untried(cap) = *f {
            *f = match FileReads::new(cap) {
                Ok(mut r) => {
                    let q = self.ready.clone();
                    let bell: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                        if let Some(ring) = q.doorbell.get() {
                            ring();
                        }
                    });
                    if let Err(e) = r.wake_with(bell) {
                        tracing::warn!("io_uring: no watcher for asynchronous completions ({e}); they are reaped when the loop wakes for other work");
                    }
                    Files::Ready(Box::new(r))
                }
                Err(e) => {
                    URING_REFUSED.call_once(|| {
                        tracing::warn!(
                            "io_uring is unavailable ({e}): file reads go to the I/O threads (control.io_threads)"
                        );
                    });
                    Files::Unavailable
                }
            };
        }
        matches!(*f, Files::Ready(_))
    }

    /// What this core's io_uring did (zero when it has none).
    pub fn file_read_counters(&self) -> FileReadCounters {
        match &*self.files.borrow() {
            Files::Ready(r) => r.counters,
            _ => FileReadCounters::default(),
        }
    }

    /// Reads in flight on this core's io_uring.
    pub fn file_reads_in_flight(&self) -> usize {
        match &*self.files.borrow() {
            Files::Ready(r) => r.in_flight(),
            _ => 0,
        }
    }

    /// Around the loop's sleep: `true` before it (completions of reads in flight will
    /// wake the loop; returns true if some are already waiting, and then the loop should
    /// not sleep), `false` after it.
    pub fn file_wakeups(&self, on: bool) -> bool {
        match &mut *self.files.borrow_mut() {
            Files::Ready(r) => r.wakeups(on),
            _ => false,
        }
    }

    /// After a sleep with reads in flight that ran to its timeout (see
    /// [`FileReads::note_timed_out_sleep`]).
    pub fn file_sleep_timed_out(&self) {
        if let Files::Ready(r) = &mut *self.files.borrow_mut() {
            r.note_timed_out_sleep();
        }
    }

    /// True when reads wait for a submission (the loop must not sleep on them).
    fn files_queued(&self) -> bool {
        matches!(&*self.files.borrow(), Files::Ready(r) if r.queued() > 0)
    }

    /// Submits this turn's reads and reaps what completed (inline or since the last
    /// turn). Returns the completions taken.
    fn file_turn(&self, submit: bool) -> usize {
        match &mut *self.files.borrow_mut() {
            Files::Ready(r) if r.in_flight() > 0 => {
                if submit {
                    r.submit();
                }
                r.reap()
            }
            _ => 0,
        }
    }

    fn push_timer(&self, at: Instant, kind: TimerKind) {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        self.timers.borrow_mut().push(Reverse(Timer { at, seq, kind }));
    }
}

/// A future that completes once the core's time reaches its instant.
pub struct Sleep {
    core: Rc<CoreShared>,
    at: Instant,
    armed: Option<Rc<()>>,
}

impl Sleep {
    pub(crate) fn until(core: Rc<CoreShared>, at: Instant) -> Sleep {
        Sleep { core, at, armed: None }
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.core.now() >= self.at {
            return Poll::Ready(());
        }
        if self.armed.is_none() {
            self.armed = Some(self.core.wake_at(self.at, cx.waker().clone()));
        }
        Poll::Pending
    }
}

/// A read of a file's byte range through the core's io_uring (see [`FileReads`]): made
/// by [`Cx::read_at`](super::Cx::read_at).
pub struct ReadAt {
    core: Rc<CoreShared>,
    state: ReadState,
}

enum ReadState {
    New(Arc<std::fs::File>, u64, usize),
    Started(ReadKey),
    Done,
}

impl ReadAt {
    pub(crate) fn new(core: Rc<CoreShared>, file: Arc<std::fs::File>, offset: u64, len: usize) -> ReadAt {
        ReadAt { core, state: ReadState::New(file, offset, len) }
    }
}

impl Future for ReadAt {
    type Output = std::io::Result<Vec<u8>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let ReadState::New(..) = this.state {
            if !this.core.file_reads_available() {
                this.state = ReadState::Done;
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "io_uring is unavailable on this host",
                )));
            }
            let mut files = this.core.files.borrow_mut();
            let Files::Ready(r) = &mut *files else { unreachable!("checked above") };
            let ReadState::New(file, offset, len) = &this.state else { unreachable!() };
            match r.start(file.clone(), *offset, *len) {
                Some(key) => this.state = ReadState::Started(key),
                None => {
                    r.wait_for_slot(cx.waker());
                    return Poll::Pending;
                }
            }
        }
        match this.state {
            ReadState::Started(key) => {
                let mut files = this.core.files.borrow_mut();
                let Files::Ready(r) = &mut *files else { unreachable!("a started read has a ring") };
                let p = r.poll(key, cx.waker());
                if p.is_ready() {
                    this.state = ReadState::Done;
                }
                p
            }
            _ => Poll::Ready(Err(std::io::Error::other("read polled after it completed"))),
        }
    }
}

impl Drop for ReadAt {
    fn drop(&mut self) {
        if let ReadState::Started(key) = self.state {
            if let Files::Ready(r) = &mut *self.core.files.borrow_mut() {
                r.abandon(key);
            }
        }
    }
}

/// The deadline of a [`timeout`] passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline passed")]
pub struct Elapsed;

/// `fut`, or [`Elapsed`] once the core's time reaches `at`.
pub fn timeout<F: Future>(core: &Rc<CoreShared>, at: Instant, fut: F) -> Timeout<F> {
    Timeout { core: core.clone(), at, armed: None, fut: Box::pin(fut) }
}

/// See [`timeout`].
pub struct Timeout<F> {
    core: Rc<CoreShared>,
    at: Instant,
    armed: Option<Rc<()>>,
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(v) = self.fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if self.core.now() >= self.at {
            return Poll::Ready(Err(Elapsed));
        }
        if self.armed.is_none() {
            self.armed = Some(self.core.wake_at(self.at, cx.waker().clone()));
        }
        Poll::Pending
    }
}

/// How a task ended.
#[derive(Debug)]
pub enum Outcome {
    /// The handler's own result.
    Done(Result<Response<'static>, HandlerError>),
    /// The deadline passed first (504).
    TimedOut,
    /// The future panicked (500).
    Panicked,
}

/// A finished task: which connection and request it answers.
#[derive(Debug)]
pub struct Completion {
    /// The connection (transport's key).
    pub conn: u64,
    /// The request on it.
    pub req: ReqId,
    /// The result.
    pub outcome: Outcome,
}

crate::counters! {
    /// What the executor did.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct ExecCounters {
        /// Tasks started.
        pub spawned: u64,
        /// Tasks that completed with the handler's result.
        pub completed: u64,
        /// Tasks dropped because their connection went away.
        pub cancelled: u64,
        /// Tasks ended by their deadline (504).
        pub timed_out: u64,
        /// Tasks whose future panicked (500).
        pub panicked: u64,
        /// Requests refused because the core had `max_in_flight` tasks (503).
        pub refused_busy: u64,
        /// Polls of futures.
        pub polls: u64,
    }
}

enum TaskFuture {
    /// Answers request `req` of connection `conn`.
    Handler { fut: HandlerFuture, conn: u64, req: ReqId },
    /// Answers nothing.
    Background(BackgroundFuture),
}

struct Task {
    fut: TaskFuture,
    waker: Waker,
}

/// Cancels its task when dropped (the connection went away), unless disarmed.
pub struct TaskGuard {
    key: TaskKey,
    cancels: Rc<RefCell<Vec<TaskKey>>>,
    armed: bool,
}

impl TaskGuard {
    /// The task completed: dropping the guard no longer cancels it.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.armed {
            self.cancels.borrow_mut().push(self.key);
        }
    }
}

/// One core's executor.
pub struct Executor {
    tasks: Vec<Option<Task>>,
    gens: Vec<u32>,
    free: Vec<u32>,
    ready: Arc<ReadyQueue>,
    cancels: Rc<RefCell<Vec<TaskKey>>>,
    core: Rc<CoreShared>,
    max_in_flight: usize,
    background: usize,
    counters: ExecCounters,
}

impl Executor {
    /// An executor for at most `max_in_flight` tasks at once, starting at `now`.
    /// Made on the thread that runs it (the core's): wakes from that thread do not ring
    /// the doorbell.
    pub fn new(max_in_flight: usize, now: Instant, shared: Shared) -> Executor {
        let ready = Arc::new(ReadyQueue { woken: Mutex::new(Vec::new()), doorbell: std::sync::OnceLock::new() });
        ON_CORE.with(|c| c.set(Arc::as_ptr(&ready) as usize));
        Executor {
            tasks: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            ready: ready.clone(),
            cancels: Rc::default(),
            core: Rc::new(CoreShared {
                now: Cell::new(now),
                timers: RefCell::default(),
                seq: Cell::new(0),
                outbound: RefCell::default(),
                shared,
                spawned: RefCell::default(),
                locals: RefCell::default(),
                files: RefCell::new(Files::Untried(DEFAULT_FILE_READS)),
                ready: ready.clone(),
            }),
            max_in_flight,
            background: 0,
            counters: ExecCounters::default(),
        }
    }

    /// Sets how many file reads may be in flight on this core's io_uring (before its
    /// first read; the ring is sized by it).
    pub fn set_file_reads(&self, n: usize) {
        let mut f = self.core.files.borrow_mut();
        if let Files::Untried(_) = *f {
            *f = Files::Untried(n);
        }
    }

    /// Sets how a wake from another thread reaches the core loop (its doorbell).
    pub fn set_doorbell(&self, ring: Box<dyn Fn() + Send + Sync>) {
        let _ = self.ready.doorbell.set(ring);
    }

    /// What futures on this core share.
    pub fn core(&self) -> &Rc<CoreShared> {
        &self.core
    }

    /// Request tasks running (background tasks are not counted).
    pub fn in_flight(&self) -> usize {
        self.tasks.len() - self.free.len() - self.background
    }

    /// Background tasks running.
    pub fn background(&self) -> usize {
        self.background
    }

    /// Drops every background task (the core stops serving: an app's client connections
    /// close with them).
    pub fn stop_background(&mut self) {
        self.core.spawned.borrow_mut().clear();
        for i in 0..self.tasks.len() {
            if matches!(self.tasks[i], Some(Task { fut: TaskFuture::Background(_), .. })) {
                let key = TaskKey { idx: i as u32, gen: self.gens[i] };
                self.take(key);
            }
        }
    }

    /// True when another task may start.
    pub fn has_room(&self) -> bool {
        self.in_flight() < self.max_in_flight
    }

    /// Counts a request refused for want of room.
    pub fn count_refused(&mut self) {
        self.counters.refused_busy += 1;
    }

    /// The counters.
    pub fn counters(&self) -> ExecCounters {
        self.counters
    }

    /// Starts `fut` for request `req` on connection `conn`, ended at `deadline`; it is
    /// first polled in the next [`run`](Self::run). The guard cancels it when dropped.
    pub fn spawn(&mut self, fut: HandlerFuture, conn: u64, req: ReqId, deadline: Instant) -> TaskGuard {
        let key = self.insert(TaskFuture::Handler { fut, conn, req });
        self.counters.spawned += 1;
        self.core.push_timer(deadline, TimerKind::Deadline(key));
        TaskGuard { key, cancels: self.cancels.clone(), armed: true }
    }

    fn insert(&mut self, fut: TaskFuture) -> TaskKey {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.tasks.push(None);
            self.gens.push(0);
            (self.tasks.len() - 1) as u32
        });
        let key = TaskKey { idx, gen: self.gens[idx as usize] };
        if matches!(fut, TaskFuture::Background(_)) {
            self.background += 1;
        }
        let waker = Waker::from(Arc::new(TaskWaker { key, queue: self.ready.clone() }));
        self.tasks[idx as usize] = Some(Task { fut, waker: waker.clone() });
        waker.wake();
        key
    }

    /// The earliest live timer, for the loop's sleep. Timers whose task or future is
    /// gone (a request answered before its deadline, a query answered before its
    /// timeout) are dropped here, so they never wake the loop.
    pub fn next_timer(&self) -> Option<Instant> {
        let mut timers = self.core.timers.borrow_mut();
        while let Some(Reverse(t)) = timers.peek() {
            if !self.is_dead(&t.kind) {
                return Some(t.at);
            }
            timers.pop();
        }
        None
    }

    fn is_dead(&self, kind: &TimerKind) -> bool {
        match kind {
            TimerKind::Wake(_, token) => token.strong_count() == 0,
            TimerKind::Deadline(key) => self.gens.get(key.idx as usize) != Some(&key.gen),
        }
    }

    /// True when a woken task waits to be polled.
    pub fn has_ready(&self) -> bool {
        !self.core.spawned.borrow().is_empty()
            || self.core.files_queued()
            || !self.ready.woken.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// One executor turn at `now`: drops cancelled tasks, fires due timers, polls at most
    /// [`POLLS_PER_TURN`] woken tasks once each (the rest stay queued for the next turn,
    /// so a burst of timers firing at once cannot hold the loop off its I/O). Returns
    /// the tasks that finished.
    pub fn run(&mut self, now: Instant) -> Vec<Completion> {
        self.core.now.set(now);
        let spawned: Vec<BackgroundFuture> = std::mem::take(&mut *self.core.spawned.borrow_mut());
        for fut in spawned {
            self.insert(TaskFuture::Background(fut));
        }
        let mut done = Vec::new();
        let cancels: Vec<TaskKey> = std::mem::take(&mut *self.cancels.borrow_mut());
        for key in cancels {
            if self.take(key).is_some() {
                self.counters.cancelled += 1;
            }
        }
        self.fire_timers(now, &mut done);
        // Reads that completed since the last turn (from the disk) wake their tasks.
        self.core.file_turn(false);
        let mut budget = POLLS_PER_TURN;
        budget -= self.poll_woken(budget, &mut done);
        // The reads those tasks started go to the kernel in one submission; those the
        // page cache holds are complete when it returns, and their tasks run now, so a
        // warm read is answered in the turn that asked for it.
        if self.core.file_turn(true) > 0 && budget > 0 {
            self.poll_woken(budget, &mut done);
        }
        done
    }

    /// Polls up to `budget` woken tasks; returns how many.
    fn poll_woken(&mut self, budget: usize, done: &mut Vec<Completion>) -> usize {
        let woken: Vec<TaskKey> = {
            let mut q = self.ready.woken.lock().unwrap_or_else(|e| e.into_inner());
            let n = q.len().min(budget);
            q.drain(..n).collect()
        };
        let n = woken.len();
        for key in woken {
            self.poll_task(key, done);
        }
        n
    }

    fn fire_timers(&mut self, now: Instant, done: &mut Vec<Completion>) {
        loop {
            let due = {
                let mut timers = self.core.timers.borrow_mut();
                match timers.peek() {
                    Some(Reverse(t)) if t.at <= now => timers.pop().map(|Reverse(t)| t.kind),
                    _ => None,
                }
            };
            match due {
                None => return,
                Some(TimerKind::Wake(w, token)) => {
                    if token.strong_count() > 0 {
                        w.wake();
                    }
                }
                Some(TimerKind::Deadline(key)) => {
                    if let Some(Task { fut: TaskFuture::Handler { conn, req, .. }, .. }) = self.take(key) {
                        self.counters.timed_out += 1;
                        done.push(Completion { conn, req, outcome: Outcome::TimedOut });
                    }
                }
            }
        }
    }

    fn poll_task(&mut self, key: TaskKey, done: &mut Vec<Completion>) {
        let Some(Some(task)) = self.tasks.get_mut(key.idx as usize) else { return };
        if self.gens[key.idx as usize] != key.gen {
            return; // woken after it ended
        }
        self.counters.polls += 1;
        let waker = task.waker.clone();
        let mut cx = Context::from_waker(&waker);
        let outcome = match &mut task.fut {
            TaskFuture::Handler { fut, .. } => match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
                Ok(Poll::Pending) => return,
                Ok(Poll::Ready(r)) => {
                    self.counters.completed += 1;
                    Outcome::Done(r)
                }
                Err(_) => {
                    self.counters.panicked += 1;
                    tracing::error!("async handler panicked; answered 500");
                    Outcome::Panicked
                }
            },
            TaskFuture::Background(fut) => {
                match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
                    Ok(Poll::Pending) => return,
                    Ok(Poll::Ready(())) => {}
                    Err(_) => {
                        self.counters.panicked += 1;
                        tracing::error!("a background task panicked; it is gone");
                    }
                }
                self.take(key);
                return;
            }
        };
        if let Some(Task { fut: TaskFuture::Handler { conn, req, .. }, .. }) = self.take(key) {
            done.push(Completion { conn, req, outcome });
        }
    }

    /// Removes the task (dropping its future, and with it what it held).
    fn take(&mut self, key: TaskKey) -> Option<Task> {
        let i = key.idx as usize;
        if self.gens.get(i) != Some(&key.gen) {
            return None;
        }
        let t = self.tasks[i].take()?;
        if matches!(t.fut, TaskFuture::Background(_)) {
            self.background -= 1;
        }
        self.gens[i] = self.gens[i].wrapping_add(1);
        self.free.push(key.idx);
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fut(core: Rc<CoreShared>, ms: u64) -> HandlerFuture {
        Box::pin(async move {
            let now = core.now();
            Sleep::until(core.clone(), now + Duration::from_millis(ms)).await;
            Ok(Response::text(200, format!("slept {ms}")))
        })
    }

    #[test]
    fn timers_wake_tasks_in_order_and_deadlines_end_them() {
        let t0 = Instant::now();
        let mut ex = Executor::new(8, t0, Shared::default());
        let core = ex.core().clone();
        let g1 = ex.spawn(fut(core.clone(), 10), 1, ReqId::from_raw(1), t0 + Duration::from_secs(1));
        let g2 = ex.spawn(fut(core.clone(), 5000), 2, ReqId::from_raw(2), t0 + Duration::from_millis(100));
        assert!(ex.run(t0).is_empty(), "both wait");
        assert_eq!(ex.next_timer(), Some(t0 + Duration::from_millis(10)));
        assert!(ex.run(t0 + Duration::from_millis(9)).is_empty(), "not yet due");
        let done = ex.run(t0 + Duration::from_millis(10));
        assert_eq!(done.len(), 1, "the timer wakes the task and it runs in the same turn");
        assert_eq!(done[0].conn, 1);
        assert!(matches!(&done[0].outcome, Outcome::Done(Ok(r)) if r.status == 200));
        g1.disarm();
        let done = ex.run(t0 + Duration::from_millis(100));
        assert!(matches!(done[..], [Completion { conn: 2, outcome: Outcome::TimedOut, .. }]));
        g2.disarm();
        assert_eq!(ex.in_flight(), 0);
        let c = ex.counters();
        assert_eq!((c.spawned, c.completed, c.timed_out, c.cancelled), (2, 1, 1, 0));
    }

    #[test]
    fn dropping_the_guard_cancels_and_frees_what_the_future_held() {
        let t0 = Instant::now();
        let mut ex = Executor::new(8, t0, Shared::default());
        let held = Rc::new(());
        let h = held.clone();
        let core = ex.core().clone();
        let guard = ex.spawn(
            Box::pin(async move {
                let _h = h;
                let now = core.now();
                Sleep::until(core.clone(), now + Duration::from_secs(60)).await;
                Ok(Response::text(200, "never"))
            }),
            7,
            ReqId::from_raw(1),
            t0 + Duration::from_secs(120),
        );
        ex.run(t0);
        assert_eq!(Rc::strong_count(&held), 2);
        drop(guard);
        assert!(ex.run(t0).is_empty());
        assert_eq!(Rc::strong_count(&held), 1, "the future was dropped");
        assert_eq!(ex.counters().cancelled, 1);
        assert_eq!(ex.in_flight(), 0);
    }

    #[test]
    fn timers_of_finished_work_do_not_wake_the_loop() {
        let t0 = Instant::now();
        let mut ex = Executor::new(8, t0, Shared::default());
        let core = ex.core().clone();
        let c = core.clone();
        // A request whose 2 s timeout is armed and whose answer comes at 10 ms.
        let g = ex.spawn(
            Box::pin(async move {
                let now = c.now();
                let quick = Sleep::until(c.clone(), now + Duration::from_millis(10));
                let r = timeout(&c, now + Duration::from_secs(2), quick).await;
                assert!(r.is_ok());
                Ok(Response::text(200, "done"))
            }),
            1,
            ReqId::from_raw(1),
            t0 + Duration::from_secs(5),
        );
        assert!(ex.run(t0).is_empty());
        assert_eq!(ex.next_timer(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(ex.run(t0 + Duration::from_millis(10)).len(), 1);
        g.disarm();
        assert_eq!(
            ex.next_timer(),
            None,
            "the 2 s timeout and the 5 s deadline belong to finished work: nothing to wake up for"
        );
    }

    #[test]
    fn only_wakes_from_other_threads_ring_the_doorbell() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let t0 = Instant::now();
        let mut ex = Executor::new(8, t0, Shared::default());
        let rings = Arc::new(AtomicUsize::new(0));
        let r = rings.clone();
        ex.set_doorbell(Box::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
        }));
        let slot: Rc<RefCell<Option<Waker>>> = Rc::default();
        let s = slot.clone();
        let g = ex.spawn(
            Box::pin(std::future::poll_fn(move |cx| {
                *s.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            })),
            1,
            ReqId::from_raw(1),
            t0 + Duration::from_secs(1),
        );
        ex.run(t0);
        assert_eq!(rings.load(Ordering::SeqCst), 0, "spawning on the core's thread does not ring");
        let waker = slot.borrow().clone().unwrap();
        waker.wake_by_ref();
        assert_eq!(rings.load(Ordering::SeqCst), 0, "a wake on the core's thread does not ring");
        assert!(ex.has_ready(), "but the task is queued, and the loop sees it before sleeping");
        ex.run(t0);
        std::thread::spawn(move || waker.wake()).join().unwrap();
        assert_eq!(rings.load(Ordering::SeqCst), 1, "a wake from another thread rings");
        assert!(ex.has_ready());
        drop(g);
    }

    #[test]
    fn a_panicking_future_completes_as_panicked() {
        let t0 = Instant::now();
        let mut ex = Executor::new(8, t0, Shared::default());
        let g = ex.spawn(Box::pin(async { panic!("boom") }), 3, ReqId::from_raw(1), t0 + Duration::from_secs(1));
        let done = ex.run(t0);
        assert!(matches!(done[..], [Completion { conn: 3, outcome: Outcome::Panicked, .. }]));
        g.disarm();
        assert_eq!(ex.counters().panicked, 1);
    }
}
