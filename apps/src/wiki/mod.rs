//! Parallelopedia: Wikipedia title search and page XML served by byte range, from an
//! index built once (`px-appliance wiki-index`, see [`index`]) and mapped read-only by
//! every core.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the search page (HTML + JS, no build step) |
//! | `GET /offsets/{prefix}` | JSON `[[title, start, end], ...]`, titles starting with the prefix in byte order; `?limit=` (default 100, at most 10,000); prefix under 3 characters → 400 |
//! | `GET /wiki/{title}` | the page's XML, `text/xml; charset=utf-8`; `?follow=1` follows a redirect once; unknown → 404 |
//! | `GET /xml` + `Range: bytes=a-b` / `a-` / `-n` | 206 with `Content-Range: bytes a-b/SIZE`; unsatisfiable → 416 with `Content-Range: bytes */SIZE`; no Range or several ranges → 400 |
//!
//! HEAD works on every route (the engine sends the same head without the body).
//!
//! **Page bytes and the disk.** The dump is not mapped: a page's bytes are read into
//! its response. With `wiki.page_reads = "io_uring"` (the default) the handler hands
//! the read to the core's own io_uring ([`Cx::read_at`](px_dataplane::app::Cx::read_at)):
//! every read a loop turn starts goes to the kernel in one submission, those the page
//! cache holds complete inside it and are answered in the same turn, and those that
//! need the disk complete later while the core serves other connections. Where
//! io_uring is refused, or with `"threads"`, reads go to the I/O threads
//! (`control.io_threads`); `"inline"` reads on the core with `pread` (for measuring
//! the difference). Each answer says which path served it in `X-Page-Read`.

pub mod index;
pub mod multistream;
pub mod sorter;

use std::borrow::Cow;
use std::io::Write;
use std::sync::{Arc, Mutex};

use px_dataplane::app::{Ctx, HandlerError, Reply, Route};
use px_dataplane::http::{Body, Method, OwnedResponse, Request, Response};

pub use index::{Dump, WikiIndex};
use multistream::{Stream, StreamCache, Streams};

/// How page bytes of a plain dump are read (`wiki.page_reads`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageReads {
    /// The core's io_uring (falls back to `Threads` where it is refused).
    IoUring,
    /// The I/O threads.
    Threads,
    /// `pread` on the core.
    Inline,
}

impl PageReads {
    /// From the config value.
    pub fn parse(s: &str) -> Option<PageReads> {
        match s {
            "io_uring" => Some(PageReads::IoUring),
            "threads" => Some(PageReads::Threads),
            "inline" => Some(PageReads::Inline),
            _ => None,
        }
    }
}

/// Served state: the index and how page bytes are read.
pub struct Wiki {
    /// The resident index and the dump.
    pub index: WikiIndex,
    /// How page bytes of a plain dump are read.
    pub page_reads: PageReads,
    /// A multistream dump: bytes of decompressed streams each core keeps.
    pub stream_cache_bytes: usize,
    /// Bytes of `/offsets` answers each core keeps (0: none).
    pub offsets_cache_bytes: usize,
}

thread_local! {
    /// This core's decompressed streams (multistream dumps; made on first use).
    static STREAMS: std::cell::RefCell<Option<Arc<Mutex<StreamCache>>>> = const { std::cell::RefCell::new(None) };
}

fn core_cache(max_bytes: usize) -> Arc<Mutex<StreamCache>> {
    STREAMS.with(|c| c.borrow_mut().get_or_insert_with(|| StreamCache::new(max_bytes)).clone())
}

/// The app's routes.
pub const ROUTES: &[Route] = &[
    Route::sync(Method::Get, "/", search_page),
    Route::sync(Method::Get, "/offsets/{*prefix}", offsets),
    Route::sync(Method::Get, "/wiki/{*title}", wiki),
    Route::sync(Method::Get, "/xml", xml_range),
];

