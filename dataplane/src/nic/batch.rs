//! Where frames are built: [`TxSink`], implemented by the AF_XDP transmit side (frames
//! written in place in UMEM) and by [`FrameBatch`] (frames packed into one reusable
//! buffer, no allocation per frame: tests, the fuzz harness, and the backlog of frames
//! a full TX ring could not take).

/// Somewhere to build frames to send.
pub trait TxSink {
    /// Builds one frame of `len` bytes with `fill`. The buffer's previous contents are
    /// unspecified (an old frame's bytes): `fill` writes all `len` bytes.
    fn push_frame(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8]));

    /// Whether this sink has the transmit path finish L4 checksums
    /// ([`push_frame_partial`](Self::push_frame_partial) then costs no checksum pass here).
    fn finishes_l4_checksum(&self) -> bool {
        false
    }

    /// Like [`push_frame`](Self::push_frame), for a frame whose L4 checksum `fill`
    /// left partial (see [`PartialChecksum`]): the transmit path finishes it where the
    /// sink can, else it is finished here in software before the frame is queued.
    fn push_frame_partial(&mut self, len: usize, csum: PartialChecksum, fill: &mut dyn FnMut(&mut [u8])) {
        self.push_frame(len, &mut |buf| {
            fill(buf);
            csum.finish(buf);
        });
    }
}

/// An L4 checksum left for the transmit path, as Linux's `CHECKSUM_PARTIAL`: the 16-bit
/// field at `start + offset` holds the folded pseudo-header sum (not complemented) and the
/// checksum covers the frame from `start` to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialChecksum {
    /// Where the checksummed bytes begin (the L4 header), from the frame's start.
    pub start: u16,
    /// Where the checksum field is, from `start` (16 for TCP).
    pub offset: u16,
}

impl PartialChecksum {
    /// Finishes the checksum in software (RFC 1071): what a NIC or the kernel does with
    /// a partial one.
    ///
    /// # Panics
    /// If the field lies outside `frame`.
    pub fn finish(self, frame: &mut [u8]) {
        let start = usize::from(self.start);
        let at = start + usize::from(self.offset);
        let sum = !crate::net::checksum::sum(&frame[start..]);
        frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }
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
