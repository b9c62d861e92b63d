//! The Parallelopedia index: built once from a MediaWiki pages-articles dump, then
//! mapped read-only by every core.
//!
//! A directory holds:
//! - `titles.fst`: an fst map from title (UTF-8, as in `<title>`, XML entities decoded)
//!   to page number, in byte order: prefix search is a range scan;
//! - `pages.bin`: per page number, 8 bytes little-endian: the low 32 bits of the byte
//!   offset of the `<` of `<page>` (u32) and the distance (u32) from there to the final
//!   `>` of `</page>` (the inclusive end). Pages are numbered in dump order, so offsets
//!   only grow: the high bits are where the page number stands among `meta.json`'s
//!   `start_high` (the first page at or past each 4 GiB of the dump), a list of a few
//!   numbers instead of 4 bytes a page. A redirect's target is not stored: the page's
//!   own `<redirect title="…"/>` names it, and following it reads that page anyway
//!   ([`redirect_target`]);
//! - `redirects.tsv`: page number, tab, target title, for every redirect (for people);
//! - `meta.json`: the dump's path and size, counts, format version.
//!
//! The builder streams the dump (a 1 MiB window; memory grows only with the titles it
//! must sort for the fst), so a dump of tens of GB needs no more than its index.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use fst::{IntoStreamer, Streamer};
use px_dataplane::mem::{HugepagePolicy, MappedFile, Residence, ResidentFile};

use super::multistream::{MultiReader, Streams};
use super::sorter::{RedirectSpool, TitleSorter};

const RECORD: usize = 8;
/// Page numbers are u32 in the fst's values.
const MAX_PAGES: u64 = u32::MAX as u64;
/// 3: 8-byte records (2 had a redirect target in each, 12 bytes; 1 a u64 offset, 16).
const FORMAT: u32 = 3;
/// Longest tag (with a title inside) the scanner accepts.
const MAX_TAG: usize = 64 << 10;

/// What a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildStats {
    /// `<page>` elements.
    pub pages: u64,
    /// Distinct titles in the fst.
    pub titles: u64,
    /// Pages with `<redirect>`.
    pub redirects: u64,
    /// Redirects whose target is not in the dump.
    pub redirects_missing: u64,
    /// Pages whose title an earlier page already had (the first one wins).
    pub duplicate_titles: u64,
    /// Bytes of the dump as given (compressed, for a multistream dump).
    pub bytes: u64,
    /// Bytes of the plain XML (the same as `bytes` for a plain dump).
    pub plain_bytes: u64,
    /// bzip2 streams (0 for a plain dump).
    pub streams: u64,
}

/// Refuses what cannot be served by byte range: compressed or non-UTF-8 input, or
/// something that is not a MediaWiki export.
fn check_input(path: &Path, head: &[u8]) -> Result<()> {
    let name = path.display();
    if head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z']) {
        bail!(
            "{name} is compressed (gzip/xz): decompress it first; the index serves the plain XML or Wikipedia's \
             bzip2 multistream dump (pages-articles-multistream.xml.bz2)"
        );
    }
    if head.starts_with(&[0xff, 0xfe]) || head.starts_with(&[0xfe, 0xff]) || head.iter().take(64).any(|&b| b == 0) {
        bail!("{name} is not UTF-8 (UTF-16 or binary): MediaWiki exports are UTF-8; convert with iconv -t UTF-8 first");
    }
    let text = String::from_utf8_lossy(head);
    if !text.contains("<mediawiki") {
        bail!("{name} is not a MediaWiki export (no <mediawiki> element in its first {} bytes)", head.len());
    }
    if let Some(enc) = text.split("encoding=\"").nth(1).and_then(|r| r.split('"').next()) {
        if !enc.eq_ignore_ascii_case("utf-8") {
            bail!("{name} declares encoding {enc}: only UTF-8 exports are supported");
        }
    }
    Ok(())
}

