//! Wikipedia's multistream dump, served without decompressing it to disk.
//!
//! `pages-articles-multistream.xml.bz2` is the plain export cut into independent bzip2
//! streams of about 100 pages each (the first holds the `<siteinfo>` header, the last
//! the closing `</mediawiki>`), concatenated: decompressed one after the other they give
//! the plain XML byte for byte. So the index keeps the plain XML's coordinates for every
//! page, plus one record per stream (where it is in the .bz2 file, which plain bytes it
//! decompresses to), and a page is served by decompressing just its stream.
//!
//! [`MultiReader`] reads the .bz2 as the plain XML while recording the streams (the
//! builder's input); [`Streams`] finds the streams a plain range overlaps; [`StreamCache`]
//! keeps a core's recently decompressed streams, bounded in bytes.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

/// Bytes of a stream record in `streams.bin` (LE): offset in the .bz2 (u64), offset in the
/// plain XML (u64), compressed length (u32), plain length (u32).
pub const STREAM_RECORD: usize = 24;
/// A bzip2 stream decompressing to more than this is not a multistream dump's (they hold
/// about 100 pages each): the builder refuses it rather than have every page read
/// decompress a huge stream.
pub const MAX_STREAM_BYTES: u64 = 256 << 20;

/// One bzip2 stream of the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    /// Offset of its first byte in the .bz2 file.
    pub zoff: u64,
    /// Its length in the .bz2 file.
    pub zlen: u32,
    /// Offset in the plain XML of the first byte it decompresses to.
    pub off: u64,
    /// Bytes it decompresses to.
    pub len: u32,
}

impl Stream {
    /// The record as `streams.bin` stores it.
    pub fn to_bytes(self) -> [u8; STREAM_RECORD] {
        let mut b = [0u8; STREAM_RECORD];
        b[..8].copy_from_slice(&self.zoff.to_le_bytes());
        b[8..16].copy_from_slice(&self.off.to_le_bytes());
        b[16..20].copy_from_slice(&self.zlen.to_le_bytes());
        b[20..24].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Stream {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Stream { zoff: u64_at(0), off: u64_at(8), zlen: u32_at(16), len: u32_at(20) }
    }

    /// Reads this stream from the .bz2 file (pread: the file is not mapped, so serving
    /// pages adds nothing to the process's resident memory) and decompresses it.
    pub fn read_from(&self, file: &std::fs::File) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut z = vec![0u8; self.zlen as usize];
        file.read_exact_at(&mut z, self.zoff)?;
        self.decompress(&z)
    }

    /// Decompresses this stream from its compressed bytes `z`.
    pub fn decompress(&self, z: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len as usize);
        bzip2::read::BzDecoder::new(z).read_to_end(&mut out)?;
        if out.len() != self.len as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a stream decompressed to {} bytes, the index says {}: rebuild it", out.len(), self.len),
            ));
        }
        Ok(out)
    }
}

/// The streams of a dump, in order (from `streams.bin`).
#[derive(Clone, Copy)]
pub struct Streams<'a> {
    records: &'a [u8],
}

impl<'a> Streams<'a> {
    /// Over `streams.bin`'s bytes; None if the length is not a whole number of records.
    pub fn new(records: &'a [u8]) -> Option<Streams<'a>> {
        records.len().is_multiple_of(STREAM_RECORD).then_some(Streams { records })
    }

    /// Number of streams.
    pub fn len(&self) -> usize {
        self.records.len() / STREAM_RECORD
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Stream `i`.
    pub fn get(&self, i: usize) -> Stream {
        Stream::from_bytes(&self.records[i * STREAM_RECORD..(i + 1) * STREAM_RECORD])
    }

    /// Plain XML bytes in all.
    pub fn plain_len(&self) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let last = self.get(self.len() - 1);
        last.off + u64::from(last.len)
    }

    /// The index of the stream holding plain byte `at` (None past the end).
    pub fn find(&self, at: u64) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let s = self.get(mid);
            if at < s.off {
                hi = mid;
            } else if at >= s.off + u64::from(s.len) {
                lo = mid + 1;
            } else {
                return Some(mid);
            }
        }
        None
    }

    /// The streams plain bytes `start..end` overlap, as (index, stream).
    pub fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = (usize, Stream)> + '_ {
        let first = self.find(start).unwrap_or(self.len());
        (first..self.len()).map(|i| (i, self.get(i))).take_while(move |(_, s)| s.off < end)
    }
}