const PAGE: &[u8] = include_bytes!("search.html");
const XML_TYPE: &str = "text/xml; charset=utf-8";
/// Most results `/offsets` returns.
pub const MAX_LIMIT: usize = 10_000;

fn state<'a>(cx: &Ctx<'a>) -> Result<&'a Wiki, HandlerError> {
    cx.shared::<Wiki>().ok_or_else(|| HandlerError::status(500, "wiki app not initialised\n"))
}

fn search_page<'a>(_: &'a Request<'a>, _: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    Ok(Response::new(200, "text/html; charset=utf-8", Body::Static(PAGE)).into())
}

fn decoded<'a>(req: &'a Request<'a>, name: &str) -> Result<Cow<'a, str>, HandlerError> {
    req.param_decoded(name).ok_or_else(|| HandlerError::status(400, format!("{name} is not percent-encoded UTF-8\n")))
}

/// This core's recent `/offsets` answers: key (the decoded prefix, then the limit as
/// two bytes) → the JSON body. Bounded by `wiki.offsets_cache_mb`; the index never
/// changes while served, so an entry is never stale.
struct OffsetsCache(std::cell::RefCell<Answers>);

type Answers = quick_cache::unsync::Cache<Box<[u8]>, Box<[u8]>, EntryBytes>;

/// An entry weighs its key, its body and the table's bookkeeping.
#[derive(Clone)]
struct EntryBytes;

impl quick_cache::Weighter<Box<[u8]>, Box<[u8]>> for EntryBytes {
    fn weight(&self, key: &Box<[u8]>, body: &Box<[u8]>) -> u64 {
        (key.len() + body.len() + 64) as u64
    }
}

/// Results `/offsets` gathers before it reads their page records (see [`offsets`]).
const OFFSETS_BATCH: usize = 8;

fn offsets<'a>(req: &'a Request<'a>, cx: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    let w = state(cx)?;
    let prefix = decoded(req, "prefix")?;
    if prefix.chars().count() < 3 {
        return Err(HandlerError::status(400, "prefix must be at least 3 characters\n"));
    }
    let limit = match req.query("limit") {
        None => 100,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(HandlerError::status(400, format!("limit must be 1..={MAX_LIMIT}\n"))),
        },
    };
    let cache = (w.offsets_cache_bytes > 0).then(|| {
        cx.cx().local(|| {
            let bytes = w.offsets_cache_bytes as u64;
            // quick_cache sizes its table from the expected entry count (~1 KiB each).
            let items = (w.offsets_cache_bytes >> 10).clamp(64, 1 << 20);
            OffsetsCache(std::cell::RefCell::new(quick_cache::unsync::Cache::with_weighter(items, bytes, EntryBytes)))
        })
    });
    // The key (prefix and limit) is built only when there is a cache to ask.
    let key = match &cache {
        None => None,
        Some(_) => {
            let mut key = cx.arena().vec();
            key.extend_from_slice(prefix.as_bytes()).map_err(|e| arena_full(std::io::Error::other(e)))?;
            key.extend_from_slice(&(limit as u16).to_le_bytes()).map_err(|e| arena_full(std::io::Error::other(e)))?;
            Some(key.into_slice())
        }
    };
    if let (Some(c), Some(key)) = (&cache, &key) {
        if let Some(body) = c.0.borrow().get(*key) {
            let out = cx.arena().alloc_bytes(body.len())?;
            out.copy_from_slice(body);
            return Ok(Response::ok("application/json", out).with_header("X-Offsets-Cache", "hit").into());
        }
    }
    let mut body = cx.arena().vec();
    body.write_all(b"[").map_err(arena_full)?;
    // The titles come from walking the fst; each one's page record is a cache miss in
    // pages.bin (page numbers are in dump order, titles in byte order). Gathering a
    // batch of results first and then reading their records in one tight loop lets
    // the CPU have those misses in flight together rather than one after another.
    let mut titles: Vec<u8> = Vec::with_capacity(1024);
    let mut found: Vec<(u64, u32, u32)> = Vec::with_capacity(OFFSETS_BATCH.min(limit));
    let mut first = true;
    let mut flush = |titles: &mut Vec<u8>, found: &mut Vec<(u64, u32, u32)>| -> std::io::Result<()> {
        let refs: Vec<Option<index::PageRef>> = found.iter().map(|f| w.index.page(f.0)).collect();
        for (f, p) in found.iter().zip(refs) {
            let (Some(p), Ok(title)) = (p, std::str::from_utf8(&titles[f.1 as usize..f.2 as usize])) else {
                continue;
            };
            if !first {
                body.write_all(b",")?;
            }
            first = false;
            body.write_all(b"[")?;
            serde_json::to_writer(&mut body, title).map_err(std::io::Error::other)?;
            let mut num = itoa::Buffer::new();
            body.write_all(b",")?;
            body.write_all(num.format(p.start).as_bytes())?;
            body.write_all(b",")?;
            body.write_all(num.format(p.end).as_bytes())?;
            body.write_all(b"]")?;
        }
        titles.clear();
        found.clear();
        Ok(())
    };
    let mut err = None;
    w.index.prefixed_pages(&prefix, limit, |title, page| {
        if err.is_some() {
            return;
        }
        let from = titles.len() as u32;
        titles.extend_from_slice(title);
        found.push((page, from, titles.len() as u32));
        if found.len() == OFFSETS_BATCH {
            if let Err(e) = flush(&mut titles, &mut found) {
                err = Some(e);
            }
        }
    });
    if err.is_none() {
        if let Err(e) = flush(&mut titles, &mut found) {
            err = Some(e);
        }
    }
    if let Some(e) = err {
        return Err(arena_full(e));
    }
    body.write_all(b"]").map_err(arena_full)?;
    let body = body.into_slice();
    if let (Some(c), Some(key)) = (&cache, key) {
        c.0.borrow_mut().insert(key.into(), body.into());
    }
    Ok(Response::ok("application/json", body)
        .with_header("X-Offsets-Cache", if cache.is_some() { "miss" } else { "off" })
        .into())
}

