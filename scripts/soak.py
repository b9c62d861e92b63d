#!/usr/bin/env python3
"""Mixed client traffic for scripts/soak.sh, with exact counts.

Workers, each looping until the deadline:
  keepalive  GET /json on one keep-alive connection, one at a time
  pipelined  16 GET /plaintext sent at once, 16 responses read
  large      GET /bytes/N (100 KB..2 MB), body checked byte for byte (i % 251)
  slow       GET /bytes/4000000 read 4 KiB every 20 ms for about a second, then
             closed with the body unread (abandoned)
  reset      GET /bytes/1000000, some KB read, then an RST (SO_LINGER 0) mid-body
             (abandoned)
  fresh      one request per connection (Connection: close)

Prints one JSON object: requests sent, complete responses, requests the clients
abandoned on purpose, and failures (anything else: a bad status, a broken body, a
connection the server reset or closed early, a timeout), with the first few failures.

Usage: soak.py HOST PORT SECONDS
"""

import asyncio
import json
import socket
import struct
import sys
import time

COUNTS = {"sent": 0, "ok": 0, "abandoned": 0, "failed": 0}
FAILURES = []
TIMEOUT = 30.0


def fail(what):
    COUNTS["failed"] += 1
    if len(FAILURES) < 10:
        FAILURES.append(what)


PATTERN = bytes(i % 251 for i in range(251)) * 2


def pattern_ok(body, start):
    """Bytes body, starting at offset start of a /bytes/N response, follow i % 251."""
    off = start % 251
    for i in range(0, len(body), 251):
        chunk = body[i:i + 251]
        if chunk != PATTERN[off:off + len(chunk)]:
            return False
    return True


async def read_response(reader):
    """(status, headers dict, body) of one response with Content-Length."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(n), TIMEOUT) if n else b""
    return status, headers, body


async def connect(host, port):
    return await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)


def request(path, close=False):
    extra = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: soak\r\n{extra}\r\n".encode()


async def keepalive(host, port, end):
    reader, writer = await connect(host, port)
    try:
        while time.monotonic() < end:
            writer.write(request("/json"))
            COUNTS["sent"] += 1
            status, _, body = await read_response(reader)
            if status == 200 and body.startswith(b'{"message"'):
                COUNTS["ok"] += 1
            else:
                fail(f"json: {status} {body[:60]!r}")
    finally:
        writer.close()


async def pipelined(host, port, end):
    reader, writer = await connect(host, port)
    try:
        while time.monotonic() < end:
            writer.write(request("/plaintext") * 16)
            COUNTS["sent"] += 16
            for _ in range(16):
                status, _, body = await read_response(reader)
                if status == 200 and body == b"Hello, World!":
                    COUNTS["ok"] += 1
                else:
                    fail(f"plaintext: {status} {body[:60]!r}")
    finally:
        writer.close()


async def large(host, port, end, seed):
    n = 0
    reader, writer = await connect(host, port)
    try:
        while time.monotonic() < end:
            n += 1
            size = 100_000 + (seed * 7919 + n * 104729) % 1_900_000
            writer.write(request(f"/bytes/{size}"))
            COUNTS["sent"] += 1
            status, _, body = await read_response(reader)
            if status == 200 and len(body) == size and pattern_ok(body, 0):
                COUNTS["ok"] += 1
            else:
                fail(f"bytes/{size}: {status}, {len(body)} bytes")
    finally:
        writer.close()


async def body_started(host, port, path):
    """A new connection that sent GET path and read the response head."""
    reader, writer = await connect(host, port)
    writer.write(request(path))
    COUNTS["sent"] += 1
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    return reader, writer


async def slow(host, port, end):
    while time.monotonic() < end:
        reader, writer = await body_started(host, port, "/bytes/4000000")
        for _ in range(50):
            await asyncio.wait_for(reader.read(4096), TIMEOUT)
            await asyncio.sleep(0.02)
        COUNTS["abandoned"] += 1
        writer.close()


async def reset(host, port, end):
    while time.monotonic() < end:
        reader, writer = await body_started(host, port, "/bytes/1000000")
        got = 0
        while got < 20_000:
            got += len(await asyncio.wait_for(reader.read(8192), TIMEOUT))
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        COUNTS["abandoned"] += 1
        await asyncio.sleep(0.05)


async def fresh(host, port, end):
    while time.monotonic() < end:
        reader, writer = await connect(host, port)
        writer.write(request("/json", close=True))
        COUNTS["sent"] += 1
        status, headers, _ = await read_response(reader)
        if status == 200 and headers.get("connection") == "close":
            COUNTS["ok"] += 1
        else:
            fail(f"fresh: {status} {headers}")
        rest = await asyncio.wait_for(reader.read(), TIMEOUT)
        if rest:
            fail(f"fresh: {len(rest)} bytes after a closing response")
        writer.close()


async def guarded(name, coro):
    """Runs a worker; an unexpected exception is a failure, and the worker starts again."""
    try:
        await coro
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
        fail(f"{name}: {type(e).__name__}: {e}")
        return False
    return True


async def main(host, port, secs):
    end = time.monotonic() + secs
    kinds = [("keepalive", lambda: keepalive(host, port, end))] * 8
    kinds += [("pipelined", lambda: pipelined(host, port, end))] * 2
    kinds += [("large", lambda i=i: large(host, port, end, i)) for i in range(2)]
    kinds += [("slow", lambda: slow(host, port, end)), ("reset", lambda: reset(host, port, end))]
    kinds += [("fresh", lambda: fresh(host, port, end))] * 2

    async def run(name, make):
        while time.monotonic() < end:
            await guarded(name, make())

    await asyncio.gather(*(run(n, m) for n, m in kinds))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
    print(json.dumps({**COUNTS, "failures": FAILURES}))
