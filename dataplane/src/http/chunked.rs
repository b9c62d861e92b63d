//! Incremental decoder for the chunked transfer-coding (RFC 9112 §7.1).
//!
//! Feeds on the raw bytes after the head, appends decoded data to a body buffer, and
//! reports how many raw bytes it consumed. Extensions are skipped; trailers are checked
//! (each a `name: value` field line, their count and total size bounded) and discarded.

/// Decoder state between calls.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// Raw bytes consumed so far.
    pub consumed: usize,
    trailer_bytes: usize,
    trailers: usize,
}

/// Bounds on the trailer section.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrailerLimits {
    /// Total bytes of trailer field lines, CRLFs included.
    pub max_bytes: usize,
    /// Number of trailer fields.
    pub max_fields: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    #[default]
    Size,
    /// In chunk data; this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// Reading trailer lines after the last chunk.
    Trailer,
    Done,
}

/// Decoding error: the status to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkError {
    /// Malformed framing (400).
    Malformed(&'static str),
    /// Body larger than allowed (413).
    TooLarge,
    /// Trailer section larger or with more fields than allowed (431).
    TrailersTooLarge,
}

const MAX_LINE: usize = 4096;

impl ChunkedDecoder {
    /// Decodes from `raw[self.consumed..]`. Returns `Ok(true)` once the final chunk and
    /// trailers are in.
    pub fn decode(
        &mut self,
        raw: &[u8],
        body: &mut Vec<u8>,
        max_body: usize,
        trailers: TrailerLimits,
    ) -> Result<bool, ChunkError> {
        loop {
            let rest = &raw[self.consumed..];
            match self.state {
                State::Done => return Ok(true),
                State::Size => {
                    let Some(line) = take_line(rest)? else { return Ok(false) };
                    let size = parse_size(&rest[..line.0])?;
                    self.consumed += line.1;
                    self.state = if size == 0 { State::Trailer } else { State::Data(size) };
                    if body.len() as u64 + size > max_body as u64 {
                        return Err(ChunkError::TooLarge);
                    }
                }
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(false);
                    }
                    let n = rest.len().min(left as usize);
                    body.extend_from_slice(&rest[..n]);
                    self.consumed += n;
                    self.state = if n as u64 == left { State::DataEnd } else { State::Data(left - n as u64) };
                }
                State::DataEnd => {
                    if rest.len() < 2 && b"\r\n".starts_with(rest) {
                        return Ok(false);
                    }
                    if !rest.starts_with(b"\r\n") {
                        return Err(ChunkError::Malformed("chunk data not followed by CRLF"));
                    }
                    self.consumed += 2;
                    self.state = State::Size;
                }
                State::Trailer => {
                    let line = match take_line(rest) {
                        Ok(l) => l,
                        // A trailer line that never ends is a trailer section too large.
                        Err(ChunkError::Malformed("chunk size line too long")) => {
                            return Err(ChunkError::TrailersTooLarge)
                        }
                        Err(e) => return Err(e),
                    };
                    let Some((len, used)) = line else {
                        if self.trailer_bytes + rest.len() > trailers.max_bytes {
                            return Err(ChunkError::TrailersTooLarge);
                        }
                        return Ok(false);
                    };
                    if len == 0 {
                        self.consumed += used;
                        self.state = State::Done;
                        continue;
                    }
                    self.trailer_bytes += used;
                    self.trailers += 1;
                    if self.trailer_bytes > trailers.max_bytes || self.trailers > trailers.max_fields {
                        return Err(ChunkError::TrailersTooLarge);
                    }
                    if !valid_field_line(&rest[..len]) {
                        return Err(ChunkError::Malformed("malformed trailer field"));
                    }
                    self.consumed += used;
                }
            }
        }
    }
}