fn arena_full(e: std::io::Error) -> HandlerError {
    HandlerError::status(503, format!("response too large for the connection's arena: {e}\n"))
}

/// Answers bytes `start..=end_incl` of the dump, read as `wiki.page_reads` says.
fn send_range<'a>(
    w: &'a Wiki,
    cx: &mut Ctx<'a>,
    status: u16,
    start: u64,
    end_incl: u64,
    mut headers: Vec<(&'static str, String)>,
) -> Result<Reply<'a>, HandlerError> {
    let file = match w.index.dump {
        Dump::Plain { file, .. } => file,
        Dump::Multistream { bz2, streams } => {
            return send_decompressed(w, cx, (bz2, streams), status, start, end_incl + 1, headers)
        }
    };
    let len = (end_incl + 1 - start) as usize;
    let how = match w.page_reads {
        PageReads::IoUring if cx.cx().file_reads_available() => PageReads::IoUring,
        PageReads::IoUring => PageReads::Threads,
        other => other,
    };
    match how {
        PageReads::IoUring => {
            let acx = cx.cx();
            let file = file.clone();
            cx.later(Box::pin(async move {
                let bytes = acx.read_at(file, start, len).await.map_err(|e| read_failed(start, e))?;
                let mut resp = Response::new(status, XML_TYPE, Body::Owned(whole(bytes, len, start)?));
                headers.push(("X-Page-Read", "io_uring".into()));
                resp.headers = headers;
                Ok(resp)
            }))
        }
        PageReads::Threads => cx.call_blocking(Box::new(move || {
            let mut r = match pread(file, start, len) {
                Ok(bytes) => OwnedResponse::new(status, XML_TYPE, bytes),
                Err(e) => {
                    tracing::error!("wiki: reading {len} bytes of the dump at {start}: {e}");
                    OwnedResponse::new(500, "text/plain", format!("reading the dump failed: {e}\n").into_bytes())
                }
            };
            r.headers = headers;
            r.headers.push(("X-Page-Read", "threads".into()));
            r
        })),
        PageReads::Inline => {
            let bytes = pread(file, start, len).map_err(|e| read_failed(start, e))?;
            headers.push(("X-Page-Read", "inline".into()));
            let mut resp = Response::new(status, XML_TYPE, Body::Owned(bytes));
            resp.headers = headers;
            Ok(resp.into())
        }
    }
}

