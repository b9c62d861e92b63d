#!/usr/bin/env python3
"""Writes a synthetic MediaWiki export-0.10 dump with N pages and realistic titles, for
the Parallelopedia scale bench (the real dump in data/ has 206 pages).

Titles are built like English Wikipedia's: one to four capitalised or lower-case words
from a 4,000-word vocabulary, sometimes a disambiguation in parentheses ("Ada Lovelace
(film)"), a year, or a comma-qualified place; each title is unique (a counter-derived
suffix resolves collisions the way Wikipedia disambiguates). About 40 % of the pages are
redirects to an earlier page (real dumps: ~50 %); the others carry a short body of
wikitext with XML-escaped markup. Deterministic for a given seed.
Also writes OUT.xml.titles: every (N/200000)-th title, spread over the file (load mixes).
Usage: wiki-synth.py N OUT.xml [--seed S] [--body-bytes B]"""
import argparse, random

SYLL = ["an", "ar", "chi", "sm", "bel", "gra", "vi", "to", "mon", "der", "li", "ca", "ro", "ma", "ne", "sa", "ter",
        "qu", "is", "ol", "ven", "dor", "ka", "mi", "lo", "sta", "pra", "hel", "zu", "fi", "on", "ex", "tri", "pol"]
KINDS = ["film", "album", "band", "novel", "river", "mathematics", "footballer", "song", "ship", "play", "company",
         "disambiguation", "video game", "genus", "politician", "TV series"]
PLACES = ["Ohio", "Kent", "Bavaria", "Ontario", "Queensland", "Texas", "Lombardy", "Norway", "Kerala", "Chile"]


def vocab(rng, n=4000):
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLL) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--body-bytes", type=int, default=160)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    words = vocab(rng)
    seen = set()
    titles = []
    step = max(1, a.n // 200_000)
    sample = open(a.out + ".titles", "w", encoding="utf-8")   # every step-th title, for load mixes
    with open(a.out, "w", encoding="utf-8", newline="\n", buffering=1 << 22) as f:
        f.write('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">\n'
                '  <siteinfo>\n    <sitename>Synthetic</sitename>\n    <case>first-letter</case>\n  </siteinfo>\n')
        for i in range(a.n):
            k = rng.random()
            w = [rng.choice(words) for _ in range(rng.choice((1, 2, 2, 2, 3, 3, 4)))]
            w[0] = w[0].capitalize()
            w[1:] = [x.capitalize() if rng.random() < 0.4 else x for x in w[1:]]
            t = " ".join(w)
            if k < 0.15:
                t += f" ({rng.choice(KINDS)})"
            elif k < 0.22:
                t += f", {rng.choice(PLACES)}"
            elif k < 0.27:
                t = f"{rng.randint(1000, 2025)} in {t}"
            if t in seen:
                t = f"{t} ({i})"
            seen.add(t)
            if i % step == 0:
                sample.write(t + "\n")
            f.write(f"  <page>\n    <title>{esc(t)}</title>\n    <ns>0</ns>\n    <id>{i + 1}</id>\n")
            if titles and rng.random() < 0.4:
                target = rng.choice(titles)   # an earlier page
                f.write(f'    <redirect title="{esc(target)}" />\n')
                body = esc(f"#REDIRECT [[{target}]]")
            else:
                body = f"'''{esc(t)}''' is a {rng.choice(KINDS)}.&lt;ref&gt;{rng.randint(1, 99)}&lt;/ref&gt; " + " ".join(
                    rng.choice(words) for _ in range(max(1, a.body_bytes // 8)))
            if len(titles) < 1_000_000:
                titles.append(t)
            f.write(f'    <revision>\n      <id>{i + 7}</id>\n      <text xml:space="preserve">{body}</text>\n'
                    "    </revision>\n  </page>\n")
        f.write("</mediawiki>\n")


if __name__ == "__main__":
    main()
