#!/usr/bin/env python3
"""Open N concurrent keep-alive connections to HOST:PORT, then send one request on
every one of them while all are open, and check every answer (status 200, the body).
Prints one JSON line: opened, answered, errors, seconds (all of it) and request_seconds
(from the first request sent to the last answer). A small client of our own for the
scale tests; testbed and loopback addresses only.
Usage: conn-scale.py HOST PORT N [PATH [BODY_FILE]]  (BODY_FILE: the expected body;
default "Hello, World!")"""
import asyncio, json, os, resource, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import collections  # noqa: E402
from http_ask import ask_why  # noqa: E402

async def main(host, port, n, path, body):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    t0 = time.monotonic()
    sem = asyncio.Semaphore(512)            # connect in waves, all stay open

    async def connect():
        async with sem:
            for attempt in range(5):
                try:
                    return await asyncio.wait_for(asyncio.open_connection(host, port), 10)
                except (OSError, asyncio.TimeoutError):
                    await asyncio.sleep(0.05 * (attempt + 1))
            return None

    conns = await asyncio.gather(*(connect() for _ in range(n)))
    opened = [c for c in conns if c]
    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()

    t1 = time.monotonic()
    whys = await asyncio.gather(*(ask_why(c, req, 30, body) for c in opened))
    results = [w is None for w in whys]
    failures = dict(collections.Counter(w for w in whys if w is not None))
    t2 = time.monotonic()
    for _, w in opened:
        w.close()
    print(json.dumps({"opened": len(opened), "answered": sum(results),
                      "errors": n - sum(results), "seconds": round(t2 - t0, 2),
                      "request_seconds": round(t2 - t1, 3), "failures": failures}))

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
path = sys.argv[4] if len(sys.argv) > 4 else "/plaintext"
body = open(sys.argv[5], "rb").read() if len(sys.argv) > 5 else b"Hello, World!"
asyncio.run(main(host, port, n, path, body))
