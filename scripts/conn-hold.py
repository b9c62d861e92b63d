#!/usr/bin/env python3
"""Open N keep-alive connections to HOST:PORT and hold them idle (the connection-scaling
run of scripts/bench.sh). Prints one JSON line {"held": K, "failed": F} once all connects
are done, then waits; on a line "probe" on stdin, sends one request on a sample of the
held connections and prints {"probed": P, "answered": A}; on EOF, closes them and exits.
Above 15000 connections it fans out to child processes (descriptor limits).
Testbed and loopback addresses only.
Usage: conn-hold.py HOST PORT N [PATH]"""
import asyncio, json, os, random, resource, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from http_ask import ask  # noqa: E402

async def main(host, port, n, path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(n + 1024, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    sem = asyncio.Semaphore(256)
    failures = 0

    async def connect():
        nonlocal failures
        async with sem:
            # A server that cannot hold more (descriptor limit, a cap) stops accepting:
            # after 500 failed connects, give up on the rest rather than wait for each.
            for attempt in range(2):
                if failures >= 500:
                    return None
                try:
                    return await asyncio.wait_for(asyncio.open_connection(host, port), 3)
                except (OSError, asyncio.TimeoutError):
                    await asyncio.sleep(0.05 * (attempt + 1))
            failures += 1
            return None

    conns = [c for c in await asyncio.gather(*(connect() for _ in range(n))) if c]
    print(json.dumps({"held": len(conns), "failed": n - len(conns)}), flush=True)
    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()

    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        if line.strip() == "probe":
            sample = random.Random(1).sample(conns, min(200, len(conns)))
            answered = sum(await asyncio.gather(*(ask(c, req, 10) for c in sample)))
            print(json.dumps({"probed": len(sample), "answered": answered}), flush=True)
    for _, w in conns:
        w.close()

PER_PROCESS = 15000   # under the 20000-descriptor hard limit some sandboxes impose


def fan_out(host, port, n, path):
    """More connections than one process may hold: children hold shares, we sum."""
    import subprocess
    shares = [PER_PROCESS] * (n // PER_PROCESS) + ([n % PER_PROCESS] if n % PER_PROCESS else [])
    kids = [subprocess.Popen([sys.executable, __file__, host, str(port), str(k), path],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for k in shares]
    held = [json.loads(k.stdout.readline()) for k in kids]
    print(json.dumps({"held": sum(h["held"] for h in held), "failed": sum(h["failed"] for h in held)}), flush=True)
    for line in sys.stdin:
        if line.strip() == "probe":
            answers = []
            for k in kids:
                k.stdin.write("probe\n")
                k.stdin.flush()
                answers.append(json.loads(k.stdout.readline()))
            print(json.dumps({"probed": sum(a["probed"] for a in answers),
                              "answered": sum(a["answered"] for a in answers)}), flush=True)
    for k in kids:
        k.stdin.close()
        k.wait()


if __name__ == "__main__":
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    path = sys.argv[4] if len(sys.argv) > 4 else "/plaintext"
    if n > PER_PROCESS:
        fan_out(host, port, n, path)
    else:
        asyncio.run(main(host, port, n, path))
