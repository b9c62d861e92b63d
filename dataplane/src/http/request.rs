//! A parsed request, borrowed from the connection's input buffer.

use std::borrow::Cow;

/// Request methods the engine knows; anything else is answered 501.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET
    Get,
    /// HEAD: served by the GET route, body omitted.
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
    /// PATCH
    Patch,
}

impl Method {
    /// Parses a method token (case-sensitive, RFC 9110 §9.1).
    pub fn parse(token: &str) -> Option<Method> {
        Some(match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            _ => return None,
        })
    }

    /// The token.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
        }
    }
}

/// HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: closes after each response unless `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1: persistent unless `Connection: close`.
    Http11,
}

/// Most path parameters one route may declare.
pub const MAX_PARAMS: usize = 4;

/// One request, as a handler sees it.
#[derive(Debug)]
pub struct Request<'a> {
    pub(crate) method: Method,
    pub(crate) version: Version,
    pub(crate) path: &'a str,
    pub(crate) query: &'a str,
    pub(crate) headers: &'a [httparse::Header<'a>],
    pub(crate) body: &'a [u8],
    pub(crate) params: [(&'static str, &'a str); MAX_PARAMS],
    pub(crate) n_params: usize,
}

impl<'a> Request<'a> {
    /// The method (HEAD requests reach GET handlers with `Method::Head`).
    pub fn method(&self) -> Method {
        self.method
    }

    /// The version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The path, still percent-encoded, without the query.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The raw query string without `?` ("" when absent).
    pub fn query_string(&self) -> &'a str {
        self.query
    }

    /// The first query parameter named `name`, percent- and `+`-decoded. `None` when
    /// absent or not valid UTF-8 after decoding.
    pub fn query(&self, name: &str) -> Option<Cow<'a, str>> {
        query_param(self.query, name)
    }

    /// The path parameters the router matched (name, raw value).
    pub fn params(&self) -> &[(&'static str, &'a str)] {
        &self.params[..self.n_params]
    }

    /// Sets the path parameters (the router's match).
    pub fn set_params(&mut self, params: [(&'static str, &'a str); MAX_PARAMS], n: usize) {
        self.params = params;
        self.n_params = n.min(MAX_PARAMS);
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }

    /// All header fields in arrival order.
    pub fn headers(&self) -> &'a [httparse::Header<'a>] {
        self.headers
    }

    /// The (decoded) body.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Path parameter `name` as it appeared on the wire (percent-encoded).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params[..self.n_params].iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    /// Path parameter `name`, percent-decoded; `None` when absent or not UTF-8.
    pub fn param_decoded(&self, name: &str) -> Option<Cow<'a, str>> {
        percent_decode(self.param(name)?, false).ok()
    }
}

/// The first parameter named `name` of query string `query`, percent- and `+`-decoded.
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k, true).ok()? == name).then(|| percent_decode(v, true).ok()).flatten()
    })
}

/// A percent-encoded string that does not decode to UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed percent-encoding or not UTF-8")]
pub struct DecodeError;

/// Decodes `%XX` escapes (and `+` as space when `plus` is set). Errors on a malformed
/// escape or a result that is not UTF-8.
pub fn percent_decode(s: &str, plus: bool) -> Result<Cow<'_, str>, DecodeError> {
    if !s.bytes().any(|b| b == b'%' || (plus && b == b'+')) {
        return Ok(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(DecodeError)?;
                let hi = (hex[0] as char).to_digit(16).ok_or(DecodeError)?;
                let lo = (hex[1] as char).to_digit(16).ok_or(DecodeError)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| DecodeError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_and_plus() {
        assert_eq!(percent_decode("Caf%C3%A9+x", true).unwrap(), "Café x");
        assert_eq!(percent_decode("a+b", false).unwrap(), "a+b");
        assert!(percent_decode("%zz", false).is_err());
        assert!(percent_decode("%C3", false).is_err());
        assert!(percent_decode("%4", false).is_err());
    }

    #[test]
    fn query_lookup() {
        let r = Request {
            method: Method::Get,
            version: Version::Http11,
            path: "/q",
            query: "a=1&queries=20&x=%41+b&flag",
            headers: &[],
            body: b"",
            params: [("", ""); MAX_PARAMS],
            n_params: 0,
        };
        assert_eq!(r.query("queries").as_deref(), Some("20"));
        assert_eq!(r.query("x").as_deref(), Some("A b"));
        assert_eq!(r.query("flag").as_deref(), Some(""));
        assert_eq!(r.query("nope"), None);
    }
}
