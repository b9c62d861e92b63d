//! The per-connection rewindable arena (PyParallel's heap snapshot/rewind).
//!
//! A bump allocator over chunks borrowed from the core's [`ChunkPool`]. The HTTP engine
//! takes a [`Mark`] when a request starts; handlers allocate freely (`&self` methods,
//! like bumpalo); once the response has been handed to the transport the engine calls
//! [`Arena::rewind`], which needs `&mut self` and so cannot run while any allocation is
//! still borrowed. Chunks past the mark go back to the pool, so an idle connection holds
//! no arena memory at all.
//!
//! Allocations larger than one chunk come from the global allocator, are counted against
//! the same per-connection cap, and are freed by the same rewind. Nothing allocated here
//! is dropped: only `Copy` values and bytes can be placed in an arena.

use std::alloc::Layout;
use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::rc::Rc;
use std::{fmt, io};

use super::ChunkPool;

/// Why an allocation failed. The HTTP engine answers 503 and closes that connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArenaError {
    /// The connection's arena would exceed its cap (`arena.max_bytes_per_conn`).
    #[error("arena cap of {cap} bytes per connection exceeded")]
    CapExceeded {
        /// The cap in bytes.
        cap: usize,
    },
    /// The core's chunk pool is empty (`arena.pool_bytes_per_core`).
    #[error("the core's arena pool is exhausted")]
    PoolExhausted,
    /// The requested alignment is above 4096.
    #[error("alignment {0} is not supported")]
    BadAlign(usize),
}

/// A snapshot of an arena's fill level, to rewind to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    chunks: usize,
    top: usize,
    large: usize,
}

/// A rewindable bump allocator owned by one connection.
pub struct Arena {
    pool: Rc<ChunkPool>,
    chunks: RefCell<Vec<u32>>,
    top: Cell<usize>,
    large: RefCell<Vec<(NonNull<u8>, Layout)>>,
    used: Cell<usize>,
    high_water: Cell<usize>,
    cap: usize,
    epoch: Cell<u64>,
}

/// Bytes of an [`Arena`] remembered past the borrow that produced them, to be read back
/// with [`Arena::pinned`] while no rewind has happened: how a response body the
/// arena already holds is queued for sending without copying it.
///
/// It holds no pointer, only where the bytes are (chunk slot or large allocation, and
/// offset), so reading it back derives the address from the arena's own memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned {
    at: PinnedAt,
    offset: usize,
    len: usize,
    epoch: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PinnedAt {
    Chunk(usize),
    Large(usize),
}

impl Pinned {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes `from..` of this pin (a suffix, for partly sent bodies).
    pub fn suffix(&self, from: usize) -> Pinned {
        let from = from.min(self.len);
        Pinned { offset: self.offset + from, len: self.len - from, ..*self }
    }
}

impl fmt::Debug for Arena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena").field("used", &self.used.get()).field("cap", &self.cap).finish()
    }
}

const MAX_ALIGN: usize = 4096;

impl Arena {
    /// An empty arena drawing from `pool`, holding at most `cap_bytes`.
    pub fn new(pool: Rc<ChunkPool>, cap_bytes: usize) -> Arena {
        Arena {
            pool,
            chunks: RefCell::new(Vec::new()),
            top: Cell::new(0),
            large: RefCell::new(Vec::new()),
            used: Cell::new(0),
            high_water: Cell::new(0),
            cap: cap_bytes,
            epoch: Cell::new(0),
        }
    }

    /// Remembers `bytes` if they lie inside this arena's memory (None otherwise: a
    /// static, shared or request slice, which the caller copies instead).
    pub fn pin(&self, bytes: &[u8]) -> Option<Pinned> {
        let (start, len) = (bytes.as_ptr() as usize, bytes.len());
        let chunk_bytes = self.pool.chunk_bytes();
        let epoch = self.epoch.get();
        for (slot, &id) in self.chunks.borrow().iter().enumerate() {
            let base = self.pool.chunk_ptr(id).as_ptr() as usize;
            if start >= base && start + len <= base + chunk_bytes {
                return Some(Pinned { at: PinnedAt::Chunk(slot), offset: start - base, len, epoch });
            }
        }
        for (slot, (ptr, layout)) in self.large.borrow().iter().enumerate() {
            let base = ptr.as_ptr() as usize;
            if start >= base && start + len <= base + layout.size() {
                return Some(Pinned { at: PinnedAt::Large(slot), offset: start - base, len, epoch });
            }
        }
        None
    }