fn pread(file: &std::fs::File, start: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, start)?;
    Ok(buf)
}

fn read_failed(start: u64, e: std::io::Error) -> HandlerError {
    tracing::error!("wiki: reading the dump at {start}: {e}");
    HandlerError::status(500, format!("reading the dump failed: {e}\n"))
}

/// The bytes read, or 500 if the dump ended before them (it shrank under the index).
fn whole(bytes: Vec<u8>, len: usize, start: u64) -> Result<Vec<u8>, HandlerError> {
    if bytes.len() == len {
        Ok(bytes)
    } else {
        Err(read_failed(
            start,
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the dump is shorter than the index says"),
        ))
    }
}

/// Plain bytes `start..end` of a multistream dump: from the core's cache of decompressed
/// streams when every stream they lie in is there (a copy into the response), else on
/// an I/O thread, which decompresses the missing streams (milliseconds each: not on the
/// core) and leaves them in this core's cache for the next request.
fn send_decompressed<'a>(
    w: &'a Wiki,
    cx: &mut Ctx<'a>,
    (bz2, streams): (&'static std::fs::File, Streams<'static>),
    status: u16,
    start: u64,
    end: u64,
    mut headers: Vec<(&'static str, String)>,
) -> Result<Reply<'a>, HandlerError> {
    let needed: Vec<(usize, Stream)> = streams.overlapping(start, end).collect();
    let cache = core_cache(w.stream_cache_bytes);
    let cached: Option<Vec<Arc<Vec<u8>>>> = {
        let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
        needed.iter().map(|(i, _)| c.get(*i)).collect()
    };
    if let Some(parts) = cached {
        headers.push(("X-Stream-Cache", "hit".into()));
        let mut resp = Response::new(status, XML_TYPE, Body::Owned(assemble(&needed, &parts, start, end)));
        resp.headers = headers;
        return Ok(resp.into());
    }
    cx.call_blocking(Box::new(move || {
        let parts = match streams_through(&cache, bz2, &needed) {
            Ok(parts) => parts,
            Err(e) => return OwnedResponse::new(500, "text/plain", format!("{e}\n").into_bytes()),
        };
        let mut r = OwnedResponse::new(status, XML_TYPE, assemble(&needed, &parts, start, end));
        r.headers = headers;
        r.headers.push(("X-Stream-Cache", "miss".into()));
        r
    }))
}

/// The decompressed `needed` streams, from `cache` where they are, else decompressed
/// (on the calling thread: an I/O thread) and left in `cache`.
fn streams_through(
    cache: &Mutex<StreamCache>,
    bz2: &std::fs::File,
    needed: &[(usize, Stream)],
) -> std::io::Result<Vec<Arc<Vec<u8>>>> {
    let mut parts = Vec::with_capacity(needed.len());
    for (i, s) in needed {
        let hit = cache.lock().unwrap_or_else(|e| e.into_inner()).get(*i);
        let data = match hit {
            Some(d) => d,
            None => {
                let d = Arc::new(s.read_from(bz2).map_err(|e| {
                    tracing::error!("wiki: decompressing stream {i} (at byte {} of the .bz2): {e}", s.zoff);
                    std::io::Error::other(format!("stream {i} is unreadable: {e}"))
                })?);
                cache.lock().unwrap_or_else(|e| e.into_inner()).put(*i, d.clone());
                d
            }
        };
        parts.push(data);
    }
    Ok(parts)
}

