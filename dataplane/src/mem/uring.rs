//! Reads of file byte ranges through io_uring, submitted from a core and completed in
//! its own loop: no thread of ours on the way.
//!
//! A [`FileReads`] is one core's ring. [`start`](FileReads::start) queues a read into a
//! buffer the ring owns until the kernel is done with it; the core's executor calls
//! [`submit`](FileReads::submit) once per turn (one `io_uring_enter` for every read the
//! turn queued) and [`reap`](FileReads::reap) to take completions and wake the futures
//! that wait on them. A read whose bytes are in the page cache completes inside that
//! `io_uring_enter`, so it is answered in the same turn; one that needs the disk goes to
//! the kernel (its workers, or task work run on the core's thread), and its completion
//! signals an eventfd that [`watch`] turns into the core's doorbell, so a sleeping loop
//! wakes for it. The eventfd is signalled only while the core sleeps with reads in
//! flight ([`FileReads::wakeups`]): an awake core reaps every turn, and page-cache hits
//! complete inside the submission.
//!
//! A future dropped while its read is in flight (a deadline, a client gone) abandons its
//! slot: the buffer stays with the ring until the completion arrives, then is freed.
//! Dropping the ring waits for every read still in flight, since the kernel writes into
//! those buffers until it completes them.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Poll, Waker};

use io_uring::{opcode, types, IoUring};

/// The longest a core sleeps while reads are in flight. Completions ring the core
/// through the ring's eventfd, but the kernel orders its check of the "eventfd
/// disabled" flag against the completion it posts with no full barrier, so a completion
/// posted just as the core turns the flag on can signal nothing (the loop then slept to
/// its 100 ms tick: stalls of ~100 ms in the cold-read benchmark). Capping the sleep
/// bounds such a miss; it costs a few extra wake-ups per read that goes to the disk.
pub const FILE_READ_MAX_SLEEP: std::time::Duration = std::time::Duration::from_millis(1);

/// A started read: its slot and the slot's generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadKey {
    idx: u32,
    gen: u32,
}

enum State {
    Free,
    /// In the ring; the waker of the future that waits, once it has polled.
    Reading(Option<Waker>),
    /// Finished; the future has not taken the result yet.
    Done(io::Result<()>),
    /// The future is gone; freed when the kernel completes the read.
    Abandoned,
}

struct Slot {
    gen: u32,
    state: State,
    buf: Vec<u8>,
    /// Kept open while the kernel may read from it.
    file: Option<Arc<File>>,
    offset: u64,
    want: usize,
}

crate::counters! {
    /// What one core's io_uring did.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct FileReadCounters {
        /// Reads started.
        pub file_reads: u64,
        /// Reads that completed inside the turn's submission (the bytes were in the page cache).
        pub file_reads_inline: u64,
        /// Reads that failed (the errno is returned to the handler).
        pub file_read_errors: u64,
        /// Short reads continued with another request for the rest.
        pub file_read_continued: u64,
        /// Reads that waited for a free slot (`handlers.file_reads_per_core` in flight).
        pub file_reads_waited: u64,
        /// Submission calls (`io_uring_enter`), at most one per loop turn with reads.
        pub file_read_submits: u64,
        /// Most reads in flight at once since start.
        pub file_reads_in_flight_peak: u64,
        /// Sleeps with reads in flight that ran to their timeout and found completions
        /// waiting: a wake-up that did not come (or came in the sleep's last moment).
        /// Such sleeps are capped at [`FILE_READ_MAX_SLEEP`].
        pub file_read_late_wakeups: u64,
    }
}

/// One core's io_uring for file reads.
pub struct FileReads {
    ring: IoUring,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Entries pushed to the submission queue, not yet submitted.
    queued: usize,
    in_flight: usize,
    capacity: usize,
    /// Futures waiting for a slot.
    waiting: Vec<Waker>,
    bell: OwnedFd,
    watched: Option<u64>,
    /// What it did.
    pub counters: FileReadCounters,
}

