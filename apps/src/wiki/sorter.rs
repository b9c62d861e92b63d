//! The index builder's titles, sorted in bounded memory: an external merge sort.
//!
//! Titles are packed into a buffer of fixed capacity (their bytes, and 16 bytes of
//! bookkeeping each); when it is full they are sorted and written to a run file, and at
//! the end the runs are merged (k-way, a heap of one title per run) straight into the fst
//! builder, which wants keys in order. Nothing grows with the title count: the buffers
//! are allocated once at their full size, so the builder's peak memory is the budget plus
//! a read buffer per run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

/// Bytes of bookkeeping per title in memory: offset (u64), length (u32), page (u32).
const ENTRY: usize = 16;
/// Read buffer per run while merging.
const RUN_BUF: usize = 64 << 10;

/// Titles in, sorted (title, page) pairs out, in at most about `budget` bytes.
pub struct TitleSorter {
    bytes: Vec<u8>,
    entries: Vec<(u64, u32, u32)>,
    runs: Vec<PathBuf>,
    dir: PathBuf,
}

impl TitleSorter {
    /// A sorter spilling runs into `dir` (created; removed by [`finish`](Self::finish)),
    /// holding at most `budget` bytes of titles and bookkeeping (at least 64 KiB).
    pub fn new(dir: PathBuf, budget: usize) -> TitleSorter {
        let budget = budget.max(64 << 10);
        // Two thirds for title bytes, one third for bookkeeping (titles average well
        // over 8 bytes, so the bytes fill first on real dumps); allocated once.
        let entries = budget / 3 / ENTRY;
        TitleSorter {
            bytes: Vec::with_capacity(budget - entries * ENTRY),
            entries: Vec::with_capacity(entries),
            runs: Vec::new(),
            dir,
        }
    }

    /// Adds `title` of page `page`.
    pub fn push(&mut self, title: &[u8], page: u32) -> io::Result<()> {
        if self.entries.len() == self.entries.capacity() || self.bytes.len() + title.len() > self.bytes.capacity() {
            self.spill()?;
        }
        if title.len() > self.bytes.capacity() {
            return Err(io::Error::other(format!("a title of {} bytes is larger than the sort budget", title.len())));
        }
        self.entries.push((self.bytes.len() as u64, title.len() as u32, page));
        self.bytes.extend_from_slice(title);
        Ok(())
    }

    fn sort(&mut self) {
        let bytes = &self.bytes;
        let key = |e: &(u64, u32, u32)| &bytes[e.0 as usize..e.0 as usize + e.1 as usize];
        self.entries.sort_unstable_by(|a, b| key(a).cmp(key(b)).then(a.2.cmp(&b.2)));
    }

    /// Sorts what is in memory into a run file and empties the buffers.
    fn spill(&mut self) -> io::Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        fs::create_dir_all(&self.dir)?;
        self.sort();
        let path = self.dir.join(format!("run-{}", self.runs.len()));
        let mut w = BufWriter::new(File::create(&path)?);
        for &(off, len, page) in &self.entries {
            w.write_all(&len.to_le_bytes())?;
            w.write_all(&self.bytes[off as usize..off as usize + len as usize])?;
            w.write_all(&page.to_le_bytes())?;
        }
        w.flush()?;
        self.runs.push(path);
        self.entries.clear();
        self.bytes.clear();
        Ok(())
    }

    /// Runs written so far (0: everything fit in memory).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Calls `f(title, page)` for every title in (title, page) order, then removes the
    /// run files.
    pub fn finish(mut self, mut f: impl FnMut(&[u8], u32) -> io::Result<()>) -> io::Result<usize> {
        if self.runs.is_empty() {
            self.sort();
            for &(off, len, page) in &self.entries {
                f(&self.bytes[off as usize..off as usize + len as usize], page)?;
            }
            return Ok(0);
        }
        self.spill()?;
        // The buffers are not needed while merging.
        self.bytes = Vec::new();
        self.entries = Vec::new();
        let mut readers: Vec<BufReader<File>> = self
            .runs
            .iter()
            .map(|p| File::open(p).map(|f| BufReader::with_capacity(RUN_BUF, f)))
            .collect::<Result<_, _>>()?;
        let mut heap = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            if let Some((t, p)) = read_entry(r)? {
                heap.push(Reverse((t, p, i)));
            }
        }
        while let Some(Reverse((t, p, i))) = heap.pop() {
            f(&t, p)?;
            if let Some((t, p)) = read_entry(&mut readers[i])? {
                heap.push(Reverse((t, p, i)));
            }
        }
        let n = self.runs.len();
        drop(readers);
        let _ = fs::remove_dir_all(&self.dir);
        Ok(n)
    }
}

