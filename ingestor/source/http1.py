"""A lean HTTP/1.1 client for the direct SQS client (`sqs_wire.py`): a bounded pool of
keep-alive connections, one POST at a time on each, every answer read whole.

Why: aiohttp's request path (the session's request, the request and response objects,
header multidicts, timers, a stream reader and, on Python 3.11, a task per request to
write the body) cost about 70 µs of CPU a request, half of the service's CPU on the SQS
side; a protocol that writes one buffer and parses one answer costs a fraction of it.
The direct client needs little of what aiohttp offers: one method, one endpoint, small
bodies, no cookies, redirects or compression.

What it guarantees:
- A request goes out as one write: the request line, Host, the caller's headers,
  Content-Length, then the body. A header with a line break in it is refused.
- An answer is read to its end (Content-Length, chunked, or until the connection closes)
  or is an error: a body cut short, a malformed status line or header, a header over
  `head_limit` bytes or a body over `body_limit` bytes raise `HttpError`.
- No request is ever sent twice: an idle connection the server closed is never used
  (it is seen closed before it is picked); one that fails under a request is an error for
  the caller, who knows whether the call may be repeated (SQS's batch calls are not
  idempotent in what they report).
- A connection is reused only when its answer was read whole, the server keeps it alive
  (HTTP/1.1 without `Connection: close`, or HTTP/1.0 with keep-alive) and it sent nothing
  more; idle connections are reused last-in first-out and closed after `idle_timeout`.
- Timeouts: `connect_timeout` for the connection (proxy tunnel and TLS included), and
  `read_timeout` without a byte while an answer is awaited (botocore's and aiohttp's
  read timeout).
- Proxies as botocore uses them: an https endpoint through a CONNECT tunnel, an http one
  with requests in absolute form; Proxy-Authorization goes to the proxy only.
- Errors are `HttpError` (an `OSError`; `HttpTimeout` is a `TimeoutError` too) whose text
  names the endpoint (host:port) and never quotes a body.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType

import aiohappyeyeballs
from yarl import URL

HEAD_LIMIT = 64 * 1024  # bytes of an answer's status line and headers
BODY_LIMIT = 16 * 1024 * 1024  # far above SQS's largest answer (10 messages of 256 KiB)
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0  # longer than the longest long poll (20 s)
IDLE_TIMEOUT = 15.0  # aiohttp's keep-alive: under the idle timeouts of AWS's front ends
HAPPY_EYEBALLS_DELAY = 0.25  # as aiohttp: a dual-stack endpoint with a dead address family
_CLOSE_WAIT = 2.0  # seconds the pool waits for its connections to close on exit
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TEXT = r"[^\x00-\x08\x0a-\x1f\x7f]*"  # a line's text: no control character but HTAB
_STATUS_LINE = re.compile(rf"HTTP/1\.[01] [1-9][0-9][0-9](?: {_TEXT})?")
# A whole head, checked in one go: the status line, then header lines, a name (a token,
# RFC 9110) and a colon at the start of each (a folded line starts with a space).
_HEAD_FORMAT = re.compile(rf"{_STATUS_LINE.pattern}(?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]+:{_TEXT})*")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
_CHUNK_LINE_LIMIT = 4096  # a chunk's size line, extensions included
_LENGTH_DIGITS = 18  # of a Content-Length: far over any limit, and always an int

# What the parser of a connection is waiting for.
_IDLE, _HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE = range(5)
_CHUNK_SIZE_LINE, _TRAILER = -1, -2  # `_chunk` when not inside a chunk's data


class HttpError(OSError):
    """No whole answer from an endpoint: it could not be reached, it closed or broke the
    connection, or what it sent is not HTTP/1.1 this client reads."""


class HttpTimeout(HttpError, TimeoutError):
    """No connection, or no byte of an answer, in time."""


class Headers(Mapping[str, str]):
    """An answer's headers, looked up by name in any case; repeated ones joined by ', '."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields  # by lower-case name

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    tls: ssl.SSLContext | None  # for an https:// proxy
    name: str  # host:port, in messages