impl FileReads {
    /// A ring for at most `capacity` reads in flight. Fails where the kernel or a
    /// sandbox refuses io_uring (ENOSYS, EPERM): the caller falls back.
    pub fn new(capacity: usize) -> io::Result<FileReads> {
        let capacity = capacity.clamp(8, 32_768);
        let mut ring = IoUring::builder().setup_cqsize(2 * capacity as u32).build(capacity as u32)?;
        // SAFETY: eventfd has no memory arguments; a negative result is an error.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a new descriptor that nothing else owns.
        let bell = unsafe { OwnedFd::from_raw_fd(fd) };
        ring.submitter().register_eventfd(bell.as_raw_fd())?;
        // Off while the core is awake (it reaps every turn); on only while it sleeps with
        // reads in flight ([`wakeups`](Self::wakeups)).
        ring.completion().disable_eventfd();
        Ok(FileReads {
            ring,
            slots: Vec::new(),
            free: Vec::new(),
            queued: 0,
            in_flight: 0,
            capacity,
            waiting: Vec::new(),
            bell,
            watched: None,
            counters: FileReadCounters::default(),
        })
    }

    /// Rings `bell` (from the watcher thread) whenever a read completes asynchronously,
    /// so the core's loop wakes from its sleep to reap it.
    pub fn wake_with(&mut self, bell: Arc<dyn Fn() + Send + Sync>) -> io::Result<()> {
        self.watched = Some(watch(self.bell.as_raw_fd(), bell)?);
        Ok(())
    }

    /// Before the core sleeps (`on`): a completion posted while it sleeps signals the
    /// eventfd, if reads are in flight; returns true when completions are already
    /// waiting (then it should not sleep). After it wakes (`!on`): completions no
    /// longer signal (the loop reaps them each turn). Returns false then.
    pub fn wakeups(&mut self, on: bool) -> bool {
        let mut cq = self.ring.completion();
        if !on || self.in_flight == 0 {
            cq.disable_eventfd();
            return false;
        }
        cq.enable_eventfd();
        // A completion posted before the flag was seen signals nothing: look now.
        cq.sync();
        !cq.is_empty()
    }

    /// After a sleep with reads in flight that ended at its timeout: counts it in
    /// `file_read_late_wakeups` if completions are waiting.
    pub fn note_timed_out_sleep(&mut self) {
        let mut cq = self.ring.completion();
        cq.sync();
        if !cq.is_empty() {
            self.counters.file_read_late_wakeups += 1;
        }
    }