    /// The bytes `p` remembers.
    ///
    /// # Panics
    /// If the arena was rewound since `p` was pinned (the bytes may be gone).
    pub fn pinned(&self, p: &Pinned) -> &[u8] {
        assert_eq!(p.epoch, self.epoch.get(), "arena bytes read after a rewind");
        let base = match p.at {
            PinnedAt::Chunk(slot) => {
                let chunk_bytes = self.pool.chunk_bytes();
                assert!(p.offset + p.len <= chunk_bytes, "pin outside its chunk");
                self.pool.chunk_ptr(self.chunks.borrow()[slot])
            }
            PinnedAt::Large(slot) => {
                let (ptr, layout) = self.large.borrow()[slot];
                assert!(p.offset + p.len <= layout.size(), "pin outside its allocation");
                ptr
            }
        };
        // SAFETY: the range lies inside a chunk or large allocation this arena still
        // holds (same epoch: no rewind since the pin, and only a rewind gives memory
        // back), checked against its size above. The bytes were initialised when pinned
        // and nothing writes them since: the bump allocator never hands out memory twice
        // between rewinds, and the `&mut` that wrote them ended with the borrow of the
        // arena that produced them. A rewind needs `&mut self`, so it cannot happen while
        // the returned borrow of `&self` lives.
        unsafe { std::slice::from_raw_parts(base.as_ptr().add(p.offset), p.len) }
    }

    /// The current fill level.
    pub fn mark(&self) -> Mark {
        Mark { chunks: self.chunks.borrow().len(), top: self.top.get(), large: self.large.borrow().len() }
    }

    /// Frees everything allocated since `mark`; chunks past it go back to the pool.
    ///
    /// # Panics
    /// If `mark` is newer than the arena's state (taken after a deeper rewind).
    pub fn rewind(&mut self, mark: Mark) {
        *self.epoch.get_mut() += 1;
        let chunks = self.chunks.get_mut();
        assert!(mark.chunks <= chunks.len(), "rewind to a mark from the future");
        for id in chunks.drain(mark.chunks..) {
            self.pool.give_back(id);
        }
        self.top.set(if mark.chunks == 0 { 0 } else { mark.top });
        let large = self.large.get_mut();
        assert!(mark.large <= large.len(), "rewind to a mark from the future");
        for (ptr, layout) in large.drain(mark.large..) {
            // SAFETY: ptr was returned by alloc_zeroed with this layout in alloc_large and
            // is freed once, here; `&mut self` proves no slice into it is still borrowed.
            unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
        }
        let large_bytes: usize = large.iter().map(|(_, l)| l.size()).sum();
        self.used.set(chunks.len() * self.pool.chunk_bytes() + large_bytes);
    }

    /// Rewinds to empty: the arena then holds no memory.
    pub fn reset(&mut self) {
        self.rewind(Mark { chunks: 0, top: 0, large: 0 });
    }

    /// Bytes held (whole chunks plus large allocations).
    pub fn used_bytes(&self) -> usize {
        self.used.get()
    }

    /// Most bytes ever held at once.
    pub fn high_water_bytes(&self) -> usize {
        self.high_water.get()
    }

    /// The per-connection cap.
    pub fn cap_bytes(&self) -> usize {
        self.cap
    }

