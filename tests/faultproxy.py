"""A fault-injecting HTTP proxy between the service and an SQS endpoint.

It forwards SQS's JSON-protocol requests to the real (emulated) server and breaks the
answers on demand, the way a network, a proxy or SQS itself breaks them in production:
HTTP 500 bursts, bodies cut short without a Content-Length, 429 with an HTML body, added
latency, and batch calls whose entries partly fail. Each fault applies to the calls it
names (by `X-Amz-Target`) with a probability, while it is on; the proxy counts what it did,
so a test can tell that its fault really happened.

It speaks plain HTTP/1.1 over asyncio streams (not an HTTP framework) so that it can do
what a framework would not: close a connection in the middle of a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import orjson

# Headers that belong to one hop, not to the message (RFC 9110 section 7.6.1).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "te", "trailer"}
)
HTML_429 = b"<html><body><h1>429 Too Many Requests</h1>slow down</body></html>"
HTML_503 = b"<html><body><h1>503 Service Unavailable</h1></body></html>"


@dataclass
class Fault:
    """What to do to a share (`rate`) of the calls whose target is in `targets` (all calls
    when empty).

    kind:
    - "status": answer `status` with `body` (and `headers`), without forwarding the request
      (cut short, as "cut" does, when `cut` is set);
    - "status_after": forward (SQS does the work), then answer `status` instead;
    - "cut": forward, then send the status line and headers without Content-Length and
      only the first half of the body, and close the connection;
    - "delay": forward, then hold the answer `delay` seconds;
    - "partial": (batch calls) forward only some entries and report the others as failed
      on SQS's side (`SenderFault` false), as SQS does under partial failure.
    """

    kind: str
    rate: float = 1.0
    targets: frozenset[str] = frozenset()
    status: int = 500
    body: bytes = b'{"__type": "InternalError", "message": "We encountered an internal error."}'
    content_type: str = "application/x-amz-json-1.0"
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    cut: bool = False

    def applies_to(self, target: str) -> bool:
        return not self.targets or target in self.targets


@dataclass
class FaultProxy:
    upstream: str
    seed: int = 7
    faults: list[Fault] = field(default_factory=list)
    done: Counter[str] = field(default_factory=Counter)  # "<kind> <target>" -> times
    calls: Counter[str] = field(default_factory=Counter)  # target -> requests seen
    user_agents: set[str] = field(default_factory=set)
    on_request: Callable[[str, bytes], None] | None = None  # sees (target, body) of each call
    url: str = ""

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._connections: set[asyncio.Task[None]] = set()

    def inject(self, *faults: Fault) -> None:
        self.faults = list(faults)

    def clear(self) -> None:
        self.faults = []

    @contextlib.asynccontextmanager
    async def running(
        self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"
    ) -> AsyncIterator[FaultProxy]:
        """Serve on a free loopback port (over TLS with `tls`, its URL naming `host`)."""
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        port = server.sockets[0].getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://{host}:{port}"
        try:
            async with server:
                yield self
        finally:
            server.close()
            for task in self._connections:  # connections still open: nothing outlives a test
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._http.close()

    def _pick(self, target: str) -> Fault | None:
        for fault in self.faults:
            if fault.applies_to(target) and self._random.random() < fault.rate:
                self.done[f"{fault.kind} {target}"] += 1
                return fault
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)
        try:
            while request := await _read_request(reader):
                if not await self._answer(request, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, aiohttp.ClientError):
            pass
        except asyncio.CancelledError:
            pass  # the proxy is closing: end quietly (asyncio's stream callback would log it)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must close."""
        target = request.headers.get("x-amz-target", "").removeprefix("AmazonSQS.")
        self.calls[target] += 1
        self.user_agents.add(request.headers.get("user-agent", ""))
        if self.on_request is not None:
            self.on_request(target, request.body)
        fault = self._pick(target)
        if fault is not None and fault.kind == "status":
            return await _canned(writer, fault)
        if fault is not None and fault.kind == "partial":
            status, headers, body = await self._partial(request)
        else:
            status, headers, body = await self._forward(request, request.body)
        if fault is None:
            _write(writer, status, headers, body)
        elif fault.kind == "status_after":
            _write(writer, fault.status, {"Content-Type": fault.content_type}, fault.body)
        elif fault.kind == "delay":
            await asyncio.sleep(fault.delay)
            _write(writer, status, headers, body)
        elif fault.kind == "cut":
            _write(
                writer, status, {**headers, "Connection": "close"}, body[: len(body) // 2], cut=True
            )
            await writer.drain()
            return False
        else:
            _write(writer, status, headers, body)
        await writer.drain()
        return True

    async def _forward(self, request: Request, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in request.headers.items() if k not in _HOP_BY_HOP}
        async with self._http.post(self.upstream + request.path, data=body, headers=headers) as r:
            answer = await r.read()
            kept = {k: v for k, v in r.headers.items() if k.lower() not in _HOP_BY_HOP}
            return r.status, kept, answer

    async def _partial(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        """Forward half of a batch call's entries; report the others as failed on SQS's
        side, merged into SQS's own answer."""
        payload = orjson.loads(request.body)
        entries = payload.get("Entries", [])
        kept, failed = entries[::2], entries[1::2]
        status, headers, body = await self._forward(
            request, orjson.dumps({**payload, "Entries": kept})
        )
        if status != 200 or not failed:
            return status, headers, body
        answer = orjson.loads(body)
        answer.setdefault("Failed", []).extend(
            {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "try again"}
            for e in failed
        )
        return status, headers, orjson.dumps(answer)


async def _canned(writer: asyncio.StreamWriter, fault: Fault) -> bool:
    headers = {"Content-Type": fault.content_type, **fault.headers}
    if not fault.cut:
        _write(writer, fault.status, headers, fault.body)
        await writer.drain()
        return True
    half = fault.body[: len(fault.body) // 2]
    _write(writer, fault.status, {**headers, "Connection": "close"}, half, cut=True)
    await writer.drain()
    return False


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    line = await reader.readline()
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(method, path, headers, body)


def _write(
    writer: asyncio.StreamWriter,
    status: int,
    headers: dict[str, str],
    body: bytes,
    *,
    cut: bool = False,
) -> None:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if not cut:  # a cut body has no length: the client reads until the connection closes
        lines.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


_REASONS = {200: "OK", 400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}  # fmt: skip


@dataclass
class ConnectProxy:
    """An HTTP CONNECT proxy on loopback (what HTTPS_PROXY points at), which tunnels to
    127.0.0.1 whatever host is asked for: a name that resolves nowhere else is reachable
    only through it. Records every request: the target of a CONNECT, the method of any
    other (which it does not serve)."""

    targets: list[str] = field(default_factory=list)
    url: str = ""

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ConnectProxy]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with server:
            yield self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await _read_request(reader)
        if request is None:
            writer.close()
            return
        self.targets.append(request.path if request.method == "CONNECT" else request.method)
        if request.method != "CONNECT":  # plain HTTP through the proxy: not served
            writer.close()
            return
        port = int(request.path.rsplit(":", 1)[1])
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65_536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