/// The bytes `start..end` out of the decompressed `parts` of the `needed` streams.
fn assemble(needed: &[(usize, Stream)], parts: &[Arc<Vec<u8>>], start: u64, end: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(end.saturating_sub(start) as usize);
    for ((_, s), data) in needed.iter().zip(parts) {
        let from = start.saturating_sub(s.off) as usize;
        let to = ((end - s.off) as usize).min(data.len());
        out.extend_from_slice(&data[from.min(to)..to]);
    }
    out
}

fn wiki<'a>(req: &'a Request<'a>, cx: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    let w = state(cx)?;
    let title = decoded(req, "title")?;
    let Some(page) = w.index.find(&title) else {
        return Err(HandlerError::status(404, format!("no page titled {title:?}\n")));
    };
    if req.query("follow").is_some_and(|v| v == "1") {
        return follow(w, cx, title.into_owned(), page);
    }
    let headers = vec![("X-Page-Range", format!("{}-{}", page.start, page.end))];
    send_range(w, cx, 200, page.start, page.end, headers)
}

/// `?follow=1`: the page, or, when it is a redirect, the page it names (once). The
/// target is not in the index: it is read from the redirect page's own
/// `<redirect title="…"/>`, so the page is read first and the target after. With
/// io_uring both reads are the core's; otherwise both happen on an I/O thread (a
/// multistream dump's streams through the core's stream cache).
fn follow<'a>(w: &'a Wiki, cx: &mut Ctx<'a>, title: String, page: index::PageRef) -> Result<Reply<'a>, HandlerError> {
    let lookup = w.index.lookup;
    let not_here = move |target: &str| {
        HandlerError::status(404, format!("{title:?} redirects to {target:?}, which is not in this dump\n"))
    };
    let answer = |page: index::PageRef, bytes: Vec<u8>, how: &'static str| {
        let mut resp = Response::new(200, XML_TYPE, Body::Owned(bytes));
        resp.headers = vec![("X-Page-Range", format!("{}-{}", page.start, page.end)), ("X-Page-Read", how.into())];
        resp
    };
    if let (Dump::Plain { file, .. }, PageReads::IoUring, true) =
        (w.index.dump, w.page_reads, cx.cx().file_reads_available())
    {
        let acx = cx.cx();
        return cx.later(Box::pin(async move {
            let read = |p: index::PageRef| {
                let (acx, file) = (acx.clone(), file.clone());
                async move {
                    let bytes = acx.read_at(file, p.start, p.len()).await.map_err(|e| read_failed(p.start, e))?;
                    whole(bytes, p.len(), p.start)
                }
            };
            let bytes = read(page).await?;
            let Some(target) = index::redirect_target(&bytes) else { return Ok(answer(page, bytes, "io_uring")) };
            let to = lookup.find(&target).ok_or_else(|| not_here(&target))?;
            Ok(answer(to, read(to).await?, "io_uring"))
        }));
    }
    let dump = w.index.dump;
    let cache = matches!(dump, Dump::Multistream { .. }).then(|| core_cache(w.stream_cache_bytes));
    cx.call_blocking(Box::new(move || {
        let read = |p: index::PageRef| match (dump, &cache) {
            (Dump::Multistream { bz2, streams }, Some(cache)) => {
                let needed: Vec<(usize, Stream)> = streams.overlapping(p.start, p.end + 1).collect();
                let parts = streams_through(cache, bz2, &needed)?;
                Ok(assemble(&needed, &parts, p.start, p.end + 1))
            }
            _ => dump.read(p.start, p.end + 1).map(|b| b.into_owned()),
        };
        let result =
            read(page).map_err(|e| read_failed(page.start, e)).and_then(|bytes| match index::redirect_target(&bytes) {
                None => Ok((page, bytes)),
                Some(target) => {
                    let to = lookup.find(&target).ok_or_else(|| not_here(&target))?;
                    Ok((to, read(to).map_err(|e| read_failed(to.start, e))?))
                }
            });
        match result {
            Ok((p, bytes)) => {
                let mut r = OwnedResponse::new(200, XML_TYPE, bytes);
                r.headers = vec![("X-Page-Range", format!("{}-{}", p.start, p.end)), ("X-Page-Read", "threads".into())];
                r
            }
            Err(HandlerError::Status { status, message }) => {
                OwnedResponse::new(status, "text/plain", message.into_bytes())
            }
            Err(other) => OwnedResponse::new(500, "text/plain", format!("{other}\n").into_bytes()),
        }
    }))
}