    /// Requests queued for the next [`submit`](Self::submit).
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Reads in flight (the kernel has them, or they wait for this turn's submission).
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Queues a read of `len` bytes of `file` at `offset`; submitted at the next
    /// [`submit`](Self::submit). `None` when `capacity` reads are in flight: the caller
    /// waits ([`wait_for_slot`](Self::wait_for_slot)).
    pub fn start(&mut self, file: Arc<File>, offset: u64, len: usize) -> Option<ReadKey> {
        if self.in_flight >= self.capacity {
            return None;
        }
        let idx = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot { gen: 0, state: State::Free, buf: Vec::new(), file: None, offset: 0, want: 0 });
            (self.slots.len() - 1) as u32
        });
        let s = &mut self.slots[idx as usize];
        s.state = State::Reading(None);
        s.buf = Vec::with_capacity(len);
        s.file = Some(file);
        s.offset = offset;
        s.want = len;
        self.in_flight += 1;
        self.counters.file_reads += 1;
        self.counters.file_reads_in_flight_peak = self.counters.file_reads_in_flight_peak.max(self.in_flight as u64);
        let key = ReadKey { idx, gen: s.gen };
        if len == 0 {
            self.finish(idx, Ok(()));
        } else {
            self.push(idx);
        }
        Some(key)
    }

    /// Pushes the request for the rest of slot `idx`'s range.
    fn push(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        let have = s.buf.len();
        let fd = s.file.as_ref().map_or(-1, |f| f.as_raw_fd());
        let rest = (s.want - have).min(u32::MAX as usize) as u32;
        // The pointer is into the Vec's heap buffer, which stays where it is while the
        // slot owns it (the slot is only reused after the completion is reaped).
        let ptr = s.buf.spare_capacity_mut().as_mut_ptr().cast::<u8>();
        let entry =
            opcode::Read::new(types::Fd(fd), ptr, rest).offset(s.offset + have as u64).build().user_data(idx as u64);
        // At most `capacity` reads are in flight, each with at most one entry queued,
        // and the ring has `capacity` entries: a push can only fail if it is full of
        // entries not yet submitted, which a submit empties.
        loop {
            // SAFETY: the entry points at `rest` bytes of spare capacity of the slot's
            // buffer and at the slot's open file; both are kept (the slot is neither
            // freed nor reused, the file not closed) until its completion is reaped.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                break;
            }
            if let Err(e) = self.ring.submit() {
                tracing::warn!("io_uring submit: {e}");
            }
            self.queued = 0;
        }
        self.queued += 1;
    }

    /// Submits what this turn queued (one system call; reads served from the page
    /// cache complete inside it, and are reaped here). Returns the number submitted.
    pub fn submit(&mut self) -> usize {
        if self.queued == 0 {
            return 0;
        }
        let n = self.queued;
        self.counters.file_read_submits += 1;
        match self.ring.submit() {
            Ok(_) => self.queued = 0,
            Err(e) => tracing::warn!("io_uring submit: {e}"),
        }
        // What is complete already was read from the page cache within the call.
        let inline = self.reap();
        self.counters.file_reads_inline += inline as u64;
        n
    }

    /// Takes every completion, waking the futures they finish. Returns how many.
    pub fn reap(&mut self) -> usize {
        let mut n = 0;
        let mut again = Vec::new();
        {
            let mut cq = self.ring.completion();
            cq.sync();
            for cqe in &mut cq {
                n += 1;
                again.push((cqe.user_data() as u32, cqe.result()));
            }
        }
        for (idx, res) in again {
            let Some(s) = self.slots.get_mut(idx as usize) else { continue };
            if res < 0 {
                self.counters.file_read_errors += 1;
                self.finish(idx, Err(io::Error::from_raw_os_error(-res)));
                continue;
            }
            // SAFETY: the kernel wrote `res` bytes into the spare capacity this request
            // pointed at, which starts at the buffer's current length.
            unsafe { s.buf.set_len(s.buf.len() + res as usize) };
            let abandoned = matches!(s.state, State::Abandoned);
            if res == 0 || s.buf.len() >= s.want || abandoned {
                // res == 0: end of file; the buffer holds what there was.
                self.finish(idx, Ok(()));
            } else {
                self.counters.file_read_continued += 1;
                self.push(idx);
            }
        }
        if n > 0 && !self.waiting.is_empty() && self.in_flight < self.capacity {
            for w in self.waiting.drain(..) {
                w.wake();
            }
        }
        n
    }

    fn finish(&mut self, idx: u32, r: io::Result<()>) {
        let s = &mut self.slots[idx as usize];
        s.file = None;
        match std::mem::replace(&mut s.state, State::Free) {
            State::Abandoned => self.release(idx),
            State::Reading(w) => {
                s.state = State::Done(r);
                if let Some(w) = w {
                    w.wake();
                }
            }
            other => s.state = other,
        }
    }

    fn release(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        s.state = State::Free;
        s.buf = Vec::new();
        s.gen = s.gen.wrapping_add(1);
        self.in_flight -= 1;
        self.free.push(idx);
    }

    /// The read's bytes once it is done (the future's poll); else remembers `waker`.
    pub fn poll(&mut self, key: ReadKey, waker: &Waker) -> Poll<io::Result<Vec<u8>>> {
        let Some(s) = self.slots.get_mut(key.idx as usize).filter(|s| s.gen == key.gen) else {
            return Poll::Ready(Err(io::Error::other("read slot reused")));
        };
        match &mut s.state {
            State::Reading(w) => {
                if !w.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *w = Some(waker.clone());
                }
                Poll::Pending
            }
            State::Done(_) => {
                let State::Done(r) = std::mem::replace(&mut s.state, State::Free) else { unreachable!() };
                let buf = std::mem::take(&mut s.buf);
                self.release(key.idx);
                Poll::Ready(r.map(|()| buf))
            }
            State::Free | State::Abandoned => Poll::Ready(Err(io::Error::other("read already taken"))),
        }
    }

    /// The future waiting on `key` is gone: its slot is freed once the kernel is done.
    pub fn abandon(&mut self, key: ReadKey) {
        let Some(s) = self.slots.get_mut(key.idx as usize).filter(|s| s.gen == key.gen) else { return };
        match s.state {
            State::Reading(_) => s.state = State::Abandoned,
            State::Done(_) => self.release(key.idx),
            _ => {}
        }
    }

    /// Wakes `waker` when a slot frees.
    pub fn wait_for_slot(&mut self, waker: &Waker) {
        self.counters.file_reads_waited += 1;
        self.waiting.push(waker.clone());
    }
}

