"""Live push to the browsers: server-sent events fed from the bus.

The bus calls listeners on the publisher's thread (the DICOM association, the serial reader);
:meth:`Hub.publish_threadsafe` hands the message to the console's event loop with
``call_soon_threadsafe``, which fans it out to one bounded queue per connected browser.  A browser
that falls behind loses its oldest messages, never the newest; on every (re)connection the page
reloads ``/api/state``, so a lost message costs nothing but a moment.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

HEARTBEAT_S = 5.0  # a named event the page watches: silent for 2.5 times this, the agent is taken for hung
RETRY_MS = 1000


def sse_message(seq: int, event: str, data: Any) -> bytes:
    """One event in the ``text/event-stream`` format (data is JSON on a single line)."""
    body = json.dumps(data, separators=(",", ":"), default=str)
    return f"id: {seq}\nevent: {event}\ndata: {body}\n\n".encode()


class Hub:
    """The connected browsers of one console. Use only on the console's event loop, except
    :meth:`publish_threadsafe`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int = 200):
        self.loop = loop
        self.maxsize = maxsize
        self.clients: set[asyncio.Queue[bytes | None]] = set()
        self.seq = 0

    def publish(self, event: str, data: Any) -> None:
        self.seq += 1
        message = sse_message(self.seq, event, data)
        for q in self.clients:
            if q.full():
                q.get_nowait()
            q.put_nowait(message)

    def publish_threadsafe(self, event: str, data: Any) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.publish, event, data)

    def close(self) -> None:
        """Tell every stream to end (at shutdown)."""
        for q in self.clients:
            if q.full():
                q.get_nowait()
            q.put_nowait(None)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """The ``/api/events`` handler: holds the response open and writes events as they come."""
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        await response.prepare(request)
        q: asyncio.Queue[bytes | None] = asyncio.Queue(self.maxsize)
        self.clients.add(q)
        try:
            await response.write(f"retry: {RETRY_MS}\n: connected\n\n".encode())
            while True:
                try:
                    message = await asyncio.wait_for(q.get(), HEARTBEAT_S)
                except asyncio.TimeoutError:
                    message = b"event: ping\ndata: {}\n\n"  # (a comment would never reach the page's script)
                if message is None:
                    break
                await response.write(message)
        except (ConnectionResetError, ConnectionError):
            pass  # the browser went away; it reconnects by itself
        finally:
            self.clients.discard(q)
        return response