/// Reads a multistream .bz2 as the plain XML it decompresses to, recording each stream.
pub struct MultiReader<R> {
    src: R,
    inbuf: Vec<u8>,
    inpos: usize,
    eof: bool,
    dec: bzip2::Decompress,
    /// Compressed bytes consumed before the current stream.
    zstart: u64,
    /// Compressed bytes consumed so far.
    zpos: u64,
    /// Plain bytes produced before the current stream, and so far.
    pstart: u64,
    ppos: u64,
    /// Streams finished so far.
    pub streams: Vec<Stream>,
}

impl<R: Read> MultiReader<R> {
    /// Reads `src` (a .bz2 file from its start).
    pub fn new(src: R) -> MultiReader<R> {
        MultiReader {
            src,
            inbuf: Vec::new(),
            inpos: 0,
            eof: false,
            dec: bzip2::Decompress::new(false),
            zstart: 0,
            zpos: 0,
            pstart: 0,
            ppos: 0,
            streams: Vec::new(),
        }
    }

    /// Compressed bytes read so far (progress).
    pub fn compressed_read(&self) -> u64 {
        self.zpos
    }

    fn refill(&mut self) -> io::Result<()> {
        if self.inpos < self.inbuf.len() || self.eof {
            return Ok(());
        }
        self.inbuf.resize(1 << 20, 0);
        let n = self.src.read(&mut self.inbuf)?;
        self.inbuf.truncate(n);
        self.inpos = 0;
        self.eof = n == 0;
        Ok(())
    }
}

impl<R: Read> Read for MultiReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            self.refill()?;
            if self.inpos == self.inbuf.len() {
                // The input ended: fine between streams, a truncation inside one.
                return if self.zpos == self.zstart {
                    Ok(0)
                } else {
                    Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the .bz2 file ends inside a stream: truncated?"))
                };
            }
            let (in0, out0) = (self.dec.total_in(), self.dec.total_out());
            let status = self
                .dec
                .decompress(&self.inbuf[self.inpos..], out)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bzip2: {e}")))?;
            let used = (self.dec.total_in() - in0) as usize;
            let made = (self.dec.total_out() - out0) as usize;
            self.inpos += used;
            self.zpos += used as u64;
            self.ppos += made as u64;
            if self.ppos - self.pstart > MAX_STREAM_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a bzip2 stream decompresses to over {} MiB: this is not a multistream dump (use \
                         pages-articles-multistream.xml.bz2, or decompress it: bunzip2 -k)",
                        MAX_STREAM_BYTES >> 20
                    ),
                ));
            }
            if status == bzip2::Status::StreamEnd {
                self.streams.push(Stream {
                    zoff: self.zstart,
                    zlen: u32::try_from(self.zpos - self.zstart).expect("bounded by MAX_STREAM_BYTES' ratio"),
                    off: self.pstart,
                    len: (self.ppos - self.pstart) as u32,
                });
                self.dec = bzip2::Decompress::new(false);
                self.zstart = self.zpos;
                self.pstart = self.ppos;
            }
            if made > 0 {
                return Ok(made);
            }
        }
    }
}

/// A core's recently decompressed streams, least recently used evicted first, at most
/// `max_bytes` of them. Shared (one mutex, uncontended in practice) between its core and
/// the I/O thread that decompresses a stream the core asked for.
pub struct StreamCache {
    max_bytes: usize,
    bytes: usize,
    tick: u64,
    map: HashMap<usize, (Arc<Vec<u8>>, u64)>,
    /// Lookups answered from the cache, and not.
    pub hits: u64,
    /// Streams decompressed for this core.
    pub misses: u64,
}

