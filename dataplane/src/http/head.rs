//! Finding the end of a request head incrementally, enforcing the size limits and the
//! CRLF rule before httparse ever sees the bytes.
//!
//! The scanner remembers how far it got, so a head trickling in one byte at a time costs
//! O(head) in total, not O(head²).

use super::HttpLimits;

/// Why a head was rejected: the status to answer (the connection then closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reject(pub u16, pub &'static str);

/// Incremental scan state, relative to the first byte of the current request.
#[derive(Debug, Default, Clone)]
pub(crate) struct HeadScan {
    pos: usize,
    line_start: usize,
    lines: usize,
    /// The request line's length (without its CRLF), once scanned.
    request_line: usize,
}

/// Outcome of one scan.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// More bytes needed.
    Partial,
    /// The head is `len` bytes long, final CRLFCRLF included.
    Complete(usize),
}

impl HeadScan {
    /// True before any byte of a request was scanned.
    pub fn is_fresh(&self) -> bool {
        self.pos == 0
    }

    /// The request line's length, CRLF excluded (valid once a scan returned Complete).
    pub fn request_line(&self) -> usize {
        self.request_line
    }

    /// Scans `buf` (the current request's bytes so far) from where the last call stopped.
    pub fn scan(&mut self, buf: &[u8], limits: &HttpLimits) -> Result<Scan, Reject> {
        for off in memchr::memchr_iter(b'\n', &buf[self.pos..]) {
            let p = self.pos + off;
            if p == 0 || buf[p - 1] != b'\r' {
                return Err(Reject(400, "bare LF in request head"));
            }
            let line = &buf[self.line_start..p - 1];
            if self.lines == 0 {
                if uri_len(line) > limits.max_uri_bytes {
                    return Err(Reject(414, "request-target too long"));
                }
                self.request_line = line.len();
            } else if line.is_empty() {
                if p + 1 > limits.max_head_bytes {
                    return Err(Reject(431, "request head too large"));
                }
                self.pos = p + 1;
                return Ok(Scan::Complete(p + 1));
            } else if line.len() > limits.max_header_line_bytes {
                return Err(Reject(431, "header line too large"));
            }
            self.lines += 1;
            self.line_start = p + 1;
        }
        self.pos = buf.len();
        let partial = &buf[self.line_start..];
        if self.lines == 0 && uri_len(partial) > limits.max_uri_bytes {
            return Err(Reject(414, "request-target too long"));
        }
        if self.lines > 0 && partial.len() > limits.max_header_line_bytes + 1 {
            return Err(Reject(431, "header line too large"));
        }
        if buf.len() > limits.max_head_bytes {
            let reject = if self.lines == 0 {
                Reject(414, "request line too long")
            } else {
                Reject(431, "request head too large")
            };
            return Err(reject);
        }
        Ok(Scan::Partial)
    }
}

/// Length of the request-target in a (possibly partial) request line.
fn uri_len(line: &[u8]) -> usize {
    let Some(sp1) = memchr::memchr(b' ', line) else { return 0 };
    let rest = &line[sp1 + 1..];
    memchr::memchr(b' ', rest).unwrap_or(rest.len())
}

/// Maps an httparse error on a complete head to the status to answer.
pub(crate) fn reject_for(err: httparse::Error, head: &[u8]) -> Reject {
    match err {
        httparse::Error::TooManyHeaders => Reject(431, "too many header fields"),
        httparse::Error::Version if looks_like_other_version(head) => {
            Reject(505, "only HTTP/1.0 and HTTP/1.1 are served")
        }
        httparse::Error::Version => Reject(400, "malformed HTTP version"),
        httparse::Error::HeaderName => Reject(400, "invalid header name"),
        httparse::Error::HeaderValue => Reject(400, "invalid byte in header value"),
        httparse::Error::Token => Reject(400, "invalid method token"),
        httparse::Error::NewLine => Reject(400, "malformed line ending"),
        httparse::Error::Status => Reject(400, "malformed request line"),
    }
}

/// A well-formed `HTTP/<digit>.<digit>` (RFC 9112 §2.3) of another major version at the
/// end of the request line: 505. Anything else httparse refuses is a malformed request
/// line (400); HTTP/1.2 and up never get here, they are served as 1.1.
fn looks_like_other_version(head: &[u8]) -> bool {
    let line_end = memchr::memchr(b'\r', head).unwrap_or(head.len());
    let line = &head[..line_end];
    let Some(sp) = memchr::memrchr(b' ', line) else { return false };
    matches!(&line[sp + 1..], [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit() && *major != b'1')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8]) -> Result<Scan, Reject> {
        HeadScan::default().scan(input, &HttpLimits::default())
    }

    #[test]
    fn finds_end_across_splits() {
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nNEXT";
        for cut in 0..req.len() {
            let mut s = HeadScan::default();
            let first = s.scan(&req[..cut], &HttpLimits::default()).unwrap();
            let want = if cut >= 27 { Scan::Complete(27) } else { Scan::Partial };
            if first == Scan::Partial {
                assert_eq!(s.scan(req, &HttpLimits::default()).unwrap(), Scan::Complete(27), "cut {cut}");
            } else {
                assert_eq!(first, want);
            }
        }
    }

    #[test]
    fn bare_lf_is_rejected() {
        assert_eq!(scan_all(b"GET / HTTP/1.1\nHost: a\r\n\r\n").unwrap_err().0, 400);
        assert_eq!(scan_all(b"GET / HTTP/1.1\r\nHost: a\n\n").unwrap_err().0, 400);
    }

    #[test]
    fn long_uri_is_414_even_before_the_line_ends() {
        let mut req = b"GET /".to_vec();
        req.extend(std::iter::repeat_n(b'a', 9000));
        assert_eq!(scan_all(&req).unwrap_err(), Reject(414, "request-target too long"));
    }

    #[test]
    fn long_header_is_431() {
        let mut req = b"GET / HTTP/1.1\r\nX: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 8300));
        assert_eq!(scan_all(&req).unwrap_err().0, 431);
    }

    #[test]
    fn other_versions_are_recognised() {
        assert!(looks_like_other_version(b"GET / HTTP/2.0\r\n"));
        assert!(looks_like_other_version(b"GET / HTTP/0.9\r\n"));
        assert!(!looks_like_other_version(b"GET / HTTP/3\r\n"));
        assert!(!looks_like_other_version(b"GET / HTTP/1.10\r\n"));
        assert!(!looks_like_other_version(b"GET / HTTP/22.0\r\n"));
        assert!(!looks_like_other_version(b"GET / HTTQ/1.1\r\n"));
        assert!(!looks_like_other_version(b"GET / HTTP/x.1\r\n"));
    }
}
