#!/usr/bin/env python3
"""Makes a multistream dump out of a plain MediaWiki export, in the layout Wikipedia
publishes (pages-articles-multistream.xml.bz2 and its -index.txt.bz2):

  stream 0      everything before the first <page> (the <siteinfo> header)
  stream 1..n   100 pages each (from the start of the line holding <page>)
  last stream   what follows the last </page> (the closing </mediawiki>)

Decompressed one after the other, the streams give the export byte for byte. The index
has a line per page, "offset:id:title", offset being the byte in the .bz2 where the
page's stream starts.

Usage: scripts/wiki-multistream.py EXPORT.xml OUT.xml.bz2 [PAGES_PER_STREAM]
  (writes OUT.xml.bz2 and OUT-index.txt.bz2, OUT being the name without .xml.bz2)
"""
import bz2
import html
import re
import sys


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    per = int(sys.argv[3]) if len(sys.argv) == 4 else 100
    data = open(src, "rb").read()
    # Page starts: the beginning of the line holding each <page>.
    starts = [data.rfind(b"\n", 0, m.start()) + 1 for m in re.finditer(rb"<page>", data)]
    if not starts:
        sys.exit(f"{src}: no <page> elements")
    last_end = data.rfind(b"</page>") + len(b"</page>")
    last_end = data.index(b"\n", last_end) + 1 if b"\n" in data[last_end:] else last_end
    cuts = [0] + starts[::per] + [last_end, len(data)]
    index_lines = []
    offset = 0
    with open(out, "wb") as f:
        for a, b in zip(cuts, cuts[1:]):
            chunk = data[a:b]
            for m in re.finditer(rb"<page>.*?<title>(.*?)</title>.*?<id>(\d+)</id>", chunk, re.S):
                title = html.unescape(m.group(1).decode("utf-8"))
                index_lines.append(f"{offset}:{int(m.group(2))}:{title}\n")
            z = bz2.compress(chunk, 9)
            f.write(z)
            offset += len(z)
    stem = out[: -len(".xml.bz2")] if out.endswith(".xml.bz2") else out
    with open(stem + "-index.txt.bz2", "wb") as f:
        f.write(bz2.compress("".join(index_lines).encode("utf-8"), 9))
    print(f"{out}: {len(cuts) - 1} streams, {len(starts)} pages, {offset} bytes (from {len(data)})")


if __name__ == "__main__":
    main()
