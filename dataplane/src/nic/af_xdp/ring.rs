//! The four single-producer/single-consumer rings shared with the kernel.
//!
//! We produce on the fill and TX rings and consume the RX and completion rings. Indices
//! are free-running u32 counters; an entry lives at `index & mask`. Producer and consumer
//! words are read with Acquire and published with Release, as the kernel's
//! `smp_load_acquire`/`smp_store_release` pair expects. Cached copies of the other side's
//! index keep the shared cache lines untouched until a batch needs them.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};

use super::mmap::Mmap;

/// Where one ring lives inside its mapping (from XDP_MMAP_OFFSETS).
#[derive(Debug, Clone, Copy)]
pub(super) struct RingLayout {
    pub producer: u64,
    pub consumer: u64,
    pub flags: u64,
    pub desc: u64,
    pub size: u32,
}

struct Raw<T> {
    /// Keeps the mapping the pointers below point into alive.
    _map: Mmap,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    desc: *mut T,
    mask: u32,
    size: u32,
    _t: PhantomData<T>,
}

impl<T: Copy> Raw<T> {
    fn new(map: Mmap, l: RingLayout) -> Raw<T> {
        assert!(l.size.is_power_of_two());
        Raw {
            producer: map.at(l.producer).cast(),
            consumer: map.at(l.consumer).cast(),
            flags: map.at(l.flags).cast(),
            desc: map.at(l.desc).cast(),
            mask: l.size - 1,
            size: l.size,
            _map: map,
            _t: PhantomData,
        }
    }

    fn load(word: *const AtomicU32) -> u32 {
        // SAFETY: the word is a 4-byte-aligned u32 inside the ring mapping (kernel-given
        // offset), alive as long as `map`, and only ever accessed atomically.
        unsafe { (*word).load(Ordering::Acquire) }
    }

    fn store(word: *const AtomicU32, v: u32) {
        // SAFETY: as in `load`.
        unsafe { (*word).store(v, Ordering::Release) }
    }

    fn read(&self, idx: u32) -> T {
        // SAFETY: idx & mask < size, and the mapping holds `size` entries of T at desc.
        unsafe { self.desc.add((idx & self.mask) as usize).read() }
    }

    fn write(&self, idx: u32, v: T) {
        // SAFETY: as in `read`; the entry belongs to us (reserved, not yet published).
        unsafe { self.desc.add((idx & self.mask) as usize).write(v) }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: as in `load`; flags is read relaxed as the kernel documents.
        unsafe { (*self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0 }
    }
}

// SAFETY: the raw pointers point into `map`, which moves with the ring; a ring is used
// by one thread at a time (its core loop).
unsafe impl<T> Send for Raw<T> {}

/// A ring we produce into (fill: frame addresses; TX: descriptors).
pub(super) struct Producer<T> {
    raw: Raw<T>,
    cached_prod: u32,
    cached_cons: u32,
}

impl<T: Copy> Producer<T> {
    pub fn new(map: Mmap, l: RingLayout) -> Self {
        let raw = Raw::<T>::new(map, l);
        let cached_prod = Raw::<T>::load(raw.producer);
        let cached_cons = Raw::<T>::load(raw.consumer) + raw.size;
        Producer { raw, cached_prod, cached_cons }
    }

    /// Free slots, refreshing the consumer index only when fewer than `want` look free.
    pub fn free(&mut self, want: u32) -> u32 {
        let free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free >= want {
            return free;
        }
        self.cached_cons = Raw::<T>::load(self.raw.consumer).wrapping_add(self.raw.size);
        self.cached_cons.wrapping_sub(self.cached_prod)
    }

    /// Writes `v` into the next slot (the caller checked `free`). Not visible until
    /// [`submit`](Self::submit).
    pub fn push(&mut self, v: T) {
        debug_assert!(self.cached_cons.wrapping_sub(self.cached_prod) > 0);
        self.raw.write(self.cached_prod, v);
        self.cached_prod = self.cached_prod.wrapping_add(1);
    }

    /// Publishes everything pushed.
    pub fn submit(&mut self) {
        Raw::<T>::store(self.raw.producer, self.cached_prod);
    }

    /// The kernel asked to be woken for this ring.
    pub fn needs_wakeup(&self) -> bool {
        self.raw.needs_wakeup()
    }

    /// Entries published but not yet consumed by the kernel.
    pub fn outstanding(&self) -> u32 {
        self.cached_prod.wrapping_sub(Raw::<T>::load(self.raw.consumer))
    }
}

/// A ring we consume from (RX: descriptors; completion: frame addresses).
pub(super) struct Consumer<T> {
    raw: Raw<T>,
    cached_prod: u32,
    cached_cons: u32,
}

impl<T: Copy> Consumer<T> {
    pub fn new(map: Mmap, l: RingLayout) -> Self {
        let raw = Raw::<T>::new(map, l);
        let cached_cons = Raw::<T>::load(raw.consumer);
        Consumer { raw, cached_prod: cached_cons, cached_cons }
    }

    /// Entries ready, at most `max`, refreshing the producer index when none are cached.
    pub fn available(&mut self, max: u32) -> u32 {
        let mut n = self.cached_prod.wrapping_sub(self.cached_cons);
        if n == 0 {
            self.cached_prod = Raw::<T>::load(self.raw.producer);
            n = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        n.min(max)
    }

    /// Entry `i` of the available ones.
    pub fn get(&self, i: u32) -> T {
        self.raw.read(self.cached_cons.wrapping_add(i))
    }

    /// Gives `n` entries back to the kernel.
    pub fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        Raw::<T>::store(self.raw.consumer, self.cached_cons);
    }
}