impl Drop for FileReads {
    fn drop(&mut self) {
        if let Some(token) = self.watched.take() {
            unwatch(token, self.bell.as_raw_fd());
        }
        // The kernel writes into the buffers of reads in flight: wait for them all
        // before the buffers go.
        let mut spins = 0;
        while self.in_flight > 0 {
            for s in &mut self.slots {
                if let State::Reading(_) = s.state {
                    s.state = State::Abandoned;
                }
            }
            let done: Vec<u32> = (0..self.slots.len() as u32)
                .filter(|&i| matches!(self.slots[i as usize].state, State::Done(_)))
                .collect();
            for i in done {
                self.release(i);
            }
            if self.in_flight == 0 {
                break;
            }
            if let Err(e) = self.ring.submit_and_wait(1) {
                spins += 1;
                if spins > 1000 {
                    tracing::error!(
                        "io_uring: {} reads still in flight at exit ({e}); leaking their buffers",
                        self.in_flight
                    );
                    for s in &mut self.slots {
                        std::mem::forget(std::mem::take(&mut s.buf));
                    }
                    return;
                }
            }
            self.reap();
        }
    }
}

/// The process's watcher: one thread that waits on every ring's eventfd and rings the
/// core it belongs to. It only wakes loops; it does no I/O.
struct Watcher {
    epoll: OwnedFd,
    bells: Mutex<HashMap<u64, Arc<dyn Fn() + Send + Sync>>>,
    next: std::sync::atomic::AtomicU64,
}

fn watcher() -> io::Result<&'static Watcher> {
    static W: OnceLock<Result<&'static Watcher, i32>> = OnceLock::new();
    let w = W.get_or_init(|| {
        // SAFETY: epoll_create1 has no memory arguments.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
        }
        // SAFETY: fd is a new descriptor nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let w: &'static Watcher = Box::leak(Box::new(Watcher {
            epoll,
            bells: Mutex::new(HashMap::new()),
            next: std::sync::atomic::AtomicU64::new(1),
        }));
        let spawned = std::thread::Builder::new().name("px-uring-bell".into()).spawn(move || w.run());
        match spawned {
            Ok(_) => Ok(w),
            Err(e) => Err(e.raw_os_error().unwrap_or(libc::EAGAIN)),
        }
    });
    w.map_err(io::Error::from_raw_os_error)
}