@dataclass(frozen=True, eq=False, slots=True)
class Origin:
    """Where requests go and how, worked out once (`origin`)."""

    url: str  # the endpoint as requested (tests and messages)
    name: str  # host:port, in messages
    host: str  # to connect to (an IPv6 address without brackets)
    port: int
    tls: ssl.SSLContext | None
    proxy: Proxy | None
    # Not in repr: Proxy-Authorization is in these three (an origin in a log or a traceback)
    head: str = field(repr=False)  # the request line, Host and the fixed headers of every request
    breaks: int = field(repr=False)  # line breaks in `head`
    tunnel: bytes = field(repr=False)  # the CONNECT request to a proxy, for https through one
    key: tuple[object, ...] = field(default=(), repr=False)  # what the pool keeps apart by
    unusable: str | None = None  # why no request can be sent, when the URL is not usable


def origin(
    url: str,
    tls: ssl.SSLContext | None = None,
    proxy: str | None = None,
    proxy_headers: Mapping[str, str] | None = None,
) -> Origin:
    """The origin of `url` (http or https) through `proxy`, if any. A URL that cannot be
    requested gives an origin whose every request fails (as an endpoint that does not
    answer), with the reason: the settings were checked by botocore, which accepted it."""
    try:
        return _origin(url, tls, proxy, dict(proxy_headers or {}))
    except ValueError as error:
        return Origin(url, url, "", 0, None, None, "", 0, b"", unusable=str(error))


def _origin(
    url: str, tls: ssl.SSLContext | None, proxy: str | None, proxy_headers: dict[str, str]
) -> Origin:
    # As aiohttp sent it: yarl's parsing (its quoting and dot segments) of the endpoint
    parsed = URL(url)
    scheme, host, port = parsed.scheme, parsed.raw_host, parsed.port
    if scheme not in _DEFAULT_PORTS or not host or port is None:
        raise ValueError(f"{url} is not an http:// or https:// URL with a host")
    if scheme == "https" and tls is None:
        tls = ssl.create_default_context()
    authority = _authority(host, port, scheme)
    name = f"{_bracketed(host)}:{port}"
    target = parsed.raw_path_qs or "/"
    through = None if proxy is None else _proxy(proxy, tls)
    if through is not None and scheme == "http":  # absolute form, authorised per request
        target = f"http://{authority}{target}"
        fixed = proxy_headers
    else:
        fixed = {}
    head = f"POST {target} HTTP/1.1\r\nHost: {authority}\r\nAccept-Encoding: identity\r\n"
    head += "".join(f"{key}: {value}\r\n" for key, value in fixed.items())
    tunnel = f"CONNECT {name} HTTP/1.1\r\nHost: {name}\r\n"
    tunnel += "".join(f"{key}: {value}\r\n" for key, value in proxy_headers.items()) + "\r\n"
    for text in (head, tunnel):
        if text.count("\n") != text.count("\r\n") or text.count("\r") != text.count("\n"):
            raise ValueError(f"a line break in a header or in the target of {url}")
    return Origin(
        url=str(parsed),
        name=name,
        host=host,
        port=port,
        tls=tls,
        proxy=through,
        head=head,
        breaks=head.count("\n"),
        tunnel=tunnel.encode(),
        key=(head, tunnel, host, port, tls, through),
    )


