//! Where frames are built: [`TxSink`], implemented by the AF_XDP transmit side (frames
//! written in place in UMEM) and by [`FrameBatch`] (frames packed into one reusable
//! buffer, no allocation per frame: tests, the fuzz harness, and the backlog of frames
//! a full TX ring could not take).

/// Somewhere to build frames to send.
pub trait TxSink {
    /// Builds one frame of `len` bytes with `fill`. The buffer's previous contents are
    /// unspecified (an old frame's bytes): `fill` writes all `len` bytes.
    fn push_frame(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8]));
}

/// A batch of frames.
#[derive(Debug, Default)]
pub struct FrameBatch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl FrameBatch {
    /// Appends a frame of `len` bytes written by `fill` (the buffer starts zeroed).
    pub fn push_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) {
        let start = self.bytes.len();
        self.bytes.resize(start + len, 0);
        fill(&mut self.bytes[start..]);
        self.ends.push(self.bytes.len());
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Frame `i`.
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// Iterates over the frames.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Drops the first `n` frames (those sent), keeping the rest in order.
    pub fn consume(&mut self, n: usize) {
        if n >= self.len() {
            self.clear();
            return;
        }
        let cut = self.ends[n - 1];
        self.bytes.drain(..cut);
        self.ends.drain(..n);
        for e in &mut self.ends {
            *e -= cut;
        }
    }

    /// Empties the batch, keeping its capacity.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

impl TxSink for FrameBatch {
    fn push_frame(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) {
        self.push_with(len, fill);
    }
}
