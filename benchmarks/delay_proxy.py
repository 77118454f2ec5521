"""A TCP proxy that delays every chunk it forwards by a fixed time each way, keeping the
order within each direction: a database (or SQS) that is not on loopback.

Each direction has a reader and a sender: the reader stamps each chunk with the time it
arrived and queues it, the sender writes it out once `delay` has passed since then. So a
round trip costs 2 x delay more and the byte stream is unchanged, but the bandwidth is
not capped (chunks in flight overlap), as on a real link. Timers on an event loop are
rounded up to the millisecond: a 2 ms delay is 2-3 ms, never less.

It can also note when a byte pattern first goes upstream (`watch`): the start-up figure
sees the service's first ReceiveMessage on the wire this way, without touching the
service.

As a process of its own (so that its CPU is not the measured process's):

    python -m benchmarks.delay_proxy TARGET DELAY_MS      # prints the port, then serves

TARGET is HOST:PORT or a Unix socket path (the embedded PostgreSQL's).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from ingestor.cli.runtime import run_async

CHUNK = 65536
ROOT = Path(__file__).resolve().parents[1]


class DelayProxy:
    def __init__(self, target: str, delay: float, watch: Sequence[bytes] = ()) -> None:
        self.target = target
        self.delay = delay
        self.watch = tuple(watch)
        self.first_seen: dict[bytes, float] = {}  # pattern -> time.monotonic()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen on a free port of 127.0.0.1; return it."""
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _open_target(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.target.startswith("/"):
            return await asyncio.open_unix_connection(self.target)
        host, port = self.target.rsplit(":", 1)
        return await asyncio.open_connection(host, int(port))

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await self._open_target()
        except OSError:
            writer.close()
            return
        up = asyncio.ensure_future(self._pipe(reader, upstream_writer, watching=True))
        down = asyncio.ensure_future(self._pipe(upstream_reader, writer, watching=False))
        await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
        for end in (writer, upstream_writer):
            end.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, watching: bool
    ) -> None:
        chunks: deque[tuple[float, bytes]] = deque()
        ready = asyncio.Event()
        sender = asyncio.ensure_future(self._send(chunks, ready, writer))
        tail = b""  # a pattern may straddle two chunks
        try:
            while data := await reader.read(CHUNK):
                now = time.monotonic()
                if watching and self.watch:
                    self._look(tail + data, now)
                    tail = data[-64:]
                chunks.append((now + self.delay, data))
                ready.set()
            chunks.append((time.monotonic() + self.delay, b""))  # end of stream, in order
            ready.set()
            await sender
        finally:
            sender.cancel()

    def _look(self, data: bytes, now: float) -> None:
        for pattern in self.watch:
            if pattern not in self.first_seen and pattern in data:
                self.first_seen[pattern] = now

    async def _send(
        self, chunks: deque[tuple[float, bytes]], ready: asyncio.Event, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            while not chunks:
                ready.clear()
                await ready.wait()
            due, data = chunks.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()


def dsn_target(dsn: str) -> tuple[str, str]:
    """(what the proxy connects to, the DSN with the proxy's port as `{port}`): the Unix
    socket of `postgresql://user:@/db?host=/dir` (the embedded server's), or host:port."""
    parts = urllib.parse.urlsplit(dsn)
    query = urllib.parse.parse_qs(parts.query)
    port = parts.port or 5432
    if "host" in query:
        target = f"{query.pop('host')[0]}/.s.PGSQL.{port}"
    else:
        target = f"{parts.hostname}:{port}"
    user = parts.username or ""
    password = f":{parts.password}" if parts.password else ""
    rest = urllib.parse.urlencode(query, doseq=True)
    proxied = f"{parts.scheme}://{user}{password}@127.0.0.1:{{port}}{parts.path}"
    return target, proxied + (f"?{rest}" if rest else "")


@contextlib.asynccontextmanager
async def proxied_dsn(dsn: str, delay_ms: float) -> AsyncIterator[str]:
    """`dsn` reached through the proxy in a process of its own, adding `delay_ms` each
    way; the proxy is stopped (by its process id) afterwards."""
    target, template = dsn_target(dsn)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.delay_proxy", target, str(delay_ms),
        stdout=asyncio.subprocess.PIPE, cwd=str(ROOT),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        port = int((await process.stdout.readline()).decode())
        yield template.format(port=port)
    finally:
        process.terminate()
        await process.wait()


async def serve(target: str, delay: float) -> None:
    proxy = DelayProxy(target, delay)
    port = await proxy.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    await asyncio.Event().wait()  # until killed


def main(argv: list[str]) -> int:
    target, delay_ms = argv
    run_async(serve(target, float(delay_ms) / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