def _proxy(url: str, tls: ssl.SSLContext | None) -> Proxy:
    parsed = URL(url)
    if parsed.scheme not in _DEFAULT_PORTS or not parsed.raw_host or parsed.port is None:
        raise ValueError(f"the proxy {url} is not an http:// or https:// URL with a host")
    host, port = parsed.raw_host, parsed.port
    context = None
    if parsed.scheme == "https":  # TLS to the proxy too, trusting what the endpoint's trusts
        context = tls if tls is not None else ssl.create_default_context()
    return Proxy(host, port, context, f"{_bracketed(host)}:{port}")


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _authority(host: str, port: int, scheme: str) -> str:
    """The Host header: the port only when it is not the scheme's own (as SigV4 signs)."""
    shown = _bracketed(host)
    return shown if _DEFAULT_PORTS[scheme] == port else f"{shown}:{port}"


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Pool:
    """Keep-alive connections, at most `connections` of them open and in use at once; a
    request waits for one to be free. An async context manager: on exit every connection
    is closed (a request still waiting for its answer fails)."""

    def __init__(
        self,
        connections: int,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        head_limit: int = HEAD_LIMIT,
        body_limit: int = BODY_LIMIT,
    ) -> None:
        if connections < 1:
            raise ValueError(f"a pool needs at least one connection, not {connections}")
        self._limit = connections
        self._slots = asyncio.Semaphore(connections)
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._limits = _Limits(read_timeout, head_limit, body_limit)
        self._idle: dict[tuple[object, ...], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._connecting = 0  # connections being opened: not in `_open` yet, but counted
        self._closed = False

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def open_connections(self) -> int:
        return len(self._open)

    async def post(self, to: Origin, headers: Mapping[str, str], body: bytes) -> Answer:
        """POST `body` with `headers` to `to`; the answer, read whole, whatever its status."""
        request = _request(to, headers, body)
        await self._slots.acquire()
        connection = None
        try:
            connection = self._reused(to) or await self._connect(to)
            answer = await connection.exchange(request)
        except BaseException:
            if connection is not None:
                connection.abort()
            self._slots.release()
            raise
        self._release(to, connection)
        return answer

    async def close(self) -> None:
        self._closed = True
        self._idle.clear()
        connections = list(self._open)
        for connection in connections:
            connection.close()
        if connections:
            await asyncio.wait([c.lost for c in connections], timeout=_CLOSE_WAIT)
        for connection in connections:
            connection.abort()  # (a server that did not answer the close in time)

    def _reused(self, to: Origin) -> _Connection | None:
        """The last idle connection to `to` that is still open and fresh; the stale ones on
        the way are closed."""
        if self._closed:
            raise HttpError(f"{to.name}: the connection pool is closed")
        if to.unusable is not None:
            raise HttpError(to.unusable)
        stack = self._idle.get(to.key)
        if not stack:
            return None
        fresh_since = asyncio.get_running_loop().time() - self._idle_timeout
        while stack:
            connection = stack.pop()
            if connection.usable(fresh_since):
                return connection
            connection.close()
        return None

    def _release(self, to: Origin, connection: _Connection) -> None:
        if connection.reusable and not self._closed:
            now = asyncio.get_running_loop().time()
            connection.idle_since = now
            stack = self._idle.setdefault(to.key, [])
            stack.append(connection)
            if stack[0].idle_since < now - self._idle_timeout:  # the oldest, gone stale
                stack.pop(0).close()
        else:
            connection.close()
        self._slots.release()

    async def _connect(self, to: Origin) -> _Connection:
        if len(self._open) + self._connecting >= self._limit:
            self._close_an_idle_one()  # of another origin: every slot of this one is taken
        connection = _Connection(to, self._limits, self._open.discard)
        self._connecting += 1
        try:
            async with asyncio.timeout(self._connect_timeout):
                await connection.open()
        except TimeoutError:
            connection.abort()
            raise HttpTimeout(
                f"{to.name}: no connection within {self._connect_timeout:g} s{_via(to)}"
            ) from None
        except HttpError:
            connection.abort()
            raise
        except (OSError, ssl.SSLError) as error:
            connection.abort()
            raise HttpError(f"{to.name}: cannot connect{_via(to)} ({_describe(error)})") from None
        except BaseException:
            connection.abort()
            raise
        finally:
            self._connecting -= 1
        if self._closed:  # the pool closed while this one was connecting
            connection.abort()
            raise HttpError(f"{to.name}: the connection pool is closed")
        self._open.add(connection)
        return connection

    def _close_an_idle_one(self) -> None:
        for stack in self._idle.values():
            if stack:
                stack.pop(0).close()
                return


def _via(to: Origin) -> str:
    return "" if to.proxy is None else f" through the proxy {to.proxy.name}"


def _request(to: Origin, headers: Mapping[str, str], body: bytes) -> bytes:
    """The request's bytes, head and body together (one write)."""
    lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    head = f"{to.head}{lines}Content-Length: {len(body)}\r\n\r\n"
    breaks = to.breaks + len(headers) + 2
    if head.count("\n") != breaks or head.count("\r") != breaks:
        raise HttpError(f"{to.name}: a request header with a line break in it was not sent")
    return head.encode() + body


@dataclass(frozen=True, slots=True)
class _Limits:
    read_timeout: float
    head: int
    body: int


class _Connection(asyncio.Protocol):
    """One connection and the parser of its answers: one request at a time."""

    def __init__(self, to: Origin, limits: _Limits, forget: Callable[[_Connection], None]) -> None:
        self._origin = to
        self._limits = limits
        self._forget = forget  # called with the connection once it is closed
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = self._loop.create_future()
        self.idle_since = 0.0
        self.reusable = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Answer] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_read = 0.0
        self._tunnelling = False
        self._state = _IDLE
        self._scanned = 0  # bytes of the buffer known not to end the head
        self._interim = 0  # bytes of the interim answers' heads (1xx) before the final one
        self._status = 0
        self._fields: dict[str, str] = {}
        self._keep_alive = False
        self._length = 0  # of the body (_LENGTH); of the current chunk's data (_CHUNKED)
        # A chunked body's data, in one buffer: a list of chunks costs ~40 bytes a chunk
        # (a server sending one-byte chunks would hold 40 times the limit)
        self._chunks = bytearray()
        self._received = 0  # bytes of a chunked body as sent: data, size lines and CRLFs
        self._answered = False  # a byte of the awaited answer arrived
        self._closed_here = False  # closed by this side: a close is no end of a body then

    # -- the pool's side --

    async def open(self) -> None:
        to, proxy = self._origin, self._origin.proxy
        if proxy is None:
            await self._open_to(to.host, to.port, to.tls)
            return
        await self._open_to(proxy.host, proxy.port, proxy.tls)
        if to.tls is None:
            return  # plain http: the requests go to the proxy, in absolute form
        answer = await self.exchange(to.tunnel, tunnel=True)
        if not 200 <= answer.status < 300:
            raise HttpError(
                f"{to.name}: the proxy {proxy.name} refused a tunnel (HTTP {answer.status})"
            )
        if self._buffer:  # the server cannot speak before the TLS handshake
            raise HttpError(
                f"{to.name}: the proxy {proxy.name} sent bytes after its tunnel's answer"
            )
        assert self.transport is not None
        transport = await self._loop.start_tls(
            self.transport, self, to.tls, server_hostname=to.host
        )
        if transport is None:  # (the connection closed during the handshake)
            raise HttpError(f"{to.name}: the connection closed during the TLS handshake")
        self.transport = transport

    async def _open_to(self, host: str, port: int, tls: ssl.SSLContext | None) -> None:
        loop = self._loop
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        sock = await aiohappyeyeballs.start_connection(
            infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY, interleave=1, loop=loop
        )
        try:
            await loop.create_connection(
                lambda: self, sock=sock, ssl=tls, server_hostname=host if tls else None
            )
        except BaseException:
            sock.close()
            raise

    def usable(self, fresh_since: float) -> bool:
        transport = self.transport
        return (
            transport is not None
            and not transport.is_closing()
            and not self.lost.done()
            and self.idle_since >= fresh_since
        )

    async def exchange(self, request: bytes, *, tunnel: bool = False) -> Answer:
        """Send `request`; its answer, read whole."""
        transport = self.transport
        if transport is None or transport.is_closing():
            raise HttpError(f"{self._origin.name}: the connection is closed")
        loop = self._loop
        waiter: asyncio.Future[Answer] = loop.create_future()
        self._waiter = waiter
        self._tunnelling = tunnel
        self._state = _HEAD
        self._scanned = self._interim = 0
        self._answered = False
        self.reusable = False
        self._last_read = now = loop.time()
        transport.write(request)
        if self._timer is None:  # (a timer left armed by an earlier answer serves this one)
            self._timer = loop.call_at(now + self._limits.read_timeout, self._check_time)
        return await waiter

    def close(self) -> None:
        self._end(lambda transport: transport.close())

    def abort(self) -> None:
        self._end(lambda transport: transport.abort())

    def _end(self, shut: Callable[[asyncio.Transport], None]) -> None:
        self.reusable = False
        self._closed_here = True
        self._forget(self)
        if self.transport is not None:
            shut(self.transport)

    # -- asyncio's side --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # an answer to nothing: this connection cannot be trusted
            self.abort()
            return
        self._buffer += data
        self._answered = True
        self._last_read = self._loop.time()
        try:
            self._parse()
        except HttpError as error:
            self._fail(error)

    def eof_received(self) -> bool:
        return False  # close: connection_lost says what it meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiter is not None:
            if self._state == _UNTIL_CLOSE and exc is None and not self._closed_here:
                self._finish(bytes(self._buffer))  # the end of the body is the close
            else:
                self._fail(self._lost(exc))
        if not self.lost.done():
            self.lost.set_result(None)
        self._forget(self)

    # -- parsing an answer --

    def _parse(self) -> None:
        while self._waiter is not None:
            state = self._state
            if state == _HEAD:
                if not self._head():
                    return
            elif state == _LENGTH:
                buffer, length = self._buffer, self._length
                if len(buffer) < length:
                    return
                body = bytes(buffer[:length])
                del buffer[:length]
                self._finish(body)
            elif state == _CHUNKED:
                if not self._chunk():
                    return
            else:  # _UNTIL_CLOSE
                if len(self._buffer) > self._limits.body:
                    raise self._over_limit()
                return

    def _head(self) -> bool:
        """Read the status line and headers when they are all there; False until then."""
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n", self._scanned)
        limit = self._limits.head
        if end < 0 or end > limit:
            if len(buffer) > limit:
                raise HttpError(f"{self._origin.name}: an answer's head is over {limit} bytes")
            self._scanned = max(0, len(buffer) - 3)
            return False
        head = buffer[:end].decode("latin-1")
        del buffer[: end + 4]
        self._scanned = 0
        version, status, fields = _parsed_head(head, self._origin.name)
        if status < 200:  # an interim answer (100 Continue): the final one follows
            if status == 101:
                raise HttpError(f"{self._origin.name}: answered 101 Switching Protocols unasked")
            self._interim += end + 4  # (else endless 100 Continues are an endless answer)
            if self._interim > limit:
                raise HttpError(f"{self._origin.name}: an answer's head is over {limit} bytes")
            return True
        self._status, self._fields = status, fields
        self._keep_alive = _keeps_alive(version, fields)
        self._frame(status, fields)
        return True

    def _frame(self, status: int, fields: dict[str, str]) -> None:
        """How the body ends (RFC 9112 section 6.3), and the state that reads it."""
        # A tunnel's answer has no body when granted; when refused, its body is not read
        # (the connection is dropped): a 407 without a length would end only with a close
        if self._tunnelling or status in (204, 304):
            self._finish(b"")
            return
        coding = fields.get("content-encoding", "identity").strip().lower()
        if coding not in ("identity", ""):  # identity was asked for: nothing decodes it here
            raise HttpError(
                f"{self._origin.name}: answered with a Content-Encoding ({coding[:20]})"
            )
        transfer = fields.get("transfer-encoding")
        length = fields.get("content-length")
        if transfer is not None:
            if transfer.strip().lower() != "chunked":
                raise HttpError(
                    f"{self._origin.name}: answered with a Transfer-Encoding not read here"
                )
            if length is not None:  # both: chunked wins, the connection is not kept
                self._keep_alive = False
            self._state, self._length, self._received = _CHUNKED, _CHUNK_SIZE_LINE, 0
            self._chunks = bytearray()
        elif length is not None:
            self._length = _content_length(length, self._origin.name)
            if self._length > self._limits.body:
                raise self._over_limit()
            self._state = _LENGTH
        else:  # the body ends when the connection does
            self._keep_alive = False
            self._state = _UNTIL_CLOSE

    def _chunk(self) -> bool:
        """Read what the buffer holds of a chunked body; False when it needs more."""
        buffer, name = self._buffer, self._origin.name
        if self._length >= 0:  # inside a chunk's data, then its CRLF
            size = self._length
            if len(buffer) < size + 2:
                return False
            if buffer[size : size + 2] != b"\r\n":
                raise HttpError(f"{name}: a chunk of an answer does not end with CRLF")
            self._chunks += buffer[:size]
            del buffer[: size + 2]
            self._length = _CHUNK_SIZE_LINE
            return True
        end = buffer.find(b"\r\n")
        if end < 0 or end > _CHUNK_LINE_LIMIT:
            if len(buffer) > _CHUNK_LINE_LIMIT:
                raise HttpError(f"{name}: a chunk's size line is over {_CHUNK_LINE_LIMIT} bytes")
            return False
        line = bytes(buffer[:end])
        del buffer[: end + 2]
        if self._length == _TRAILER:
            return self._trailer(line)
        digits = line.split(b";", 1)[0].strip(b" \t")  # (extensions are not read)
        if not _CHUNK_SIZE.fullmatch(digits):
            raise HttpError(f"{name}: a chunk's size is not hexadecimal")
        self._length = int(digits, 16)
        # The framing counts too: else chunks of one byte behind long extensions are
        # an endless answer within the limit
        self._received += end + 4 + self._length
        if self._received > self._limits.body:
            raise self._over_limit()
        if self._length == 0:
            self._length = _TRAILER
        return True

    def _trailer(self, line: bytes) -> bool:
        if line:  # a trailer field: not read, but counted against the body's limit
            self._received += len(line) + 2
            if self._received > self._limits.body:
                raise self._over_limit()
            return True
        self._finish(bytes(self._chunks))
        self._chunks = bytearray()
        return True

    def _finish(self, body: bytes) -> None:
        waiter, self._waiter = self._waiter, None
        self._state = _IDLE
        # Anything after the answer was not asked for: the connection is not reused
        self.reusable = self._keep_alive and not self._buffer
        if waiter is not None and not waiter.done():
            waiter.set_result(Answer(self._status, Headers(self._fields), body))

    def _fail(self, error: HttpError) -> None:
        waiter, self._waiter = self._waiter, None
        self._state = _IDLE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _check_time(self) -> None:
        """The read timeout: time without a byte while an answer is awaited. The timer is
        not cancelled when an answer is read (a timer a request costs more CPU than the
        request's parsing): it stops here when no answer is awaited."""
        self._timer = None
        if self._waiter is None:
            return
        timeout = self._limits.read_timeout
        deadline = self._last_read + timeout
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._check_time)
            return
        self._fail(HttpTimeout(f"{self._origin.name}: no answer for {timeout:g} s"))

    def _lost(self, exc: Exception | None) -> HttpError:
        name, why = self._origin.name, "" if exc is None else f" ({_describe(exc)})"
        if self._closed_here:
            return HttpError(f"{name}: the connection was closed before its answer ended")
        if not self._answered:  # a stale connection, or a server that dropped the request
            return HttpError(f"{name}: the connection closed before any answer{why}")
        if self._state == _HEAD:
            return HttpError(f"{name}: the connection closed in an answer's head{why}")
        return HttpError(f"{name}: the connection closed before the end of an answer{why}")

    def _over_limit(self) -> HttpError:
        return HttpError(f"{self._origin.name}: an answer's body is over {self._limits.body} bytes")