impl Watcher {
    fn run(&self) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
        loop {
            // SAFETY: events is a writable array of the length passed.
            let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, -1) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("io_uring watcher: epoll_wait: {}", io::Error::last_os_error());
                return;
            }
            for ev in &events[..n as usize] {
                let token = ev.u64;
                let bell = self.bells.lock().unwrap_or_else(|e| e.into_inner()).get(&token).cloned();
                if let Some((bell, fd)) = bell.map(|b| (b, token_fd(token))) {
                    drain(fd);
                    bell();
                }
            }
        }
    }
}

/// Tokens carry the eventfd in their low 32 bits (and a sequence number above it, so a
/// reused descriptor number gets a new token).
fn token_fd(token: u64) -> RawFd {
    (token & 0xffff_ffff) as RawFd
}

fn drain(fd: RawFd) {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into v; the eventfd is non-blocking (EAGAIN when empty).
    unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
}

/// Has the watcher ring `bell` when `fd` (an eventfd) becomes readable. Returns the
/// token for [`unwatch`].
fn watch(fd: RawFd, bell: Arc<dyn Fn() + Send + Sync>) -> io::Result<u64> {
    let w = watcher()?;
    let token = (w.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) << 32) | fd as u32 as u64;
    w.bells.lock().unwrap_or_else(|e| e.into_inner()).insert(token, bell);
    let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
    // SAFETY: ev is a valid epoll_event; fd is an open eventfd the caller owns.
    if unsafe { libc::epoll_ctl(w.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        let e = io::Error::last_os_error();
        w.bells.lock().unwrap_or_else(|e| e.into_inner()).remove(&token);
        return Err(e);
    }
    Ok(token)
}