fn read_entry(r: &mut impl Read) -> io::Result<Option<(Vec<u8>, u32)>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut t = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut t)?;
    let mut page = [0u8; 4];
    r.read_exact(&mut page)?;
    Ok(Some((t, u32::from_le_bytes(page))))
}

/// Redirects (page, target title), spooled to a file instead of held in memory.
pub struct RedirectSpool {
    path: PathBuf,
    w: BufWriter<File>,
    n: u64,
}

impl RedirectSpool {
    /// A spool in `path`.
    pub fn create(path: PathBuf) -> io::Result<RedirectSpool> {
        let w = BufWriter::new(File::create(&path)?);
        Ok(RedirectSpool { path, w, n: 0 })
    }

    /// Adds one.
    pub fn push(&mut self, page: u64, target: &str) -> io::Result<()> {
        self.w.write_all(&page.to_le_bytes())?;
        self.w.write_all(&(target.len() as u32).to_le_bytes())?;
        self.w.write_all(target.as_bytes())?;
        self.n += 1;
        Ok(())
    }

    /// How many.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// True if none.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Calls `f(page, target)` for each, in the order pushed, then removes the file.
    pub fn drain(mut self, mut f: impl FnMut(u64, &str) -> io::Result<()>) -> io::Result<()> {
        self.w.flush()?;
        let mut r = BufReader::new(File::open(&self.path)?);
        let mut page = [0u8; 8];
        let mut len = [0u8; 4];
        let mut t = Vec::new();
        loop {
            match r.read_exact(&mut page) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
            r.read_exact(&mut len)?;
            t.resize(u32::from_le_bytes(len) as usize, 0);
            r.read_exact(&mut t)?;
            let target = std::str::from_utf8(&t).map_err(io::Error::other)?;
            f(u64::from_le_bytes(page), target)?;
        }
        let _ = fs::remove_file(&self.path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spilled_runs_merge_into_the_same_order_as_an_in_memory_sort() {
        let dir = std::env::temp_dir().join(format!("px-sorter-{}", std::process::id()));
        let mut rng = 12345u64;
        let mut titles: Vec<(Vec<u8>, u32)> = Vec::new();
        for page in 0..20_000u32 {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            // Duplicates on purpose: 1 in 4 titles repeats an earlier one.
            let t = if page > 0 && rng.is_multiple_of(4) {
                titles[(rng >> 33) as usize % titles.len()].0.clone()
            } else {
                format!("t{}", rng >> 40).into_bytes()
            };
            titles.push((t, page));
        }
        let mut small = TitleSorter::new(dir.join("small"), 64 << 10);
        let mut big = TitleSorter::new(dir.join("big"), 64 << 20);
        for (t, p) in &titles {
            small.push(t, *p).unwrap();
            big.push(t, *p).unwrap();
        }
        assert!(small.runs() > 2, "the small budget spilled");
        assert_eq!(big.runs(), 0);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert!(
            small
                .finish(|t, p| {
                    a.push((t.to_vec(), p));
                    Ok(())
                })
                .unwrap()
                > 2
        );
        big.finish(|t, p| {
            b.push((t.to_vec(), p));
            Ok(())
        })
        .unwrap();
        titles.sort();
        assert_eq!(a, titles);
        assert_eq!(b, titles);
        assert!(!dir.join("small").exists(), "runs removed");
    }
}