def _parsed_head(head: str, name: str) -> tuple[str, int, dict[str, str]]:
    """(HTTP minor version, status, headers by lower-case name) of an answer's head."""
    if _HEAD_FORMAT.fullmatch(head) is None:
        first = head.split("\r\n", 1)[0]
        part = "header line" if _STATUS_LINE.fullmatch(first) else "status line"
        raise HttpError(f"{name}: answered with a malformed {part}")
    lines = head.split("\r\n")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        key, value = key.lower(), value.strip(" \t")
        fields[key] = f"{fields[key]}, {value}" if key in fields else value
    first = lines[0]  # HTTP/1.x NNN ...
    return first[7], int(first[9:12]), fields


def _keeps_alive(version: str, fields: dict[str, str]) -> bool:
    if "connection" not in fields:  # (most answers)
        return version == "1"
    tokens = {token.strip().lower() for token in fields.get("connection", "").split(",")}
    if version == "1":
        return "close" not in tokens
    # RFC 9112 section 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing, not kept
    return "keep-alive" in tokens and "close" not in tokens and "transfer-encoding" not in fields


def _content_length(value: str, name: str) -> int:
    """A Content-Length; repeated ones must agree (RFC 9110 section 8.6)."""
    if value.isascii() and value.isdigit() and len(value) <= _LENGTH_DIGITS:  # (most answers)
        return int(value)
    lengths = {part.strip() for part in value.split(",")}
    if len(lengths) != 1 or not all(_digits(part) for part in lengths):
        raise HttpError(f"{name}: answered with a malformed Content-Length")
    return int(lengths.pop())


def _digits(text: str) -> bool:
    # A length, and one int() reads (it refuses over 4300 digits with a ValueError)
    return text.isascii() and text.isdigit() and len(text) <= _LENGTH_DIGITS