/// Finds a CRLF-terminated line: (content length, bytes incl. CRLF).
fn take_line(rest: &[u8]) -> Result<Option<(usize, usize)>, ChunkError> {
    match memchr::memchr(b'\n', rest) {
        Some(p) if p == 0 || rest[p - 1] != b'\r' => Err(ChunkError::Malformed("bare LF in chunked framing")),
        Some(p) => Ok(Some((p - 1, p + 1))),
        None if rest.len() > MAX_LINE => Err(ChunkError::Malformed("chunk size line too long")),
        None => Ok(None),
    }
}

/// `field-name ":" OWS field-value OWS` (RFC 9112 §5): a token, a colon, then visible
/// characters, spaces and tabs (obs-text allowed); no leading whitespace (no obs-fold).
fn valid_field_line(line: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', line) else { return false };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    !name.is_empty()
        && name.iter().all(|&b| is_tchar(b))
        && value.iter().all(|&b| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80)
}

/// RFC 9110 §5.6.2 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_size(line: &[u8]) -> Result<u64, ChunkError> {
    let end = line.iter().position(|&b| b == b';' || b == b' ' || b == b'\t').unwrap_or(line.len());
    let hex = &line[..end];
    if hex.is_empty() || hex.len() > 15 {
        return Err(ChunkError::Malformed("bad chunk size"));
    }
    let mut v: u64 = 0;
    for &b in hex {
        let d = (b as char).to_digit(16).ok_or(ChunkError::Malformed("bad chunk size"))?;
        v = v * 16 + d as u64;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: TrailerLimits = TrailerLimits { max_bytes: 8192, max_fields: 32 };

    const WIRE: &[u8] = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";

    #[test]
    fn decodes_whole_and_at_every_split() {
        for cut in 0..WIRE.len() {
            let mut d = ChunkedDecoder::default();
            let mut body = Vec::new();
            let done = d.decode(&WIRE[..cut], &mut body, 1 << 20, T).unwrap();
            if !done {
                assert!(d.decode(WIRE, &mut body, 1 << 20, T).unwrap(), "cut {cut}");
            }
            assert_eq!(body, b"Wikipedia in \r\n\r\nchunks.");
            assert_eq!(&WIRE[d.consumed..], b"NEXT");
        }
    }

    #[test]
    fn rejects_bad_framing_and_oversize() {
        let mut body = Vec::new();
        assert!(ChunkedDecoder::default().decode(b"zz\r\n", &mut body, 10, T).is_err());
        assert!(ChunkedDecoder::default().decode(b"2\r\nabX", &mut body, 10, T).is_err());
        assert_eq!(ChunkedDecoder::default().decode(b"ff\r\n", &mut body, 10, T), Err(ChunkError::TooLarge));
        assert!(ChunkedDecoder::default().decode(b"ffffffffffffffffff\r\n", &mut body, 10, T).is_err());
    }

    #[test]
    fn trailers_are_bounded_and_must_be_field_lines() {
        let run = |wire: &[u8], t: TrailerLimits| ChunkedDecoder::default().decode(wire, &mut Vec::new(), 1 << 20, t);
        assert_eq!(run(b"0\r\nA: 1\r\nB-c: two words\r\n\r\n", T), Ok(true));
        // Count: 33 fields against a limit of 32.
        let mut many = b"0\r\n".to_vec();
        for i in 0..33 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(run(&many, T), Err(ChunkError::TrailersTooLarge));
        assert_eq!(run(&many, TrailerLimits { max_bytes: 8192, max_fields: 33 }), Ok(true));
        // Size, also while the section is still arriving (no end in sight).
        let mut big = b"0\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 9000));
        assert_eq!(run(&big, T), Err(ChunkError::TrailersTooLarge));
        // Malformed lines.
        for bad in [
            &b"0\r\nno colon\r\n\r\n"[..],
            b"0\r\n: empty name\r\n\r\n",
            b"0\r\n folded: x\r\n\r\n",
            b"0\r\nA B: x\r\n\r\n",
            b"0\r\nA: nul\0\r\n\r\n",
        ] {
            assert_eq!(
                run(bad, T),
                Err(ChunkError::Malformed("malformed trailer field")),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