    /// `len` bytes (contents unspecified but initialised).
    // A bump allocator hands out disjoint `&mut` from `&self` by design (as bumpalo does).
    #[allow(clippy::mut_from_ref)]
    pub fn alloc_bytes(&self, len: usize) -> Result<&mut [u8], ArenaError> {
        let ptr = self.alloc_raw(len, 1)?;
        // SAFETY: alloc_raw returns `len` bytes no other live allocation overlaps, inside
        // memory that stays mapped until a rewind, which needs `&mut self` and so cannot
        // happen while this `&self` borrow lives. Chunk and large memory is always
        // initialised (zeroed at map/alloc time, or holding old bytes).
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), len) })
    }

    /// A copy of `src` in the arena.
    pub fn alloc_slice(&self, src: &[u8]) -> Result<&mut [u8], ArenaError> {
        let dst = self.alloc_bytes(src.len())?;
        dst.copy_from_slice(src);
        Ok(dst)
    }

    /// A copy of `s` in the arena.
    pub fn alloc_str(&self, s: &str) -> Result<&str, ArenaError> {
        let bytes = self.alloc_slice(s.as_bytes())?;
        // SAFETY: the bytes are an exact copy of a valid str.
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    }

    /// Places `value` in the arena. It is never dropped, hence `Copy`.
    #[allow(clippy::mut_from_ref)]
    pub fn alloc<T: Copy>(&self, value: T) -> Result<&mut T, ArenaError> {
        let ptr = self.alloc_raw(std::mem::size_of::<T>(), std::mem::align_of::<T>())?.cast::<T>();
        // SAFETY: ptr is aligned for T and points at size_of::<T>() bytes exclusive to
        // this allocation (see alloc_bytes); writing initialises it.
        unsafe {
            ptr.as_ptr().write(value);
            Ok(&mut *ptr.as_ptr())
        }
    }

    /// A growable byte buffer in the arena (for serialising a body in place).
    pub fn vec(&self) -> ArenaVec<'_> {
        ArenaVec { arena: self, ptr: NonNull::dangling(), len: 0, cap: 0 }
    }

    fn alloc_raw(&self, len: usize, align: usize) -> Result<NonNull<u8>, ArenaError> {
        if !align.is_power_of_two() || align > MAX_ALIGN {
            return Err(ArenaError::BadAlign(align));
        }
        let chunk_bytes = self.pool.chunk_bytes();
        if len == 0 {
            // A well-aligned dangling pointer (no provenance) is valid for zero-sized access.
            return Ok(NonNull::new(std::ptr::without_provenance_mut(align)).expect("align is non-zero"));
        }
        if len > chunk_bytes {
            return self.alloc_large(len, align);
        }
        if let Some(&last) = self.chunks.borrow().last() {
            let base = self.pool.chunk_ptr(last);
            let start = align_up(base.as_ptr() as usize + self.top.get(), align) - base.as_ptr() as usize;
            if start + len <= chunk_bytes {
                self.top.set(start + len);
                // SAFETY: start + len <= chunk_bytes, so the result lies inside the chunk.
                return Ok(unsafe { NonNull::new_unchecked(base.as_ptr().add(start)) });
            }
        }
        self.charge(chunk_bytes)?;
        let Some(id) = self.pool.take() else {
            self.used.set(self.used.get() - chunk_bytes);
            return Err(ArenaError::PoolExhausted);
        };
        self.chunks.borrow_mut().push(id);
        self.top.set(len);
        // Chunk bases are chunk_bytes-aligned (>= 4096 >= align).
        Ok(self.pool.chunk_ptr(id))
    }

    fn alloc_large(&self, len: usize, align: usize) -> Result<NonNull<u8>, ArenaError> {
        self.charge(len)?;
        let layout = Layout::from_size_align(len, align).map_err(|_| ArenaError::BadAlign(align))?;
        // SAFETY: layout has non-zero size (len > chunk_bytes > 0).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            self.used.set(self.used.get() - len);
            return Err(ArenaError::PoolExhausted);
        };
        self.large.borrow_mut().push((ptr, layout));
        Ok(ptr)
    }

    fn charge(&self, bytes: usize) -> Result<(), ArenaError> {
        let used = self.used.get() + bytes;
        if used > self.cap {
            return Err(ArenaError::CapExceeded { cap: self.cap });
        }
        self.used.set(used);
        self.high_water.set(self.high_water.get().max(used));
        Ok(())
    }

    /// Grows the allocation ending at `end` by `additional` bytes if it is the most
    /// recent one in the current chunk and the chunk has room.
    fn try_extend(&self, end: *const u8, additional: usize) -> bool {
        let Some(&last) = self.chunks.borrow().last() else { return false };
        let base = self.pool.chunk_ptr(last).as_ptr() as usize;
        let top = self.top.get();
        if base + top != end as usize || top + additional > self.pool.chunk_bytes() {
            return false;
        }
        self.top.set(top + additional);
        true
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        self.reset();
    }
}

fn align_up(addr: usize, align: usize) -> usize {
    (addr + align - 1) & !(align - 1)
}