impl StreamCache {
    /// An empty cache of at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Arc<Mutex<StreamCache>> {
        Arc::new(Mutex::new(StreamCache { max_bytes, bytes: 0, tick: 0, map: HashMap::new(), hits: 0, misses: 0 }))
    }

    /// Stream `i`, if cached (marked recently used).
    pub fn get(&mut self, i: usize) -> Option<Arc<Vec<u8>>> {
        self.tick += 1;
        let tick = self.tick;
        match self.map.get_mut(&i) {
            Some(e) => {
                e.1 = tick;
                self.hits += 1;
                Some(e.0.clone())
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Keeps stream `i`, evicting the least recently used ones beyond the bound (a
    /// stream larger than the whole bound is not kept).
    pub fn put(&mut self, i: usize, data: Arc<Vec<u8>>) {
        if data.len() > self.max_bytes || self.map.contains_key(&i) {
            return;
        }
        while self.bytes + data.len() > self.max_bytes {
            let Some((&old, _)) = self.map.iter().min_by_key(|(_, (_, t))| *t) else { break };
            if let Some((d, _)) = self.map.remove(&old) {
                self.bytes -= d.len();
            }
        }
        self.tick += 1;
        self.bytes += data.len();
        self.map.insert(i, (data, self.tick));
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn bz(data: &[u8]) -> Vec<u8> {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn concatenated_streams_read_as_the_plain_text_with_each_stream_recorded() {
        let parts: [&[u8]; 3] = [b"<mediawiki>\n", b"  <page>a</page>\n  <page>bb</page>\n", b"</mediawiki>\n"];
        let mut file = Vec::new();
        let mut zoffs = Vec::new();
        for p in parts {
            zoffs.push(file.len() as u64);
            file.extend(bz(p));
        }
        let mut r = MultiReader::new(&file[..]);
        let mut plain = Vec::new();
        // Small reads, so stream ends fall inside and between reads.
        let mut buf = [0u8; 7];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            plain.extend_from_slice(&buf[..n]);
        }
        assert_eq!(plain, parts.concat());
        assert_eq!(r.streams.len(), 3);
        let mut records = Vec::new();
        for (i, s) in r.streams.iter().enumerate() {
            assert_eq!(s.zoff, zoffs[i]);
            assert_eq!(s.len as usize, parts[i].len());
            let z = &file[s.zoff as usize..s.zoff as usize + s.zlen as usize];
            assert_eq!(s.decompress(z).unwrap(), parts[i]);
            records.extend(s.to_bytes());
        }
        let st = Streams::new(&records).unwrap();
        assert_eq!(st.plain_len(), plain.len() as u64);
        assert_eq!(st.find(0), Some(0));
        assert_eq!(st.find(12), Some(1));
        assert_eq!(st.find(plain.len() as u64), None);
        let over: Vec<usize> = st.overlapping(10, 14).map(|(i, _)| i).collect();
        assert_eq!(over, [0, 1]);
        // Truncated inside a stream: an error, not a short read.
        let mut r = MultiReader::new(&file[..file.len() - 5]);
        let mut sink = Vec::new();
        assert!(r.read_to_end(&mut sink).unwrap_err().to_string().contains("truncated"));
    }

    #[test]
    fn the_cache_keeps_what_fits_evicting_the_least_recently_used() {
        let c = StreamCache::new(10);
        let mut c = c.lock().unwrap();
        c.put(1, Arc::new(vec![0; 4]));
        c.put(2, Arc::new(vec![0; 4]));
        assert!(c.get(1).is_some()); // 1 is now more recent than 2
        c.put(3, Arc::new(vec![0; 4])); // evicts 2
        assert!(c.get(2).is_none() && c.get(1).is_some() && c.get(3).is_some());
        assert!(c.bytes() <= 10);
        c.put(4, Arc::new(vec![0; 11])); // larger than the bound: not kept
        assert!(c.get(4).is_none());
    }
}