/// Decodes the five XML entities and numeric character references.
pub fn xml_unescape(s: &[u8]) -> Result<String> {
    let s = std::str::from_utf8(s).context("a title is not UTF-8")?;
    if !s.contains('&') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail.find(';').context("unterminated XML entity in a title")?;
        let ent = &tail[1..end];
        match ent {
            "amp" => out.push('&'),
            "lt" => out.push('<'),
            "gt" => out.push('>'),
            "quot" => out.push('"'),
            "apos" => out.push('\''),
            _ => {
                let code = if let Some(h) = ent.strip_prefix("#x").or_else(|| ent.strip_prefix("#X")) {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = ent.strip_prefix('#') {
                    d.parse().ok()
                } else {
                    None
                };
                out.push(code.and_then(char::from_u32).with_context(|| format!("unknown XML entity &{ent};"))?);
            }
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A sliding window over the dump with absolute offsets.
struct Window<R> {
    src: R,
    buf: Vec<u8>,
    /// Absolute offset of buf[0].
    base: u64,
    eof: bool,
}

impl<R: Read> Window<R> {
    /// Makes sure `buf[pos..]` holds at least `want` bytes unless the input ends; may
    /// drop bytes before `pos` (returns the new position of the same byte).
    fn ensure(&mut self, pos: usize, want: usize) -> io::Result<usize> {
        let mut pos = pos;
        while !self.eof && self.buf.len() - pos < want {
            if pos > 0 {
                self.buf.drain(..pos);
                self.base += pos as u64;
                pos = 0;
            }
            // read_to_end reads into the spare capacity without zeroing it first.
            let n = (&mut self.src).take(1 << 20).read_to_end(&mut self.buf)?;
            if n == 0 {
                self.eof = true;
            }
        }
        Ok(pos)
    }
}

/// Most pages one bzip2 stream of a multistream dump may hold (Wikipedia's hold 100).
const MAX_PAGES_PER_STREAM: u64 = 1000;

/// The builder's input: the plain XML, or a multistream .bz2 read as the XML it
/// decompresses to.
enum Source {
    Plain(File),
    Multi(MultiReader<File>),
}

impl Read for Source {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(f) => f.read(out),
            Source::Multi(m) => m.read(out),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// The builder's default memory budget (`wiki-index --memory-mb`).
pub const DEFAULT_BUILD_MEMORY: usize = 256 << 20;
/// What the builder holds beside the title sort, at most (measured at 16M titles).
const BUILD_OVERHEAD: usize = 48 << 20;

/// Builds the index for `xml` into `out` (created; files in it replaced), sorting titles
/// in [`DEFAULT_BUILD_MEMORY`].
pub fn build(xml: &Path, out: &Path, progress: bool) -> Result<BuildStats> {
    build_with(xml, out, progress, DEFAULT_BUILD_MEMORY)
}

/// As [`build`], with titles sorted in at most `memory` bytes (an external merge sort
/// through run files in `out` beyond that); redirects are spooled to a file. The rest
/// of the builder's memory is a few MiB of buffers, whatever the dump's size.
pub fn build_with(xml: &Path, out: &Path, progress: bool, memory: usize) -> Result<BuildStats> {
    let started = Instant::now();
    let mut file = File::open(xml).with_context(|| format!("opening {}", xml.display()))?;
    let size = file.metadata()?.len();
    let mut head = vec![0u8; 4096.min(size as usize)];
    file.read_exact(&mut head).with_context(|| format!("reading {}", xml.display()))?;
    let multi = head.starts_with(b"BZh");
    if multi {
        // Check what it decompresses to.
        let mut r = MultiReader::new(File::open(xml)?);
        let mut plain = Vec::with_capacity(4096);
        let mut buf = [0u8; 4096];
        while plain.len() < 4096 {
            let n = r.read(&mut buf).with_context(|| format!("{} is not a readable bzip2 file", xml.display()))?;
            if n == 0 {
                break;
            }
            plain.extend_from_slice(&buf[..n]);
        }
        check_input(xml, &plain)?;
    } else {
        check_input(xml, &head)?;
    }
    drop(file);
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let bar = if progress {
        let b = indicatif::ProgressBar::new(size);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg} pages, eta {eta}",
            )
            .expect("static template"),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let src = if multi { Source::Multi(MultiReader::new(File::open(xml)?)) } else { Source::Plain(File::open(xml)?) };
    let mut w = Window { src, buf: Vec::with_capacity(2 << 20), base: 0, eof: false };
    let mut pages_out = BufWriter::new(File::create(out.join("pages.bin"))?);
    // The sort gets the budget less what the rest of the builder holds at most: the
    // scan window and readers, the writers, the fst builder, the merge's run buffers and
    // the fst pages mapped while redirects resolve (released every 512 lookups).
    let mut sorter = TitleSorter::new(out.join("sort.tmp"), memory.saturating_sub(BUILD_OVERHEAD));
    let mut redirects = RedirectSpool::create(out.join("redirects.tmp"))?;
    let mut page_no: u64 = 0;
    let mut start_high: Vec<u64> = Vec::new();
    let mut in_page: Option<(u64, Option<String>, Option<String>)> = None;
    let mut pos = 0usize;
    let read_err = |e: io::Error| anyhow::anyhow!("reading {}: {e}", xml.display());
    loop {
        pos = w.ensure(pos, MAX_TAG).map_err(read_err)?;
        let Some(lt) = memchr::memchr(b'<', &w.buf[pos..]) else {
            if w.eof {
                break;
            }
            pos = w.buf.len();
            continue;
        };
        pos = w.ensure(pos + lt, MAX_TAG).map_err(read_err)?;
        let tag = &w.buf[pos..];
        let abs = w.base + pos as u64;
        if tag.starts_with(b"<page>") || tag.starts_with(b"<page ") {
            if in_page.is_some() {
                bail!("<page> at byte {abs} inside another page: malformed dump");
            }
            in_page = Some((abs, None, None));
            pos += 5;
        } else if tag.starts_with(b"</page>") {
            let Some((start, title, redirect)) = in_page.take() else {
                bail!("</page> at byte {abs} without <page>: malformed dump");
            };
            let end = abs + 6;
            let title = title.with_context(|| format!("the page at byte {start} has no <title>"))?;
            let span = u32::try_from(end - start).with_context(|| format!("the page at byte {start} is over 4 GiB"))?;
            if page_no >= MAX_PAGES {
                bail!("more than {MAX_PAGES} pages: the index format numbers pages with 32 bits");
            }
            // Offsets grow with the page number: a new 4 GiB of the dump starts a
            // new entry in the high table.
            while (start_high.len() as u64) < start >> 32 {
                start_high.push(page_no);
            }
            pages_out.write_all(&(start as u32).to_le_bytes())?;
            pages_out.write_all(&span.to_le_bytes())?;
            sorter.push(title.as_bytes(), page_no as u32)?;
            if let Some(r) = redirect {
                redirects.push(page_no, &r)?;
            }
            page_no += 1;
            if page_no.is_multiple_of(4096) {
                bar.set_position(match &w.src {
                    Source::Plain(_) => abs,
                    Source::Multi(m) => m.compressed_read(),
                });
                bar.set_message(page_no.to_string());
            }
            pos += 7;
        } else if tag.starts_with(b"<title>") {
            let Some(close) = find(&tag[7..], b"</title>") else {
                bail!("<title> at byte {abs} not closed within {MAX_TAG} bytes");
            };
            if let Some(p) = in_page.as_mut() {
                p.1 = Some(xml_unescape(&tag[7..7 + close])?);
            }
            pos += 7 + close + 8;
        } else if tag.starts_with(b"<redirect") {
            let Some(gt) = memchr::memchr(b'>', tag) else { bail!("<redirect at byte {abs} not closed") };
            let el = &tag[..gt];
            if let (Some(p), Some(i)) = (in_page.as_mut(), find(el, b"title=\"")) {
                let v = &el[i + 7..];
                let q =
                    memchr::memchr(b'"', v).with_context(|| format!("<redirect at byte {abs}: unterminated title"))?;
                p.2 = Some(xml_unescape(&v[..q])?);
            }
            pos += gt + 1;
        } else {
            pos += 1;
        }
    }
    if in_page.is_some() {
        bail!("the dump ends inside a <page>: truncated?");
    }
    pages_out.flush()?;
    drop(pages_out);
    let plain_bytes = w.base + w.buf.len() as u64;
    let streams = match &w.src {
        Source::Plain(_) => Vec::new(),
        Source::Multi(m) => m.streams.clone(),
    };
    if multi {
        // A multistream dump holds about 100 pages a stream; a single-stream .bz2 would
        // have every page read decompress the whole file.
        let mut most = (0u64, 0usize);
        let mut records = io::BufReader::new(File::open(out.join("pages.bin"))?);
        let (mut at, mut count, mut page) = (0usize, 0u64, 0u64);
        let mut rec = [0u8; RECORD];
        while records.read_exact(&mut rec).is_ok() {
            let start = full_start(&start_high, page, &rec);
            page += 1;
            while at < streams.len() && start >= streams[at].off + u64::from(streams[at].len) {
                (at, count) = (at + 1, 0);
            }
            count += 1;
            most = most.max((count, at));
        }
        if most.0 > MAX_PAGES_PER_STREAM {
            bail!(
                "{} is not a multistream dump: its stream {} holds {} pages (Wikipedia's hold 100 each), and serving \
                 a page would decompress all of it; use pages-articles-multistream.xml.bz2, or decompress this one \
                 (bunzip2 -k) and index the plain XML",
                xml.display(),
                most.1,
                most.0
            );
        }
        let mut f = BufWriter::new(File::create(out.join("streams.bin"))?);
        for s in &streams {
            f.write_all(&s.to_bytes())?;
        }
        f.flush()?;
    }
    bar.set_position(size);
    bar.set_message(format!("{page_no} pages read; sorting titles"));
    // fst wants keys in byte order; equal titles keep the first page.
    let runs = sorter.runs();
    if runs > 0 {
        bar.set_message(format!("{page_no} pages read; merging {} sorted runs of titles", runs + 1));
    }
    let mut builder = fst::MapBuilder::new(BufWriter::new(File::create(out.join("titles.fst"))?))?;
    let mut last: Vec<u8> = Vec::new();
    let (mut distinct, mut dups) = (0u64, 0u64);
    let mut first = true;
    sorter.finish(|k, page| {
        if !first && last == k {
            dups += 1;
            return Ok(());
        }
        builder.insert(k, u64::from(page)).map_err(io::Error::other)?;
        last.clear();
        last.extend_from_slice(k);
        first = false;
        distinct += 1;
        Ok(())
    })?;
    builder.finish()?;
    // Check redirect targets against the finished map (counted; not stored: serving
    // reads the target from the redirect page itself).
    let fst_file = MappedFile::open(&out.join("titles.fst"))?;
    // Scattered lookups: no fault-around (64 KiB mapped per fault would map most of the
    // file between two releases below).
    fst_file.advise_random();
    let map = fst::Map::new(fst_file.bytes()).context("reading back titles.fst")?;
    let mut tsv = BufWriter::new(File::create(out.join("redirects.tsv"))?);
    let mut missing = 0u64;
    let redirect_count = redirects.len();
    let mut resolved = 0u64;
    redirects.drain(|page, target| {
        resolved += 1;
        if resolved.is_multiple_of(1 << 9) {
            // The lookups touch pages all over titles.fst: keep them out of the resident set.
            fst_file.release_pages();
        }
        if lookup(&map, target).is_none() {
            missing += 1;
        }
        writeln!(tsv, "{page}\t{target}")
    })?;
    tsv.flush()?;
    let stats = BuildStats {
        pages: page_no,
        titles: distinct,
        redirects: redirect_count,
        redirects_missing: missing,
        duplicate_titles: dups,
        bytes: size,
        plain_bytes,
        streams: streams.len() as u64,
    };
    let abs = fs::canonicalize(xml)?;
    let meta = serde_json::json!({
        "format": FORMAT,
        "start_high": start_high,
        "xml": abs,
        "dump": if multi { "bz2-multistream" } else { "xml" },
        "file_bytes": size,
        "xml_bytes": plain_bytes,
        "streams": streams.len(),
        "largest_stream_bytes": streams.iter().map(|s| s.len).max().unwrap_or(0),
        "pages": stats.pages,
        "titles": stats.titles,
        "redirects": stats.redirects,
        "redirects_missing": stats.redirects_missing,
        "duplicate_titles": stats.duplicate_titles,
        "build_seconds": started.elapsed().as_secs_f64(),
        "build_memory_budget": memory,
        "sort_runs": runs,
    });
    fs::write(out.join("meta.json"), serde_json::to_vec_pretty(&meta)?)?;
    bar.finish_and_clear();
    Ok(stats)
}

/// A title's page number: exact, else with the first letter upper-cased (MediaWiki
/// titles start with a capital), else with underscores read as spaces.
fn lookup<D: AsRef<[u8]>>(map: &fst::Map<D>, title: &str) -> Option<u64> {
    if let Some(v) = map.get(title) {
        return Some(v);
    }
    let mut chars = title.chars();
    let first = chars.next()?;
    let capital: String = first.to_uppercase().chain(chars).collect();
    if let Some(v) = map.get(&capital) {
        return Some(v);
    }
    if title.contains('_') {
        return lookup(map, &title.replace('_', " "));
    }
    None
}

/// Page `page`'s offset from its record's low 32 bits and the high table (the number
/// of 4 GiB boundaries the pages before it crossed).
fn full_start(start_high: &[u64], page: u64, rec: &[u8]) -> u64 {
    let high = start_high.partition_point(|&first| first <= page) as u64;
    (high << 32) | u64::from(u32::from_le_bytes(rec[..4].try_into().expect("4 bytes")))
}

/// One page's place in the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRef {
    /// Page number.
    pub page: u64,
    /// Offset of `<page>`'s `<`.
    pub start: u64,
    /// Offset of `</page>`'s final `>` (inclusive).
    pub end: u64,
}

impl PageRef {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        (self.end + 1 - self.start) as usize
    }

    /// Never true (a page holds at least `<page></page>`); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The target a redirect page names in its `<redirect title="…"/>` (XML entities
/// decoded), or None for a page that is not a redirect. Inside `<text>` a `<` is
/// escaped, so the first `<redirect` in a page's bytes is the element.
pub fn redirect_target(page_xml: &[u8]) -> Option<String> {
    let at = find(page_xml, b"<redirect")?;
    let el = &page_xml[at..];
    let el = &el[..memchr::memchr(b'>', el)?];
    let v = &el[find(el, b"title=\"")? + 7..];
    xml_unescape(&v[..memchr::memchr(b'"', v)?]).ok()
}

/// The title index and page table, resident for the process's life: a `Copy` handle
/// that jobs on other threads and futures can hold.
#[derive(Clone, Copy)]
pub struct Lookup {
    titles: &'static fst::Map<&'static [u8]>,
    pages: &'static [u8],
    /// The first page at or past each 4 GiB of the dump (`meta.json`'s `start_high`).
    start_high: &'static [u64],
}

impl Lookup {
    /// Number of pages.
    pub fn pages(&self) -> u64 {
        (self.pages.len() / RECORD) as u64
    }

    /// Page `page`'s place.
    pub fn page(&self, page: u64) -> Option<PageRef> {
        let i = usize::try_from(page).ok()?.checked_mul(RECORD)?;
        let r = self.pages.get(i..i + RECORD)?;
        let start = full_start(self.start_high, page, r);
        let span = u32::from_le_bytes(r[4..8].try_into().expect("4 bytes"));
        Some(PageRef { page, start, end: start + u64::from(span) })
    }

    /// The page titled `title` (see [`lookup`] for the spellings tried).
    pub fn find(&self, title: &str) -> Option<PageRef> {
        self.page(lookup(self.titles, title)?)
    }

    /// Titles starting with `prefix`, in byte order, at most `limit`: `f(title, page
    /// number)` (read the page's record with [`page`](Self::page) when it is needed).
    pub fn prefixed_pages(&self, prefix: &str, limit: usize, mut f: impl FnMut(&[u8], u64)) {
        let mut stream = self.titles.range().ge(prefix).into_stream();
        let mut n = 0;
        while let Some((k, v)) = stream.next() {
            if n == limit || !k.starts_with(prefix.as_bytes()) {
                break;
            }
            f(k, v);
            n += 1;
        }
    }
}

/// The dump pages are served from.
#[derive(Clone, Copy)]
pub enum Dump {
    /// The plain XML, read with io_uring or pread (not mapped: serving pages maps none
    /// of it into the process).
    Plain {
        /// The XML file, shared with the reads in flight.
        file: &'static std::sync::Arc<File>,
        /// Its size.
        len: u64,
    },
    /// Wikipedia's multistream .bz2 (read with pread, not mapped), with its streams
    /// (`streams.bin`).
    Multistream {
        /// The .bz2 file.
        bz2: &'static File,
        /// Its streams, in order.
        streams: Streams<'static>,
    },
}

impl Dump {
    /// Bytes of the plain XML (what `/xml` ranges count in).
    pub fn len(&self) -> u64 {
        match self {
            Dump::Plain { len, .. } => *len,
            Dump::Multistream { streams, .. } => streams.plain_len(),
        }
    }

    /// True for an empty dump.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// For the log: what it is and its size.
    pub fn describe(&self) -> String {
        match self {
            Dump::Plain { len, .. } => format!("plain XML dump of {len} bytes"),
            Dump::Multistream { bz2, streams } => format!(
                "multistream dump: {} bytes of bzip2 in {} streams, {} bytes of XML",
                bz2.metadata().map_or(0, |m| m.len()),
                streams.len(),
                streams.plain_len()
            ),
        }
    }

    /// Plain bytes `start..end` (decompressing the streams they lie in, for a
    /// multistream dump: no cache; the server keeps one per core).
    pub fn read(&self, start: u64, end: u64) -> io::Result<std::borrow::Cow<'static, [u8]>> {
        match *self {
            Dump::Plain { file, len } => {
                use std::os::unix::fs::FileExt;
                let end = end.min(len);
                let start = start.min(end);
                let mut out = vec![0; (end - start) as usize];
                file.read_exact_at(&mut out, start)?;
                Ok(std::borrow::Cow::Owned(out))
            }
            Dump::Multistream { bz2, streams } => {
                let mut out = Vec::with_capacity(end.saturating_sub(start) as usize);
                for (_, s) in streams.overlapping(start, end) {
                    let data = s.read_from(bz2)?;
                    let from = start.saturating_sub(s.off) as usize;
                    let to = ((end - s.off) as usize).min(data.len());
                    out.extend_from_slice(&data[from..to]);
                }
                Ok(std::borrow::Cow::Owned(out))
            }
        }
    }
}

/// A built index, mapped, with its dump.
pub struct WikiIndex {
    /// The title index and page table.
    pub lookup: Lookup,
    /// Where the title index and page table are held (hugepages, or locked file pages).
    pub residence: Residence,
    /// Bytes of the index held resident (titles.fst, pages.bin, streams.bin).
    pub resident_bytes: u64,
    /// Each file held resident, its size and where (for the log).
    pub resident_files: String,
    /// The dump.
    pub dump: Dump,
    /// The index directory.
    pub dir: PathBuf,
}

impl WikiIndex {
    /// Maps the index in `dir` and the dump it names. The mappings live as long as the
    /// process (a mounted app is never unmounted).
    pub fn open(dir: &Path) -> Result<WikiIndex> {
        Self::open_with(dir, HugepagePolicy::Auto)
    }

    /// As [`open`](Self::open): the title index and the page table (and a multistream
    /// dump's stream table) are loaded resident — into hugepages per `policy`, else
    /// mapped, populated and locked — so no lookup page-faults on a core.
    pub fn open_with(dir: &Path, policy: HugepagePolicy) -> Result<WikiIndex> {
        let meta: serde_json::Value = serde_json::from_slice(&fs::read(dir.join("meta.json")).with_context(|| {
            format!("{} is not a wiki index (no meta.json; build it with `px-appliance wiki-index`)", dir.display())
        })?)?;
        if meta["format"] != FORMAT {
            bail!("{}: index format {} (this build reads {FORMAT}); rebuild it", dir.display(), meta["format"]);
        }
        let xml_path = PathBuf::from(meta["xml"].as_str().context("meta.json: no xml path")?);
        let resident = |p: &Path| -> Result<&'static ResidentFile> {
            let f = ResidentFile::load(p, policy).with_context(|| format!("loading {}", p.display()))?;
            Ok(Box::leak(Box::new(f)))
        };
        let multi = meta["dump"] == "bz2-multistream";
        let f = File::open(&xml_path).with_context(|| format!("opening {}", xml_path.display()))?;
        let len = f.metadata()?.len();
        let xml = if multi {
            (None, Some(&*Box::leak(Box::new(f))), len)
        } else {
            (Some(&*Box::leak(Box::new(std::sync::Arc::new(f)))), None, len)
        };
        let expect = if multi { meta["file_bytes"].as_u64() } else { meta["xml_bytes"].as_u64() };
        if Some(xml.2) != expect {
            bail!(
                "{} changed since the index was built ({} bytes, index says {}); rebuild the index",
                xml_path.display(),
                xml.2,
                expect.map_or("nothing".to_string(), |n| n.to_string())
            );
        }
        let mut held: Vec<&'static ResidentFile> = Vec::new();
        let dump = match xml {
            (_, Some(bz2), _) => {
                let table = resident(&dir.join("streams.bin"))?;
                held.push(table);
                let streams =
                    Streams::new(table.bytes()).with_context(|| format!("{}/streams.bin is corrupt", dir.display()))?;
                Dump::Multistream { bz2, streams }
            }
            (Some(file), _, _) => Dump::Plain { file, len },
            _ => unreachable!("one of the two is set"),
        };
        let fst_file = resident(&dir.join("titles.fst"))?;
        let pages_file = resident(&dir.join("pages.bin"))?;
        held.extend([fst_file, pages_file]);
        let titles: &'static _ = Box::leak(Box::new(fst::Map::new(fst_file.bytes()).context("titles.fst is corrupt")?));
        let pages = pages_file.bytes();
        // The weakest residence of the files, for the log.
        let residence = held
            .iter()
            .map(|f| f.residence())
            .max_by_key(|r| match r {
                Residence::Hugepages => 0,
                Residence::Locked => 1,
                Residence::Populated => 2,
            })
            .unwrap_or(Residence::Locked);
        let resident_bytes = held.iter().map(|f| f.len() as u64).sum();
        let names = if held.len() == 3 {
            &["streams.bin", "titles.fst", "pages.bin"][..]
        } else {
            &["titles.fst", "pages.bin"]
        };
        let resident_files = names
            .iter()
            .zip(&held)
            .map(|(n, f)| format!("{n} {} MiB {}", f.len() >> 20, f.residence().describe()))
            .collect::<Vec<_>>()
            .join("; ");
        if pages.len() % RECORD != 0 {
            bail!("pages.bin is corrupt (length {} is not a multiple of {RECORD})", pages.len());
        }
        let count = (pages.len() / RECORD) as u64;
        let start_high: Vec<u64> = meta["start_high"]
            .as_array()
            .context("meta.json: no start_high")?
            .iter()
            .map(|v| v.as_u64().filter(|&p| p <= count))
            .collect::<Option<_>>()
            .context("meta.json: start_high must list page numbers within pages.bin")?;
        if !start_high.is_sorted() || start_high.len() as u64 > (dump.len() >> 32) {
            bail!("meta.json: start_high {start_high:?} does not fit {} bytes of XML", dump.len());
        }
        let start_high: &'static [u64] = Box::leak(start_high.into_boxed_slice());
        let lookup = Lookup { titles, pages, start_high };
        Ok(WikiIndex { lookup, residence, resident_bytes, resident_files, dump, dir: dir.to_path_buf() })
    }

    /// Number of pages.
    pub fn pages(&self) -> u64 {
        self.lookup.pages()
    }

    /// Page `page`'s place.
    pub fn page(&self, page: u64) -> Option<PageRef> {
        self.lookup.page(page)
    }

    /// The page titled `title` (see [`lookup`] for the spellings tried).
    pub fn find(&self, title: &str) -> Option<PageRef> {
        self.lookup.find(title)
    }

    /// Titles starting with `prefix`, in byte order, at most `limit`: `f(title, page)`.
    pub fn prefixed(&self, prefix: &str, limit: usize, mut f: impl FnMut(&str, PageRef)) {
        self.lookup.prefixed_pages(prefix, limit, |k, v| {
            if let (Ok(title), Some(p)) = (std::str::from_utf8(k), self.page(v)) {
                f(title, p);
            }
        });
    }

    /// As [`Lookup::prefixed_pages`].
    pub fn prefixed_pages(&self, prefix: &str, limit: usize, f: impl FnMut(&[u8], u64)) {
        self.lookup.prefixed_pages(prefix, limit, f)
    }

    /// The page's XML bytes.
    pub fn xml_of(&self, p: &PageRef) -> io::Result<std::borrow::Cow<'static, [u8]>> {
        self.dump.read(p.start, p.end + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_are_decoded() {
        assert_eq!(
            xml_unescape(b"AT&amp;T &lt;x&gt; &quot;q&quot; &apos;a&apos; &#233;&#x00E9;").unwrap(),
            "AT&T <x> \"q\" 'a' éé"
        );
        assert!(xml_unescape(b"a &bogus; b").is_err());
        assert!(xml_unescape(b"a & b").is_err());
    }

    fn dump(pages: &[(&str, Option<&str>)]) -> String {
        let mut s = String::from("<mediawiki xmlns=\"http://www.mediawiki.org/xml/export-0.10/\" xml:lang=\"en\">\n  <siteinfo><sitename>W</sitename></siteinfo>\n");
        for (t, r) in pages {
            s.push_str(&format!("  <page>\n    <title>{t}</title>\n    <ns>0</ns>\n"));
            if let Some(r) = r {
                s.push_str(&format!("    <redirect title=\"{r}\" />\n"));
            }
            s.push_str(
                "    <revision><text xml:space=\"preserve\">a &lt;page&gt; in text</text></revision>\n  </page>\n",
            );
        }
        s.push_str("</mediawiki>\n");
        s
    }

    #[test]
    fn builds_and_answers_prefix_exact_and_redirect_lookups() {
        let dir = std::env::temp_dir().join(format!("px-wiki-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let text = dump(&[
            ("Zebra", None),
            ("Anarchism", None),
            ("Anarchy", Some("Anarchism")),
            ("AT&amp;T", None),
            ("Lost", Some("Nowhere")),
        ]);
        fs::write(dir.join("d.xml"), &text).unwrap();
        let st = build(&dir.join("d.xml"), &dir.join("idx"), false).unwrap();
        assert_eq!((st.pages, st.titles, st.redirects, st.redirects_missing), (5, 5, 2, 1));
        let idx = WikiIndex::open(&dir.join("idx")).unwrap();
        let mut got = Vec::new();
        idx.prefixed("Anar", 10, |t, _| got.push(t.to_string()));
        assert_eq!(got, ["Anarchism", "Anarchy"]);
        let z = idx.find("Zebra").unwrap();
        let xml = idx.xml_of(&z).unwrap();
        let xml = &xml[..];
        assert!(xml.starts_with(b"<page>") && xml.ends_with(b"</page>"), "{}", String::from_utf8_lossy(xml));
        assert_eq!(&text.as_bytes()[z.start as usize..=z.end as usize], xml);
        assert_eq!(idx.find("zebra").unwrap().page, z.page, "first letter capitalised");
        assert!(idx.find("AT&T").is_some());
        let a = idx.find("Anarchy").unwrap();
        // A redirect names its target in its own XML (the index keeps no pointer).
        assert_eq!(redirect_target(&idx.xml_of(&a).unwrap()).as_deref(), Some("Anarchism"));
        assert_eq!(redirect_target(&idx.xml_of(&idx.find("Lost").unwrap()).unwrap()).as_deref(), Some("Nowhere"));
        assert_eq!(redirect_target(xml), None, "Zebra is not a redirect");
        assert_eq!(
            redirect_target(b"<page><redirect title=\"AT&amp;T\" /><text>&lt;redirect title=\"x\"</text></page>")
                .as_deref(),
            Some("AT&T")
        );
        assert!(idx.find("Nope").is_none());
        // An index of another format, or whose high table does not fit, is refused.
        let meta = fs::read_to_string(dir.join("idx/meta.json")).unwrap();
        for (from, to, want) in [
            ("\"format\": 3", "\"format\": 2", "rebuild it"),
            ("\"start_high\": []", "\"start_high\": [3]", "does not fit"),
            ("\"start_high\": []", "\"start_high\": [9]", "within pages.bin"),
        ] {
            assert!(meta.contains(from), "{meta}");
            fs::write(dir.join("idx/meta.json"), meta.replace(from, to)).unwrap();
            let e = format!("{:#}", WikiIndex::open(&dir.join("idx")).err().unwrap());
            assert!(e.contains(want), "{to}: {e}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn offsets_take_their_high_bits_from_the_page_number() {
        // Pages 0..3 below 4 GiB, 3..7 in the second 4 GiB, none in the third (a page
        // longer than 4 GiB of gaps), 7.. from 12 GiB on.
        let high = [3u64, 7, 7];
        let rec = |lo: u32| lo.to_le_bytes();
        assert_eq!(full_start(&high, 0, &rec(10)), 10);
        assert_eq!(full_start(&high, 2, &rec(u32::MAX)), u64::from(u32::MAX));
        assert_eq!(full_start(&high, 3, &rec(0)), 1 << 32);
        assert_eq!(full_start(&high, 6, &rec(5)), (1 << 32) + 5);
        assert_eq!(full_start(&high, 7, &rec(9)), (3 << 32) + 9);
        assert_eq!(full_start(&[], 1 << 20, &rec(9)), 9);
    }

    /// A sparse dump whose pages lie on both sides of 4 GiB (the gap is NUL bytes, which
    /// the scanner passes over): the builder's high table and the reader agree, and the
    /// bytes read are the page's.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn pages_past_4_gib_are_found_and_read() {
        use std::os::unix::fs::FileExt;
        let dir = std::env::temp_dir().join(format!("px-wiki-4g-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let page =
            |t: &str| format!("<page><title>{t}</title><ns>0</ns><revision><text>{t} text</text></revision></page>\n");
        let f = File::create(dir.join("d.xml")).unwrap();
        let head = "<mediawiki xmlns=\"http://www.mediawiki.org/xml/export-0.10/\">\n".to_string() + &page("Low");
        f.write_all_at(head.as_bytes(), 0).unwrap();
        let straddle = (1u64 << 32) - 20; // starts below 4 GiB, ends above
        f.write_all_at(page("Straddle").as_bytes(), straddle).unwrap();
        let past = (1u64 << 32) + 4096;
        f.write_all_at((page("Past") + &page("Next") + "</mediawiki>\n").as_bytes(), past).unwrap();
        drop(f);
        build(&dir.join("d.xml"), &dir.join("idx"), false).unwrap();
        let idx = WikiIndex::open(&dir.join("idx")).unwrap();
        assert_eq!(idx.lookup.start_high, [2], "the first page past 4 GiB is page 2");
        for (title, at) in [("Low", head.find("<page>").unwrap() as u64), ("Straddle", straddle), ("Past", past)] {
            let p = idx.find(title).unwrap();
            assert_eq!(p.start, at, "{title}");
            assert_eq!(&idx.xml_of(&p).unwrap()[..], page(title).trim_end().as_bytes(), "{title}");
        }
        let next = idx.find("Next").unwrap();
        assert_eq!(next.start, past + page("Past").len() as u64);
        let mut got = Vec::new();
        idx.prefixed("Nex", 5, |t, p| got.push((t.to_string(), p.start)));
        assert_eq!(got, [("Next".to_string(), next.start)]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_compressed_utf16_and_foreign_input() {
        let dir = std::env::temp_dir().join(format!("px-wiki-bad-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let cases: [(&str, Vec<u8>, &str); 4] = [
            ("a.xml.bz2", b"BZh91AY&SY....".to_vec(), "not a readable bzip2 file"),
            ("b.xml", [0xff, 0xfe, b'<', 0].to_vec(), "not UTF-8"),
            ("c.xml", b"<html><body>hi</body></html>".to_vec(), "not a MediaWiki export"),
            ("d.xml", b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><mediawiki>".to_vec(), "only UTF-8"),
        ];
        for (name, bytes, want) in cases {
            fs::write(dir.join(name), bytes).unwrap();
            let e = build(&dir.join(name), &dir.join("idx"), false).unwrap_err().to_string();
            assert!(e.contains(want), "{name}: {e}");
        }
        fs::write(dir.join("t.xml"), b"<mediawiki><page><title>A</title>").unwrap();
        let e = build(&dir.join("t.xml"), &dir.join("idx"), false).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
