//! Limits on what one request may hold, each with the answer it earns when exceeded.
//!
//! | key | default | exceeded → |
//! |---|---|---|
//! | `max_uri_bytes` | 8192 | 414 URI Too Long, close |
//! | `max_header_line_bytes` | 8192 | 431, close |
//! | `max_head_bytes` | 16384 | 431, close |
//! | `max_headers` | 64 (≤ 128) | 431, close |
//! | `max_body_bytes` | 1 MiB | 413, close |
//! | `max_trailer_bytes` | 8192 | 431, close |
//! | `max_trailers` | 32 | 431, close |
//! | `header_timeout_ms` | 10 s from a head's first byte | 408, close |
//! | `body_timeout_ms` | 60 s from the end of the head | 408, close |

use serde::{Deserialize, Serialize};

/// Hard ceiling for `max_headers` (the parser's header array lives on the stack).
pub const MAX_HEADERS_CEILING: usize = 128;

/// Per-request limits and buffering knobs of the HTTP engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// Longest request-target. Costs nothing until used: requests are parsed in place.
    pub max_uri_bytes: usize,
    /// Longest single header line (name, colon, value).
    pub max_header_line_bytes: usize,
    /// Longest request line plus header block, CRLFs included. A connection buffers at
    /// most this much of an incomplete head.
    pub max_head_bytes: usize,
    /// Most header fields in one request (at most 128).
    pub max_headers: usize,
    /// Largest request body (Content-Length or decoded chunked). A connection buffers up
    /// to this much while a body arrives.
    pub max_body_bytes: usize,
    /// Largest trailer section of a chunked body (field lines and their CRLFs).
    pub max_trailer_bytes: usize,
    /// Most trailer fields after a chunked body.
    pub max_trailers: usize,
    /// A request head must be complete this long after its first byte arrived (0: no
    /// limit). Bytes trickling in do not restart it: one header byte a second no longer
    /// holds a connection forever.
    pub header_timeout_ms: u64,
    /// A request body must be complete this long after its head (0: no limit): with
    /// `max_body_bytes`, a floor on the rate a body may arrive at (1 MiB in 60 s: 17 KiB/s).
    pub body_timeout_ms: u64,
    /// Stop reading a connection's requests while this many response bytes wait to be
    /// sent (backpressure on pipelining clients).
    pub output_high_water_bytes: usize,
    /// Close a connection with no request in progress after this long without traffic.
    pub idle_timeout_ms: u64,
    /// After we close a connection (an error response, `Connection: close`), keep
    /// reading and dropping what the client still sends for at most this long, so it
    /// reads our last response instead of an RST (RFC 9112 §9.6); 0: close at once.
    pub linger_ms: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_uri_bytes: 8192,
            max_header_line_bytes: 8192,
            max_head_bytes: 16384,
            max_headers: 64,
            max_body_bytes: 1 << 20,
            max_trailer_bytes: 8192,
            max_trailers: 32,
            header_timeout_ms: 10_000,
            body_timeout_ms: 60_000,
            output_high_water_bytes: 256 << 10,
            idle_timeout_ms: 60_000,
            linger_ms: 2_000,
        }
    }
}

impl HttpLimits {
    /// Checks ranges; the error names the key (relative to `[http]`) and the reason.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_headers == 0 || self.max_headers > MAX_HEADERS_CEILING {
            return Err(("max_headers", format!("must be 1..={MAX_HEADERS_CEILING}, got {}", self.max_headers)));
        }
        if self.max_uri_bytes < 16 {
            return Err(("max_uri_bytes", format!("must be at least 16, got {}", self.max_uri_bytes)));
        }
        if self.max_header_line_bytes < 64 {
            return Err(("max_header_line_bytes", format!("must be at least 64, got {}", self.max_header_line_bytes)));
        }
        if self.max_head_bytes < self.max_header_line_bytes {
            return Err(("max_head_bytes", "must be at least max_header_line_bytes".into()));
        }
        if self.output_high_water_bytes < 4096 {
            return Err(("output_high_water_bytes", "must be at least 4096".into()));
        }
        Ok(())
    }
}
