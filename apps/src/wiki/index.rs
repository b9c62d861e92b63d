//! The Parallelopedia index: built once from a MediaWiki pages-articles dump, then
//! mapped read-only by every core.
//!
//! A directory holds:
//! - `titles.fst`: an fst map from title (UTF-8, as in `<title>`, XML entities decoded)
//!   to page number, in byte order: prefix search is a range scan;
//! - `pages.bin`: per page number, 16 bytes little-endian: the byte offset (u64) of the
//!   `<` of `<page>`, the distance (u32) from there to the final `>` of `</page>` (the
//!   inclusive end), and the page number (u32) the page redirects to (`u32::MAX`: not a
//!   redirect; `u32::MAX - 1`: its target is not in the dump);
//! - `redirects.tsv`: page number, tab, target title, for every redirect (for people);
//! - `meta.json`: the dump's path and size, counts, format version.
//!
//! The builder streams the dump (a 1 MiB window; memory grows only with the titles it
//! must sort for the fst), so a dump of tens of GB needs no more than its index.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use fst::{IntoStreamer, Streamer};
use px_dataplane::mem::MappedFile;

/// `pages.bin` redirect field of a page that is not a redirect.
pub const NOT_REDIRECT: u64 = u64::MAX;
/// `pages.bin` redirect field of a redirect whose target is not in the dump.
pub const REDIRECT_MISSING: u64 = u64::MAX - 1;
const RECORD: usize = 16;
const DISK_NOT_REDIRECT: u32 = u32::MAX;
const DISK_REDIRECT_MISSING: u32 = u32::MAX - 1;
const FORMAT: u32 = 1;
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
    /// Bytes of the dump.
    pub bytes: u64,
}

/// Refuses what cannot be served by byte range: compressed or non-UTF-8 input, or
/// something that is not a MediaWiki export.
fn check_input(path: &Path, head: &[u8]) -> Result<()> {
    let name = path.display();
    if head.starts_with(b"BZh") {
        bail!(
            "{name} is bzip2-compressed: decompress it first (bunzip2 -k {name}); ranged serving needs the plain XML"
        );
    }
    if head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z']) {
        bail!("{name} is compressed (gzip/xz): decompress it first; ranged serving needs the plain XML");
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
            let old = self.buf.len();
            self.buf.resize(old + (1 << 20), 0);
            let n = self.src.read(&mut self.buf[old..])?;
            self.buf.truncate(old + n);
            if n == 0 {
                self.eof = true;
            }
        }
        Ok(pos)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// Builds the index for `xml` into `out` (created; files in it replaced).
