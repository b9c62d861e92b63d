"""One keep-alive request on an open asyncio connection, for the scripts' own clients
(conn-scale.py, conn-hold.py). Not a script by itself."""
import asyncio


async def ask(rw, req, timeout, body=None):
    """Sends `req` on (reader, writer) `rw` and reads one response; True when it is a 200
    (and its body equals `body`, when given). Any error is False."""
    return (await ask_why(rw, req, timeout, body)) is None


async def ask_why(rw, req, timeout, body=None):
    """As ask(), but returns None on success and else why: the status line and the start
    of the body, "body differs", or the exception's name."""
    r, w = rw
    try:
        w.write(req)
        await w.drain()
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), timeout)
        length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
        got = await asyncio.wait_for(r.readexactly(length), timeout)
        if not head.startswith(b"HTTP/1.1 200"):
            return (head.split(b"\r\n")[0] + b" " + got[:60]).decode(errors="replace").strip()
        return None if body is None or got == body else "body differs"
    except Exception as e:
        return type(e).__name__
