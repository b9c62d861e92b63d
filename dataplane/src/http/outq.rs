//! The output queue of one connection: response heads and small bodies copied into one
//! buffer, larger bodies the arena (or the program image) already holds kept by
//! reference. The transport gathers from it straight into its frames (AF_XDP) or with
//! `writev` (kernel sockets), so a body the handler built in the arena is copied once,
//! into the frame or the socket.

use std::collections::VecDeque;
use std::io::IoSlice;

use crate::mem::{Arena, Pinned};

/// Bodies up to this many bytes are copied next to their head: one cache line costs
/// less to copy than a separate piece costs to gather.
pub const INLINE_MAX: usize = 64;

#[derive(Debug, Clone, Copy)]
enum Part {
    /// `inline[start..end]`.
    Inline { start: usize, end: usize },
    /// Bytes of the program image.
    Static(&'static [u8]),
    /// Bytes of the connection's arena.
    Arena(Pinned),
}

/// Pending output, in order.
#[derive(Debug, Default)]
pub struct OutQueue {
    inline: Vec<u8>,
    parts: VecDeque<Part>,
    len: usize,
}

impl OutQueue {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a copy of `bytes`.
    pub fn push_copy(&mut self, bytes: &[u8]) {
        self.append_inline(|v| v.extend_from_slice(bytes));
    }

    /// Appends what `write` adds to the inline buffer (nothing added, nothing queued).
    pub fn append_inline<R>(&mut self, write: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let start = self.inline.len();
        let r = write(&mut self.inline);
        let end = self.inline.len();
        if end > start {
            self.len += end - start;
            match self.parts.back_mut() {
                Some(Part::Inline { end: e, .. }) if *e == start => *e = end,
                _ => self.parts.push_back(Part::Inline { start, end }),
            }
        }
        r
    }

    /// Drops inline bytes past `len` (a failed body source), which must all be in the
    /// last piece.
    pub fn truncate_inline(&mut self, len: usize) {
        let cut = self.inline.len().saturating_sub(len);
        if cut == 0 {
            return;
        }
        if let Some(Part::Inline { start, end }) = self.parts.back_mut() {
            assert!(*end - *start >= cut, "truncating past the last inline piece");
            *end -= cut;
            if *end == *start {
                self.parts.pop_back();
            }
        }
        self.inline.truncate(len);
        self.len -= cut;
    }

    /// Bytes in the inline buffer (used and consumed).
    pub fn inline_len(&self) -> usize {
        self.inline.len()
    }

    /// Appends a body: by reference when it is large and the arena holds it, else
    /// copied. Returns the bytes queued by reference.
    pub fn push_body(&mut self, body: &[u8], arena: &Arena) -> usize {
        if body.len() > INLINE_MAX {
            if let Some(p) = arena.pin(body) {
                self.len += p.len();
                self.parts.push_back(Part::Arena(p));
                return p.len();
            }
        }
        self.push_copy(body);
        0
    }

    /// Appends static bytes by reference (copied when small). Returns the bytes queued
    /// by reference.
    pub fn push_static(&mut self, body: &'static [u8]) -> usize {
        if body.len() <= INLINE_MAX {
            self.push_copy(body);
            return 0;
        }
        self.len += body.len();
        self.parts.push_back(Part::Static(body));
        body.len()
    }

    /// Marks the first `n` bytes as sent.
    pub fn consume(&mut self, n: usize) {
        let mut n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let front = self.parts.front_mut().expect("len counts the parts");
            let plen = part_len(front);
            if n >= plen {
                n -= plen;
                self.parts.pop_front();
                continue;
            }
            *front = match *front {
                Part::Inline { start, end } => Part::Inline { start: start + n, end },
                Part::Static(b) => Part::Static(&b[n..]),
                Part::Arena(p) => Part::Arena(p.suffix(n)),
            };
            n = 0;
        }
        if self.parts.is_empty() {
            self.inline.clear();
        } else if let Some(Part::Inline { start, .. }) = self.parts.front() {
            // A long stream keeps the buffer busy: drop the sent prefix once it is the
            // larger half, so the buffer stays near the high-water mark.
            let start = *start;
            if start > self.inline.len() / 2 && start > 4096 {
                self.inline.drain(..start);
                for p in &mut self.parts {
                    if let Part::Inline { start: s, end } = p {
                        *s -= start;
                        *end -= start;
                    }
                }
            }
        }
    }

    /// Empties the queue; shrinks the inline buffer above `keep` bytes of capacity.
    pub fn clear(&mut self, keep: usize) {
        self.parts.clear();
        self.inline.clear();
        self.len = 0;
        if self.inline.capacity() > keep {
            self.inline = Vec::new();
        }
    }