pub fn build(xml: &Path, out: &Path, progress: bool) -> Result<BuildStats> {
    let started = Instant::now();
    let mut file = File::open(xml).with_context(|| format!("opening {}", xml.display()))?;
    let size = file.metadata()?.len();
    let mut head = vec![0u8; 4096.min(size as usize)];
    file.read_exact(&mut head).with_context(|| format!("reading {}", xml.display()))?;
    check_input(xml, &head)?;
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
    let src = File::open(xml)?;
    let mut w = Window { src, buf: Vec::with_capacity(2 << 20), base: 0, eof: false };
    let mut pages_out = BufWriter::new(File::create(out.join("pages.bin"))?);
    // Titles, packed: all bytes in one buffer, (offset, length, page) per title.
    let mut title_bytes: Vec<u8> = Vec::new();
    let mut titles: Vec<(u64, u32, u32)> = Vec::new();
    let mut redirects: Vec<(u64, String)> = Vec::new();
    let mut page_no: u64 = 0;
    let mut in_page: Option<(u64, Option<String>, Option<String>)> = None;
    let mut pos = 0usize;
    loop {
        pos = w.ensure(pos, MAX_TAG)?;
        let Some(lt) = memchr::memchr(b'<', &w.buf[pos..]) else {
            if w.eof {
                break;
            }
            pos = w.buf.len();
            continue;
        };
        pos = w.ensure(pos + lt, MAX_TAG)?;
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
            if page_no >= u64::from(DISK_REDIRECT_MISSING) {
                bail!("more than {} pages: the index format numbers pages with 32 bits", DISK_REDIRECT_MISSING);
            }
            pages_out.write_all(&start.to_le_bytes())?;
            pages_out.write_all(&span.to_le_bytes())?;
            pages_out.write_all(&DISK_NOT_REDIRECT.to_le_bytes())?;
            titles.push((title_bytes.len() as u64, title.len() as u32, page_no as u32));
            title_bytes.extend_from_slice(title.as_bytes());
            if let Some(r) = redirect {
                redirects.push((page_no, r));
            }
            page_no += 1;
            if page_no.is_multiple_of(4096) {
                bar.set_position(abs);
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
    bar.set_position(size);
    bar.set_message(format!("{page_no} pages read; sorting titles"));
    // fst wants keys in byte order; equal titles keep the first page.
    let key = |t: &(u64, u32, u32)| &title_bytes[t.0 as usize..t.0 as usize + t.1 as usize];
    titles.sort_by(|a, b| key(a).cmp(key(b)).then(a.2.cmp(&b.2)));
    let mut builder = fst::MapBuilder::new(BufWriter::new(File::create(out.join("titles.fst"))?))?;
    let mut last: Option<&[u8]> = None;
    let (mut distinct, mut dups) = (0u64, 0u64);
    for t in &titles {
        let k = key(t);
        if last == Some(k) {
            dups += 1;
            continue;
        }
        builder.insert(k, u64::from(t.2))?;
        last = Some(k);
        distinct += 1;
    }
    builder.finish()?;
    drop(titles);
    drop(title_bytes);
    // Resolve redirect targets against the finished map.
    let fst_file = MappedFile::open(&out.join("titles.fst"))?;
    let map = fst::Map::new(fst_file.bytes()).context("reading back titles.fst")?;
    let pages = fs::OpenOptions::new().write(true).open(out.join("pages.bin"))?;
    let mut tsv = BufWriter::new(File::create(out.join("redirects.tsv"))?);
    let mut missing = 0u64;
    for (page, target) in &redirects {
        let to = match lookup(&map, target) {
            Some(p) => p as u32,
            None => {
                missing += 1;
                DISK_REDIRECT_MISSING
            }
        };
        pages.write_at(&to.to_le_bytes(), page * RECORD as u64 + 12)?;
        writeln!(tsv, "{page}\t{target}")?;
    }
    tsv.flush()?;
    let stats = BuildStats {
        pages: page_no,
        titles: distinct,
        redirects: redirects.len() as u64,
        redirects_missing: missing,
        duplicate_titles: dups,
        bytes: size,
    };
    let abs = fs::canonicalize(xml)?;
    let meta = serde_json::json!({
        "format": FORMAT,
        "xml": abs,
        "xml_bytes": size,
        "pages": stats.pages,
        "titles": stats.titles,
        "redirects": stats.redirects,
        "redirects_missing": stats.redirects_missing,
        "duplicate_titles": stats.duplicate_titles,
        "build_seconds": started.elapsed().as_secs_f64(),
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

/// One page's place in the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRef {
    /// Page number.
    pub page: u64,
    /// Offset of `<page>`'s `<`.
    pub start: u64,
    /// Offset of `</page>`'s final `>` (inclusive).
    pub end: u64,
    /// Where it redirects to: a page number, [`NOT_REDIRECT`] or [`REDIRECT_MISSING`].
    pub redirect: u64,
}

/// A built index, mapped, with its dump.
pub struct WikiIndex {
    titles: fst::Map<&'static [u8]>,
    pages: &'static [u8],
    /// The dump, mapped.
    pub xml: &'static MappedFile,
    /// The index directory.
    pub dir: PathBuf,
}

impl WikiIndex {
    /// Maps the index in `dir` and the dump it names. The mappings live as long as the
    /// process (a mounted app is never unmounted).
    pub fn open(dir: &Path) -> Result<WikiIndex> {
        let meta: serde_json::Value = serde_json::from_slice(&fs::read(dir.join("meta.json")).with_context(|| {
            format!("{} is not a wiki index (no meta.json; build it with `px-appliance wiki-index`)", dir.display())
        })?)?;
        if meta["format"] != FORMAT {
            bail!("{}: index format {} (this build reads {FORMAT}); rebuild it", dir.display(), meta["format"]);
        }
        let xml_path = PathBuf::from(meta["xml"].as_str().context("meta.json: no xml path")?);
        // Lookups touch scattered pages: no read-ahead or fault-around on these maps.
        let leak = |p: &Path| -> Result<&'static MappedFile> {
            let m = MappedFile::open(p).with_context(|| format!("mapping {}", p.display()))?;
            m.advise_random();
            Ok(Box::leak(Box::new(m)))
        };
        let xml = leak(&xml_path)?;
        if Some(xml.len() as u64) != meta["xml_bytes"].as_u64() {
            bail!(
                "{} changed since the index was built ({} bytes, index says {}); rebuild the index",
                xml_path.display(),
                xml.len(),
                meta["xml_bytes"]
            );
        }
        let titles = fst::Map::new(leak(&dir.join("titles.fst"))?.bytes()).context("titles.fst is corrupt")?;
        let pages = leak(&dir.join("pages.bin"))?.bytes();
        if pages.len() % RECORD != 0 {
            bail!("pages.bin is corrupt (length {} is not a multiple of {RECORD})", pages.len());
        }
        Ok(WikiIndex { titles, pages, xml, dir: dir.to_path_buf() })
    }

    /// Number of pages.
    pub fn pages(&self) -> u64 {
        (self.pages.len() / RECORD) as u64
    }

    /// Page `page`'s place.
    pub fn page(&self, page: u64) -> Option<PageRef> {
        let i = usize::try_from(page).ok()?.checked_mul(RECORD)?;
        let r = self.pages.get(i..i + RECORD)?;
        let start = u64::from_le_bytes(r[..8].try_into().expect("8 bytes"));
        let span = u32::from_le_bytes(r[8..12].try_into().expect("4 bytes"));
        let redirect = match u32::from_le_bytes(r[12..16].try_into().expect("4 bytes")) {
            DISK_NOT_REDIRECT => NOT_REDIRECT,
            DISK_REDIRECT_MISSING => REDIRECT_MISSING,
            p => u64::from(p),
        };
        Some(PageRef { page, start, end: start + u64::from(span), redirect })
    }

    /// The page titled `title` (see [`lookup`] for the spellings tried).
    pub fn find(&self, title: &str) -> Option<PageRef> {
        self.page(lookup(&self.titles, title)?)
    }

    /// Titles starting with `prefix`, in byte order, at most `limit`: `f(title, page)`.
    pub fn prefixed(&self, prefix: &str, limit: usize, mut f: impl FnMut(&str, PageRef)) {
        let mut stream = self.titles.range().ge(prefix).into_stream();
        let mut n = 0;
        while let Some((k, v)) = stream.next() {
            if n == limit || !k.starts_with(prefix.as_bytes()) {
                break;
            }
            if let (Ok(title), Some(p)) = (std::str::from_utf8(k), self.page(v)) {
                f(title, p);
                n += 1;
            }
        }
    }

    /// The page's XML bytes.
    pub fn xml_of(&self, p: &PageRef) -> &'static [u8] {
        let xml: &'static [u8] = self.xml.bytes();
        let end = (p.end as usize + 1).min(xml.len());
        &xml[(p.start as usize).min(end)..end]
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
        let xml = idx.xml_of(&z);
        assert!(xml.starts_with(b"<page>") && xml.ends_with(b"</page>"), "{}", String::from_utf8_lossy(xml));
        assert_eq!(&text.as_bytes()[z.start as usize..=z.end as usize], xml);
        assert_eq!(idx.find("zebra").unwrap().page, z.page, "first letter capitalised");
        assert!(idx.find("AT&T").is_some());
        let a = idx.find("Anarchy").unwrap();
        assert_eq!(idx.page(a.redirect).unwrap().page, idx.find("Anarchism").unwrap().page);
        assert_eq!(idx.find("Lost").unwrap().redirect, REDIRECT_MISSING);
        assert!(idx.find("Nope").is_none());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_compressed_utf16_and_foreign_input() {
        let dir = std::env::temp_dir().join(format!("px-wiki-bad-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let cases: [(&str, Vec<u8>, &str); 4] = [
            ("a.xml.bz2", b"BZh91AY&SY....".to_vec(), "decompress it first"),
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