/// A growable byte buffer inside an [`Arena`]; grows in place when it is the arena's
/// newest allocation, else moves (the old bytes stay until the rewind).
pub struct ArenaVec<'a> {
    arena: &'a Arena,
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
}

impl<'a> ArenaVec<'a> {
    /// Appends `bytes`.
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), ArenaError> {
        self.reserve(bytes.len())?;
        // SAFETY: reserve made ptr..ptr+cap ours with len + bytes.len() <= cap; `bytes`
        // cannot overlap it because the only borrow of this memory is `self`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(self.len), bytes.len()) };
        self.len += bytes.len();
        Ok(())
    }

    /// Makes room for `additional` more bytes.
    #[inline]
    pub fn reserve(&mut self, additional: usize) -> Result<(), ArenaError> {
        if self.cap - self.len >= additional {
            return Ok(());
        }
        self.grow(additional)
    }

    /// The rest of `reserve`, out of line: the usual write fits the room already made.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, additional: usize) -> Result<(), ArenaError> {
        let need = self.len.checked_add(additional).ok_or(ArenaError::CapExceeded { cap: self.arena.cap })?;
        if need <= self.cap {
            return Ok(());
        }
        let want = need.max(self.cap * 2).max(64);
        if self.cap > 0 {
            // SAFETY: ptr..ptr+cap is this buffer's allocation; the end pointer is only compared.
            let end = unsafe { self.ptr.as_ptr().add(self.cap) };
            for target in [want, need] {
                if self.arena.try_extend(end, target - self.cap) {
                    self.cap = target;
                    return Ok(());
                }
            }
        }
        let new = self.arena.alloc_raw(want, 1)?;
        // SAFETY: `new` is a fresh allocation of `want >= len` bytes, disjoint from the
        // old one, which stays valid until the arena is rewound.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), new.as_ptr(), self.len) };
        self.ptr = new;
        self.cap = want;
        Ok(())
    }

    /// Bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the first len bytes were written by extend_from_slice (or len is 0 and
        // ptr is dangling, which is valid for an empty slice).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The finished bytes, borrowed from the arena until its next rewind.
    pub fn into_slice(self) -> &'a [u8] {
        // SAFETY: as in as_slice; the memory lives as long as the arena borrow 'a.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl io::Write for ArenaVec<'_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.extend_from_slice(buf).map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Write for ArenaVec<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.extend_from_slice(s.as_bytes()).map_err(|_| fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::{HugepagePolicy, Region, HUGEPAGE_BYTES};

    fn pool(chunk: usize) -> Rc<ChunkPool> {
        Rc::new(ChunkPool::new(Region::map(HUGEPAGE_BYTES, None, HugepagePolicy::Off).unwrap(), chunk))
    }

    #[test]
    fn allocations_are_disjoint_and_keep_their_bytes() {
        let arena = Arena::new(pool(4096), 1 << 20);
        let a = arena.alloc_slice(b"hello").unwrap();
        let b = arena.alloc_slice(&[9u8; 5000]).unwrap(); // larger than a chunk
        let c = arena.alloc(0xdead_beef_u64).unwrap();
        assert_eq!(*c as usize % 8, 0xdead_beef_u64 as usize % 8);
        assert_eq!((c as *mut u64 as usize) % 8, 0);
        a[0] = b'j';
        assert_eq!(a, b"jello");
        assert!(b.iter().all(|&x| x == 9));
        assert_eq!(*c, 0xdead_beef);
    }

    #[test]
    fn rewind_returns_chunks_and_reuses_memory() {
        let pool = pool(4096);
        let mut arena = Arena::new(pool.clone(), 1 << 20);
        let first = arena.alloc_bytes(10).unwrap().as_ptr() as usize;
        let mark = arena.mark();
        for _ in 0..10 {
            arena.alloc_bytes(3000).unwrap();
        }
        arena.alloc_bytes(100_000).unwrap();
        assert!(arena.used_bytes() >= 10 * 4096 + 100_000);
        arena.rewind(mark);
        assert_eq!(arena.used_bytes(), 4096);
        assert_eq!(pool.stats().chunks_free, pool.stats().chunks_total - 1);
        let again = arena.alloc_bytes(10).unwrap().as_ptr() as usize;
        assert_eq!(again, first + 10, "bump continues right after the mark");
        arena.reset();
        assert_eq!(arena.used_bytes(), 0);
        assert_eq!(pool.stats().chunks_free, pool.stats().chunks_total);
    }

    #[test]
    fn cap_is_enforced_and_arena_stays_usable() {
        let mut arena = Arena::new(pool(4096), 3 * 4096);
        for _ in 0..3 {
            arena.alloc_bytes(4000).unwrap();
        }
        assert_eq!(arena.alloc_bytes(4000), Err(ArenaError::CapExceeded { cap: 3 * 4096 }));
        assert_eq!(arena.alloc_bytes(20_000).unwrap_err(), ArenaError::CapExceeded { cap: 3 * 4096 });
        arena.reset();
        assert!(arena.alloc_bytes(4000).is_ok());
    }

    #[test]
    fn pool_exhaustion_is_reported() {
        let pool = pool(1 << 20); // two chunks
        let a = Arena::new(pool.clone(), 8 << 20);
        let b = Arena::new(pool.clone(), 8 << 20);
        a.alloc_bytes(1 << 20).unwrap();
        b.alloc_bytes(1 << 20).unwrap();
        assert_eq!(a.alloc_bytes(1).unwrap_err(), ArenaError::PoolExhausted);
        assert_eq!(a.used_bytes(), 1 << 20, "a failed take is not charged");
        drop(b);
        assert!(a.alloc_bytes(1).is_ok());
    }

    #[test]
    fn vec_grows_in_place_then_moves() {
        let arena = Arena::new(pool(4096), 1 << 20);
        let mut v = arena.vec();
        for i in 0..100u8 {
            v.extend_from_slice(&[i]).unwrap();
        }
        let p = v.as_slice().as_ptr();
        v.extend_from_slice(&[0; 200]).unwrap();
        assert_eq!(v.as_slice().as_ptr(), p, "newest allocation grows in place");
        let other = arena.alloc_bytes(8).unwrap();
        other.fill(0xff);
        v.extend_from_slice(&[1; 4000]).unwrap();
        let s = v.into_slice();
        assert_eq!(s.len(), 4300);
        assert!(s[..100].iter().enumerate().all(|(i, &b)| b == i as u8));
        assert!(s[300..].iter().all(|&b| b == 1));
        assert!(other.iter().all(|&b| b == 0xff), "moving the vec left other data alone");
    }

    #[test]
    fn vec_implements_write() {
        use std::io::Write;
        let arena = Arena::new(pool(4096), 1 << 20);
        let mut v = arena.vec();
        write!(v, "{}-ab", 12).unwrap();
        assert_eq!(v.as_slice(), b"12-ab");
        let mut big = arena.vec();
        let err = big.extend_from_slice(&vec![0; 2 << 20]).unwrap_err();
        assert_eq!(err, ArenaError::CapExceeded { cap: 1 << 20 });
    }

    #[test]
    fn pinned_bytes_read_back_until_rewind() {
        let mut a = Arena::new(pool(4096), 1 << 20);
        let small: &[u8] = a.alloc_slice(b"hello arena").unwrap();
        let big: &[u8] = a.alloc_slice(&[7u8; 10_000]).unwrap();
        let p = a.pin(small).unwrap();
        let q = a.pin(big).unwrap();
        assert!(a.pin(b"static bytes").is_none());
        let on_stack = [1u8; 4];
        assert!(a.pin(&on_stack).is_none());
        for _ in 0..100 {
            a.alloc_slice(&[0xAA; 200]).unwrap();
        }
        assert_eq!(a.pinned(&p), b"hello arena");
        assert_eq!(a.pinned(&p.suffix(6)), b"arena");
        assert_eq!(a.pinned(&q).len(), 10_000);
        assert!(a.pinned(&q).iter().all(|&b| b == 7));
        a.reset();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.pinned(&p).len()));
        assert!(r.is_err(), "a pin must not be readable after a rewind");
    }

    #[test]
    fn zero_and_aligned_allocations() {
        let arena = Arena::new(pool(4096), 1 << 20);
        assert_eq!(arena.alloc_bytes(0).unwrap().len(), 0);
        arena.alloc_bytes(3).unwrap();
        let x = arena.alloc(7u128).unwrap();
        assert_eq!(x as *mut u128 as usize % std::mem::align_of::<u128>(), 0);
        assert_eq!(arena.alloc_str("é").unwrap(), "é");
    }
}