    /// Visits the pending bytes in order, piece by piece, from byte `off` on, until `f`
    /// returns false.
    pub fn for_each_from<'a>(&'a self, arena: &'a Arena, off: usize, mut f: impl FnMut(&'a [u8]) -> bool) {
        let mut skip = off;
        for part in &self.parts {
            let bytes = match *part {
                Part::Inline { start, end } => &self.inline[start..end],
                Part::Static(b) => b,
                Part::Arena(ref p) => arena.pinned(p),
            };
            if skip >= bytes.len() {
                skip -= bytes.len();
                continue;
            }
            if !f(&bytes[skip..]) {
                return;
            }
            skip = 0;
        }
    }

    /// Copies bytes `off..off + dst.len()` of the pending output into `dst`.
    ///
    /// # Panics
    /// If the range goes past the end of the queue.
    pub fn copy_out(&self, arena: &Arena, off: usize, dst: &mut [u8]) {
        assert!(off + dst.len() <= self.len, "copy past the end of the output queue");
        let mut filled = 0;
        self.for_each_from(arena, off, |bytes| {
            let n = bytes.len().min(dst.len() - filled);
            dst[filled..filled + n].copy_from_slice(&bytes[..n]);
            filled += n;
            filled < dst.len()
        });
    }

    /// Up to `bufs.len()` pieces of pending output for `writev`; returns how many.
    pub fn io_slices<'a>(&'a self, arena: &'a Arena, bufs: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        self.for_each_from(arena, 0, |bytes| {
            if n == bufs.len() {
                return false;
            }
            bufs[n] = IoSlice::new(bytes);
            n += 1;
            n < bufs.len()
        });
        n
    }

    /// The pending output as one vector (tests and diagnostics).
    pub fn to_vec(&self, arena: &Arena) -> Vec<u8> {
        let mut v = vec![0; self.len];
        self.copy_out(arena, 0, &mut v);
        v
    }
}

fn part_len(p: &Part) -> usize {
    match p {
        Part::Inline { start, end } => end - start,
        Part::Static(b) => b.len(),
        Part::Arena(p) => p.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::ChunkPool;
    use std::rc::Rc;

    fn arena() -> Arena {
        let region =
            crate::mem::Region::map(crate::mem::HUGEPAGE_BYTES, None, crate::mem::HugepagePolicy::Off).unwrap();
        let pool = Rc::new(ChunkPool::new(region, 64 << 10));
        Arena::new(pool, 1 << 20)
    }

    #[test]
    fn pieces_gather_in_order_across_every_split() {
        let a = arena();
        let body: &[u8] = a.alloc_slice(&(0..200u8).collect::<Vec<_>>()).unwrap();
        let mut q = OutQueue::default();
        q.push_copy(b"HEAD1\r\n\r\n");
        q.push_body(body, &a);
        q.push_copy(b"HEAD2\r\n\r\n");
        q.push_static(&[b's'; 100]);
        q.push_body(b"short", &a);
        let mut want = b"HEAD1\r\n\r\n".to_vec();
        want.extend_from_slice(body);
        want.extend_from_slice(b"HEAD2\r\n\r\n");
        want.extend_from_slice(&[b's'; 100]);
        want.extend_from_slice(b"short");
        assert_eq!(q.len(), want.len());
        assert_eq!(q.to_vec(&a), want);
        for off in 0..want.len() {
            for len in [1, 7, 64, want.len() - off] {
                let len = len.min(want.len() - off);
                let mut dst = vec![0; len];
                q.copy_out(&a, off, &mut dst);
                assert_eq!(dst, &want[off..off + len], "off {off} len {len}");
            }
        }
        let mut bufs = [IoSlice::new(&[]); 8];
        let n = q.io_slices(&a, &mut bufs);
        let joined: Vec<u8> = bufs[..n].iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(joined, want);
    }

    #[test]
    fn consume_walks_the_pieces() {
        let a = arena();
        let body: &[u8] = a.alloc_slice(&[9u8; 1000]).unwrap();
        let mut q = OutQueue::default();
        q.push_copy(b"abc");
        q.push_body(body, &a);
        q.push_copy(b"xyz");
        let mut want = q.to_vec(&a);
        for step in [1, 2, 500, 499, 1, 2, 1] {
            q.consume(step);
            want.drain(..step);
            assert_eq!(q.to_vec(&a), want);
        }
        assert!(q.is_empty());
        assert_eq!(q.inline_len(), 0, "an empty queue drops its inline bytes");
    }

    #[test]
    fn stream_sized_inline_data_compacts() {
        let a = arena();
        let mut q = OutQueue::default();
        for i in 0..100u8 {
            q.push_copy(&[i; 1000]);
            q.consume(if i % 2 == 0 { 1500 } else { 500 });
        }
        assert!(q.inline_len() < 8192, "inline buffer kept {} bytes", q.inline_len());
        let v = q.to_vec(&a);
        assert_eq!(v.len(), q.len());
        q.truncate_inline(q.inline_len() - 10);
        assert_eq!(q.to_vec(&a), v[..v.len() - 10]);
    }
}