/// A parsed `Range` header against a representation of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// 206: inclusive byte range.
    Partial(u64, u64),
    /// 416.
    Unsatisfiable,
    /// 400 with the reason.
    Bad(&'static str),
}

/// RFC 9110 §14.1.2 single byte ranges: `bytes=a-b`, `bytes=a-`, `bytes=-n`.
pub fn parse_range(value: &str, size: u64) -> RangeAnswer {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Bad("Range must use the bytes unit: bytes=a-b, bytes=a- or bytes=-n");
    };
    if spec.contains(',') {
        return RangeAnswer::Bad("several ranges in one request are not supported; ask for one range at a time");
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeAnswer::Bad("malformed Range") };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (a.trim(), b.trim()) {
        ("", n) => match num(n) {
            // Suffix range: the last n bytes (n > size means the whole representation).
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if size == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Partial(size - n.min(size), size - 1),
            None => RangeAnswer::Bad("malformed Range"),
        },
        (a, "") => match num(a) {
            Some(a) if a < size => RangeAnswer::Partial(a, size - 1),
            Some(_) => RangeAnswer::Unsatisfiable,
            None => RangeAnswer::Bad("malformed Range"),
        },
        (a, b) => match (num(a), num(b)) {
            (Some(a), Some(b)) if a > b => RangeAnswer::Bad("Range first byte is after its last byte"),
            (Some(a), Some(_)) if a >= size => RangeAnswer::Unsatisfiable,
            (Some(a), Some(b)) => RangeAnswer::Partial(a, b.min(size - 1)),
            _ => RangeAnswer::Bad("malformed Range"),
        },
    }
}

fn xml_range<'a>(req: &'a Request<'a>, cx: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    let w = state(cx)?;
    let size = w.index.dump.len();
    let Some(value) = req.header("range") else {
        return Err(HandlerError::status(400, "GET /xml needs a Range header: bytes=a-b, bytes=a- or bytes=-n\n"));
    };
    let value = std::str::from_utf8(value).map_err(|_| HandlerError::status(400, "Range is not ASCII\n"))?;
    match parse_range(value, size) {
        RangeAnswer::Partial(a, b) => {
            send_range(w, cx, 206, a, b, vec![("Content-Range", format!("bytes {a}-{b}/{size}"))])
        }
        RangeAnswer::Unsatisfiable => Ok(Response::text(416, "range not satisfiable\n")
            .with_header("Content-Range", format!("bytes */{size}"))
            .into()),
        RangeAnswer::Bad(why) => Err(HandlerError::status(400, format!("{why}\n"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeAnswer::*;
        assert_eq!(parse_range("bytes=0-9", 100), Partial(0, 9));
        assert_eq!(parse_range("bytes=90-200", 100), Partial(90, 99));
        assert_eq!(parse_range("bytes=95-", 100), Partial(95, 99));
        assert_eq!(parse_range("bytes=-10", 100), Partial(90, 99), "suffix: the last 10 bytes");
        assert_eq!(parse_range("bytes=-1", 100), Partial(99, 99));
        assert_eq!(parse_range("bytes=-500", 100), Partial(0, 99));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert!(matches!(parse_range("bytes=0-1,5-6", 100), Bad(m) if m.contains("several ranges")));
        assert!(matches!(parse_range("0-10", 100), Bad(m) if m.contains("bytes unit")));
        assert!(matches!(parse_range("bytes=5-1", 100), Bad(_)));
        assert!(matches!(parse_range("bytes=x-1", 100), Bad(_)));
        assert!(matches!(parse_range("bytes=-", 100), Bad(_)));
    }
}
