#!/usr/bin/env python3
"""Independent computation of Parallelopedia's page offsets with Python's expat parser
(not our scanner): for every <page> of a MediaWiki dump, its title, the byte offset of
the '<' of <page>, the offset of the final '>' of </page> (inclusive), and its redirect
target. Prints a JSON list of [title, start, end, redirect_or_null]. The tests compare
the appliance's index against it.
Usage: wiki-offsets.py DUMP.xml"""
import json, sys
import xml.parsers.expat


def offsets(path):
    p = xml.parsers.expat.ParserCreate()
    pages, cur, in_title, depth = [], None, False, 0

    def start(name, attrs):
        nonlocal cur, in_title, depth
        depth += 1
        if name == "page":
            cur = {"title": "", "start": p.CurrentByteIndex, "redirect": None}
        elif name == "title" and cur is not None:
            in_title = True
        elif name == "redirect" and cur is not None:
            cur["redirect"] = attrs.get("title")

    def end(name):
        nonlocal cur, in_title, depth
        depth -= 1
        if name == "title":
            in_title = False
        elif name == "page":
            # CurrentByteIndex is at the '<' of '</page>'; the end is its '>'.
            pages.append([cur["title"], cur["start"], p.CurrentByteIndex + len("</page>") - 1, cur["redirect"]])
            cur = None

    def chars(data):
        if in_title and cur is not None:
            cur["title"] += data

    p.StartElementHandler, p.EndElementHandler, p.CharacterDataHandler = start, end, chars
    with open(path, "rb") as f:
        p.ParseFile(f)
    return pages


if __name__ == "__main__":
    json.dump(offsets(sys.argv[1]), sys.stdout, ensure_ascii=False)