fn unwatch(token: u64, fd: RawFd) {
    if let Ok(w) = watcher() {
        // SAFETY: removing a descriptor from the epoll set; the event argument is unused.
        unsafe { libc::epoll_ctl(w.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
        w.bells.lock().unwrap_or_else(|e| e.into_inner()).remove(&token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn file(len: usize) -> (Arc<File>, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut f = tempfile();
        f.write_all(&data).unwrap();
        (Arc::new(f), data)
    }

    fn tempfile() -> File {
        let path =
            std::env::temp_dir().join(format!("px-uring-{}-{:?}", std::process::id(), std::thread::current().id()));
        let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    fn ring(cap: usize) -> Option<FileReads> {
        match FileReads::new(cap) {
            Ok(r) => Some(r),
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("io_uring unavailable here ({e}); skipping");
                None
            }
            Err(e) => panic!("io_uring unavailable in CI: {e}"),
        }
    }

    /// Submits and reaps until every key is done, as the executor's turns do.
    fn run_until_done(r: &mut FileReads, keys: &[ReadKey], waker: &Waker) -> Vec<io::Result<Vec<u8>>> {
        let mut out: Vec<Option<io::Result<Vec<u8>>>> = keys.iter().map(|_| None).collect();
        for _ in 0..100_000 {
            r.submit();
            r.reap();
            for (i, k) in keys.iter().enumerate() {
                if out[i].is_none() {
                    if let Poll::Ready(v) = r.poll(*k, waker) {
                        out[i] = Some(v);
                    }
                }
            }
            if out.iter().all(Option::is_some) {
                return out.into_iter().map(Option::unwrap).collect();
            }
            std::thread::yield_now();
        }
        panic!("reads did not complete");
    }

    #[test]
    #[cfg_attr(miri, ignore = "io_uring system calls are foreign calls Miri cannot run")]
    fn many_reads_in_flight_return_their_exact_bytes() {
        let Some(mut r) = ring(512) else { return };
        let (f, data) = file(1 << 20);
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let mut keys = Vec::new();
        let mut want = Vec::new();
        for i in 0..300usize {
            let off = (i * 3_989) % (data.len() - 5000);
            let len = 1 + (i * 131) % 4000;
            keys.push(r.start(f.clone(), off as u64, len).expect("room for 300"));
            want.push(&data[off..off + len]);
        }
        assert_eq!(r.in_flight(), 300, "all 300 queued at once");
        let got = run_until_done(&mut r, &keys, &waker);
        for (g, w) in got.into_iter().zip(want) {
            assert_eq!(g.unwrap(), w);
        }
        assert_eq!(r.in_flight(), 0);
        assert_eq!(r.counters.file_reads, 300);
    }

    #[test]
    #[cfg_attr(miri, ignore = "io_uring system calls are foreign calls Miri cannot run")]
    fn a_read_past_the_end_returns_what_there_is_and_errors_are_returned() {
        let Some(mut r) = ring(8) else { return };
        let (f, data) = file(10_000);
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let k1 = r.start(f.clone(), 9_000, 5_000).unwrap();
        let k2 = r.start(f.clone(), 20_000, 10).unwrap();
        let dir = Arc::new(File::open("/").unwrap());
        let k3 = r.start(dir, 0, 10).unwrap();
        let got = run_until_done(&mut r, &[k1, k2, k3], &waker);
        let mut got = got.into_iter();
        assert_eq!(got.next().unwrap().unwrap(), &data[9_000..]);
        assert_eq!(got.next().unwrap().unwrap(), b"");
        let e = got.next().unwrap().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EISDIR), "{e}");
        assert_eq!(r.counters.file_read_errors, 1);
    }

    #[test]
    #[cfg_attr(miri, ignore = "io_uring system calls are foreign calls Miri cannot run")]
    fn a_full_ring_refuses_then_frees_slots_and_abandoned_reads_are_released() {
        let Some(mut r) = ring(8) else { return };
        let (f, data) = file(100_000);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let keys: Vec<ReadKey> = (0..8).map(|i| r.start(f.clone(), i * 1000, 1000).unwrap()).collect();
        assert!(r.start(f.clone(), 0, 10).is_none(), "a ninth read waits");
        r.wait_for_slot(&waker);
        r.abandon(keys[0]);
        let rest = run_until_done(&mut r, &keys[1..], &waker);
        assert_eq!(rest[0].as_ref().unwrap(), &data[1000..2000]);
        assert_eq!(r.in_flight(), 0, "the abandoned read's slot came back when it completed");
        assert!(count.0.load(Ordering::Relaxed) >= 1, "the waiting future was woken");
        assert!(r.start(f, 0, 10).is_some());
    }

    #[test]
    #[cfg_attr(miri, ignore = "io_uring system calls are foreign calls Miri cannot run")]
    fn an_asynchronous_completion_rings_the_bell() {
        let Some(mut r) = ring(8) else { return };
        let rung = Arc::new(AtomicUsize::new(0));
        let rr = rung.clone();
        r.wake_with(Arc::new(move || {
            rr.fetch_add(1, Ordering::Relaxed);
        }))
        .unwrap();
        // A pipe with nothing in it yet: the read cannot complete inline.
        let mut fds = [0; 2];
        // SAFETY: fds is a writable array of two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both are new descriptors owned here.
        let (rd, wr) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        let rd = Arc::new(rd);
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let k = r.start(rd, 0, 5).unwrap();
        r.submit();
        r.reap();
        assert!(r.poll(k, &waker).is_pending());
        assert!(!r.wakeups(true), "nothing complete yet: the core may sleep");
        (&wr).write_all(b"hello").unwrap();
        let t0 = std::time::Instant::now();
        while rung.load(Ordering::Relaxed) == 0 {
            assert!(t0.elapsed() < std::time::Duration::from_secs(10), "the bell never rang");
            std::thread::yield_now();
        }
        assert!(r.wakeups(true), "the completion waits to be reaped");
        r.wakeups(false);
        let got = run_until_done(&mut r, &[k], &waker);
        assert_eq!(got[0].as_ref().unwrap(), b"hello");
    }
}
