//! A per-core pool of equal-sized chunks carved from one [`Region`].
//!
//! Single-threaded by design (one pool per core loop, shared by that core's arenas
//! through `Rc`): taking and returning a chunk is a `Vec` pop/push.

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;

use super::Region;

/// Occupancy of a pool, for /stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Chunks in the pool.
    pub chunks_total: usize,
    /// Chunks not lent to any arena.
    pub chunks_free: usize,
    /// Lowest `chunks_free` seen.
    pub chunks_free_min: usize,
    /// Requests for a chunk that found the pool empty.
    pub exhausted: u64,
}

/// Fixed-size chunks lent to arenas.
#[derive(Debug)]
pub struct ChunkPool {
    region: Region,
    chunk_bytes: usize,
    free: RefCell<Vec<u32>>,
    free_min: Cell<usize>,
    exhausted: Cell<u64>,
}

impl ChunkPool {
    /// Splits `region` into chunks of `chunk_bytes` (a power of two dividing the region).
    ///
    /// # Panics
    /// If `chunk_bytes` is not a power of two or does not divide the region: config
    /// validation rejects such values before a pool is built.
    pub fn new(region: Region, chunk_bytes: usize) -> ChunkPool {
        assert!(chunk_bytes.is_power_of_two() && region.len().is_multiple_of(chunk_bytes));
        let n = region.len() / chunk_bytes;
        assert!(n <= u32::MAX as usize);
        // Reverse, so chunk 0 is lent first (lower addresses first helps when reading dumps).
        let free: Vec<u32> = (0..n as u32).rev().collect();
        ChunkPool { region, chunk_bytes, free: RefCell::new(free), free_min: Cell::new(n), exhausted: Cell::new(0) }
    }

    /// Bytes per chunk.
    pub fn chunk_bytes(&self) -> usize {
        self.chunk_bytes
    }

    /// Takes a free chunk, or `None` when all are lent.
    pub fn take(&self) -> Option<u32> {
        let mut free = self.free.borrow_mut();
        let id = free.pop();
        if id.is_none() {
            self.exhausted.set(self.exhausted.get() + 1);
        }
        self.free_min.set(self.free_min.get().min(free.len()));
        id
    }

    /// Returns a chunk taken with [`take`](Self::take).
    pub fn give_back(&self, id: u32) {
        debug_assert!((id as usize) < self.region.len() / self.chunk_bytes);
        self.free.borrow_mut().push(id);
    }

    /// Base address of chunk `id`.
    pub fn chunk_ptr(&self, id: u32) -> NonNull<u8> {
        let off = id as usize * self.chunk_bytes;
        assert!(off < self.region.len());
        // SAFETY: off is inside the region (asserted), so the result is in bounds of the
        // same mapping and non-null.
        unsafe { NonNull::new_unchecked(self.region.as_ptr().as_ptr().add(off)) }
    }

    /// Occupancy figures.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            chunks_total: self.region.len() / self.chunk_bytes,
            chunks_free: self.free.borrow().len(),
            chunks_free_min: self.free_min.get(),
            exhausted: self.exhausted.get(),
        }
    }

    /// The region behind the pool.
    pub fn region(&self) -> &Region {
        &self.region
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::{HugepagePolicy, HUGEPAGE_BYTES};

    #[test]
    fn take_and_give_back() {
        let pool = ChunkPool::new(Region::map(HUGEPAGE_BYTES, None, HugepagePolicy::Off).unwrap(), 1 << 20);
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert_ne!(a, b);
        assert_eq!(pool.take(), None);
        assert_eq!(pool.stats().exhausted, 1);
        pool.give_back(a);
        assert_eq!(pool.take(), Some(a));
        assert_eq!(pool.stats().chunks_free_min, 0);
    }
}
