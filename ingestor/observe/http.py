"""The HTTP endpoints for the platform: /metrics (Prometheus), /healthz (liveness) and
/readyz (readiness), served on the service's own event loop.

/healthz answers 200 as long as the event loop runs: a loop that is blocked or gone does
not answer at all, which is what a liveness probe must notice. /readyz answers 200 or 503
with a short reason (a state or stage name, never data).

The server is asyncio's own streams, not aiohttp's: importing aiohttp's server was
about a third of the service's start-up, for three fixed answers to GET. What a port
that probes and scrapers reach must still hold, it holds: a request head over 8 KiB is
refused (431), one not complete within 10 s is dropped, as is a client that does not
take its answer within 10 s; a request line that is not HTTP/1.0 or 1.1 is refused
(400), a method other than GET or HEAD is refused (405), a handler that fails answers
500 and the server goes on; at most 64 connections at once (the descriptors are the
service's too: more are closed as they come); each answer is whole, with its length,
and the connection is closed after it; at the end, connections still open are closed.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ingestor.errors import ConfigError
from ingestor.observe.readiness import Readiness
from ingestor.settings import env_name

log = logging.getLogger("ingestor")
# Errors that say the port is the problem (taken, or privileged); others blame the host.
_PORT_ERRORS = frozenset({errno.EADDRINUSE, errno.EACCES})
# A scraper's connection must not hold up the service's exit.
_SHUTDOWN_GRACE = 1.0
HEAD_LIMIT = 8192  # bytes of a request line and headers
HEAD_TIMEOUT = 10.0  # seconds for a client to send them
SEND_TIMEOUT = 10.0  # seconds for a client to take the answer
MAX_CONNECTIONS = 64  # at once; more are closed as they come (descriptors are shared)
TEXT = "text/plain; charset=utf-8"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

Answer = tuple[int, str, bytes]  # status, content type, body
Routes = dict[str, Callable[[], Awaitable[Answer]]]


def build_app(registry: CollectorRegistry, readiness: Readiness) -> Routes:
    """The three endpoints, by path."""

    async def metrics() -> Answer:
        return 200, CONTENT_TYPE_LATEST, generate_latest(registry)

    async def healthz() -> Answer:
        return 200, TEXT, b"ok\n"

    async def readyz() -> Answer:
        verdict = await readiness.check()
        if verdict.ready:
            return 200, TEXT, b"ready\n"
        return 503, TEXT, f"not ready: {verdict.reason}\n".encode()

    return {"/metrics": metrics, "/healthz": healthz, "/readyz": readyz}


class _Server:
    """One answer per connection; the connections under way, to close at the end."""

    def __init__(self, routes: Routes) -> None:
        self._routes = routes
        self.connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def close(self) -> None:
        """Close the connections under way (their handlers then end as for a client gone);
        after the grace period, a handler still waiting for its answer is cancelled."""
        for writer in self.connections.values():
            writer.transport.abort()
        if self.connections:
            await asyncio.wait(list(self.connections), timeout=_SHUTDOWN_GRACE)
        left = list(self.connections)
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self.connections) >= MAX_CONNECTIONS:  # descriptors are the service's too
            writer.transport.abort()
            return
        self.connections[task] = writer
        try:
            await self._serve(reader, writer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.CancelledError):
            # The client went away, or never sent its request, or would not read the
            # answer; or the server is closing. Nothing awaits this task: it just ends.
            writer.transport.abort()
        finally:
            del self.connections[task]
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await _request_line(reader)
        too_large = _response(431, TEXT, b"request head too large\n")
        writer.transport.set_write_buffer_limits(0)  # drain() returns once all is sent
        writer.write(too_large if head is None else await self._answer(head))
        async with asyncio.timeout(SEND_TIMEOUT):  # a client that does not read
            await writer.drain()

    async def _answer(self, line: bytes) -> bytes:
        method, _, rest = line.partition(b" ")
        target, _, version = rest.partition(b" ")
        if version not in (b"HTTP/1.1", b"HTTP/1.0"):
            return _response(400, TEXT, b"bad request\n")
        route = self._routes.get(_path(target))
        if route is None:
            return _response(404, TEXT, b"not found\n")
        if method not in (b"GET", b"HEAD"):
            return _response(405, TEXT, b"GET or HEAD\n", extra="Allow: GET, HEAD\r\n")
        try:
            status, kind, body = await route()
        except Exception as error:  # a failing collector: this answer fails, not the server
            log.warning("%s failed: %s", _path(target), type(error).__name__)
            return _response(500, TEXT, b"internal error\n")
        return _response(status, kind, body, head_only=method == b"HEAD")


def _path(target: bytes) -> str:
    """The path of a request target, in origin form or absolute form, percent-decoded
    ("" for a target that is not a URL: no route has it)."""
    try:
        return unquote(urlsplit(target.decode("latin-1")).path)
    except ValueError:  # an absolute form with a broken host ("http://[::1/")
        return ""


async def _request_line(reader: asyncio.StreamReader) -> bytes | None:
    """The request line of a complete request head (lines ending in CRLF or LF); None
    for a head over the limit."""
    size, first = 0, None
    async with asyncio.timeout(HEAD_TIMEOUT):
        while True:
            line = await _line(reader)
            if line is None:
                return None
            size += len(line)
            if size > HEAD_LIMIT:
                return None
            if first is None:
                first = line
            elif line in (b"\r\n", b"\n"):
                return first.rstrip(b"\r\n")


async def _line(reader: asyncio.StreamReader) -> bytes | None:
    """One line of the head; None for one over the reader's limit."""
    try:
        line = await reader.readline()
    except ValueError:  # asyncio's way of saying the line is longer than the limit
        return None
    if not line.endswith(b"\n"):
        raise asyncio.IncompleteReadError(line, None)  # the client went before the end
    return line


def _response(
    status: int, kind: str, body: bytes, head_only: bool = False, extra: str = ""
) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    ).encode("latin-1")
    return head if head_only else head + body


@asynccontextmanager
async def serving(app: Routes, host: str, port: int) -> AsyncIterator[None]:
    """Serve `app` on host:port while inside. A port that cannot be bound is a bad
    setting (ConfigError naming the variable), not a runtime failure."""
    handler = _Server(app)
    server = await _listen(handler, host, port)
    try:
        log.info(
            "metrics on http://%s:%d/metrics, health on /healthz and /readyz",
            host,
            port,
            extra={"event": "http_listening", "port": port},
        )
        yield
    finally:
        server.close()
        await handler.close()
        await server.wait_closed()


async def _listen(handler: _Server, host: str, port: int) -> asyncio.Server:
    try:
        return await asyncio.start_server(handler.handle, host, port, limit=HEAD_LIMIT)
    except OSError as error:
        reason = _reason(error)
        if error.errno in _PORT_ERRORS:
            raise ConfigError(
                env_name("metrics_port"), f"cannot listen on port {port}: {reason}"
            ) from None
        raise ConfigError(env_name("metrics_host"), f"cannot listen on it: {reason}") from None


def _reason(error: OSError) -> str:
    """The error in a few words: asyncio rewrites a bind error's text with the address, so
    the errno's own text; a name that does not resolve keeps the resolver's."""
    if isinstance(error, socket.gaierror) or not error.errno:
        return error.strerror or type(error).__name__
    return os.strerror(error.errno)
