"""The direct SQS client's HTTP/1.1 transport (`ingestor.source.http1`) against loopback
servers whose every byte the test scripts: keep-alive and when a connection is not kept,
Content-Length, chunked and read-until-close bodies, answers cut short or malformed, the
limits, the timeouts, TLS, and both kinds of proxy. No request is ever sent twice."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import trustme

from ingestor.source.http1 import HttpError, HttpTimeout, Origin, Pool, origin
from tests.faultproxy import ConnectProxy
from tests.waiting import wait_until

HEADERS = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "AmazonSQS.Receive"}
BODY = b'{"QueueUrl": "q"}'


def ok(body: bytes = b'{"a": 1}', *extra: str, version: str = "1.1") -> bytes:
    lines = "".join(f"{line}\r\n" for line in extra)
    head = f"HTTP/{version} 200 OK\r\nContent-Length: {len(body)}\r\n{lines}\r\n"
    return head.encode() + body


@dataclass(frozen=True)
class Reply:
    """What the server does with one request: write `data` (in `pieces`, each flushed on
    its own), then close the connection when `close`, or never answer when `hang`."""

    data: bytes = b""
    close: bool = False
    hang: bool = False
    pieces: int = 1


@dataclass
class Request:
    line: str
    headers: dict[str, str]  # lower-case names
    raw_headers: list[str]
    body: bytes


@dataclass
class Server:
    """A loopback HTTP server answering each request with the next of `replies` (then
    `ok()`); it records the requests and counts the connections."""

    replies: list[Reply] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    open: int = 0
    most_open: int = 0
    closed_by_client: int = 0
    url: str = ""
    port: int = 0

    @contextlib.asynccontextmanager
    async def running(
        self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"
    ) -> AsyncIterator[Server]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        self.port = server.sockets[0].getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        async with server:
            yield self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while (request := await _read(reader)) is not None:
                self.requests.append(request)
                reply = self.replies.pop(0) if self.replies else Reply(ok())
                if reply.hang:
                    await _write(writer, reply)
                    await reader.read()  # until the client gives up
                    return
                await _write(writer, reply)
                if reply.close:
                    return
            self.closed_by_client += 1
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self.open -= 1
            writer.close()


async def _read(reader: asyncio.StreamReader) -> Request | None:
    line = await reader.readline()
    if not line:
        return None
    raw: list[str] = []
    while (header := await reader.readline()) not in (b"\r\n", b""):
        raw.append(header.decode("latin-1").rstrip("\r\n"))
    headers = {}
    for text in raw:
        name, _, value = text.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(line.decode("latin-1").rstrip("\r\n"), headers, raw, body)


async def _write(writer: asyncio.StreamWriter, reply: Reply) -> None:
    size = -(-len(reply.data) // reply.pieces) if reply.data else 0
    for start in range(0, len(reply.data), max(size, 1)):
        writer.write(reply.data[start : start + size])
        await writer.drain()
        await asyncio.sleep(0)  # a chance for the client to read each piece alone


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server().running() as running:
        yield running


async def post(pool: Pool, to: Origin, body: bytes = BODY) -> tuple[int, bytes]:
    answer = await pool.post(to, HEADERS, body)
    return answer.status, answer.body


# -- requests and keep-alive ---------------------------------------------------------


async def test_a_request_is_what_the_server_expects_and_the_connection_is_kept(
    server: Server,
) -> None:
    to = origin(f"{server.url}/gateway/sqs?x=1")
    async with Pool(4) as pool:
        for _ in range(3):
            assert await post(pool, to) == (200, b'{"a": 1}')
    assert server.connections == 1  # one connection, kept alive for all three
    first = server.requests[0]
    assert first.line == "POST /gateway/sqs?x=1 HTTP/1.1"
    assert first.headers["host"] == f"127.0.0.1:{server.port}"
    assert first.headers["content-length"] == str(len(BODY))
    assert first.headers["x-amz-target"] == "AmazonSQS.Receive"
    assert first.headers["accept-encoding"] == "identity"
    assert first.body == BODY
    assert len(server.requests) == 3


async def test_the_host_header_has_no_default_port() -> None:
    to = origin("https://sqs.eu-west-1.amazonaws.com:443/")
    assert "Host: sqs.eu-west-1.amazonaws.com\r\n" in to.head
    assert to.name == "sqs.eu-west-1.amazonaws.com:443"
    assert "Host: [::1]:4566\r\n" in origin("http://[::1]:4566/").head


async def test_headers_are_read_in_any_case_and_repeated_ones_joined(server: Server) -> None:
    server.replies = [
        Reply(
            ok(
                b"{}",
                "X-Amzn-RequestId: abc",
                "x-amzn-query-error: Gone;Sender",
                "Via: a",
                "via: b",
            )
        )
    ]
    async with Pool(1) as pool:
        answer = await pool.post(origin(server.url), HEADERS, BODY)
    assert answer.headers["x-amzn-requestid"] == "abc"
    assert answer.headers.get("X-Amzn-Query-Error") == "Gone;Sender"
    assert answer.headers["via"] == "a, b"


async def test_a_header_with_a_line_break_is_not_sent(server: Server) -> None:
    async with Pool(1) as pool:
        with pytest.raises(HttpError, match="line break"):
            await pool.post(origin(server.url), {"X-Evil": "a\r\nX-Injected: 1"}, BODY)
    assert server.requests == []


@pytest.mark.parametrize(
    "reply",
    [
        Reply(ok(b"{}", "Connection: close")),
        Reply(ok(b"{}", version="1.0")),
        Reply(b"HTTP/1.1 200 OK\r\n\r\n{}", close=True),  # the body ends with the connection
        Reply(ok(b"{}") + b"HTTP/1.1 200 OK\r\n"),  # more than was asked for
    ],
    ids=["Connection: close", "HTTP/1.0", "read until close", "bytes after the answer"],
)
async def test_a_connection_is_not_reused_when_the_answer_says_so(
    server: Server, reply: Reply
) -> None:
    server.replies = [reply]
    async with Pool(1) as pool:
        assert await post(pool, origin(server.url)) == (200, b"{}")
        assert await post(pool, origin(server.url)) == (200, b'{"a": 1}')
    assert server.connections == 2


async def test_http_1_0_with_keep_alive_is_kept(server: Server) -> None:
    server.replies = [Reply(ok(b"{}", "Connection: keep-alive", version="1.0"))]
    to = origin(server.url)
    async with Pool(1) as pool:
        await post(pool, to)
        await post(pool, to)
    assert server.connections == 1


async def test_an_answer_in_pieces_and_an_interim_answer_are_read_whole(server: Server) -> None:
    big = b"x" * 300_000
    server.replies = [
        Reply(ok(big), pieces=7),
        Reply(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"{}"), pieces=3),
    ]
    to = origin(server.url)
    async with Pool(1) as pool:
        assert await post(pool, to) == (200, big)
        assert await post(pool, to) == (200, b"{}")
    assert server.connections == 1


async def test_chunked_bodies_are_read_with_extensions_and_trailers(server: Server) -> None:
    chunked = (
        b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n1\r\n \r\n"
        b"5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    server.replies = [Reply(chunked, pieces=9), Reply(chunked)]
    to = origin(server.url)
    async with Pool(1) as pool:
        assert await post(pool, to) == (500, b"hello world")
        assert await post(pool, to) == (500, b"hello world")
    assert server.connections == 1


@pytest.mark.parametrize(
    "head",
    [
        # Both framings: read chunked, and the connection's framing is in doubt
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        # RFC 9112 section 6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
    ids=["with-content-length", "in-http-1.0"],
)
async def test_doubtful_chunked_framing_is_read_but_the_connection_not_kept(
    server: Server, head: bytes
) -> None:
    server.replies = [Reply(head + b"2\r\nok\r\n0\r\n\r\n")]
    async with Pool(1) as pool:
        assert await post(pool, origin(server.url)) == (200, b"ok")
        await post(pool, origin(server.url))
    assert server.connections == 2


async def test_answers_without_a_body(server: Server) -> None:
    server.replies = [Reply(b"HTTP/1.1 204 No Content\r\n\r\n")]
    async with Pool(1) as pool:
        assert await post(pool, origin(server.url)) == (204, b"")
        await post(pool, origin(server.url))
    assert server.connections == 1


# -- answers cut short, lost or malformed ------------------------------------------


async def test_a_body_cut_short_is_an_error(server: Server) -> None:
    server.replies = [Reply(ok(b"0123456789")[:-4], close=True)]
    to = origin(server.url)
    async with Pool(1) as pool:
        with pytest.raises(HttpError, match=rf"127\.0\.0\.1:{server.port}: .*before the end"):
            await post(pool, to)
        assert await post(pool, to) == (200, b'{"a": 1}')  # and the next one is fine


async def test_a_chunked_body_cut_short_is_an_error(server: Server) -> None:
    server.replies = [
        Reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", close=True)
    ]
    async with Pool(1) as pool:
        with pytest.raises(HttpError, match="before the end"):
            await post(pool, origin(server.url))


async def test_an_idle_connection_the_server_closed_is_not_used(server: Server) -> None:
    # Given a server that closes its side once it answered (keep-alive not refused)
    server.replies = [Reply(ok(b"{}"), close=True)]
    to = origin(server.url)
    async with Pool(1) as pool:
        await post(pool, to)
        await wait_until(lambda: pool.open_connections == 0, 5, "the close to be seen")
        # When the next request is made, then it goes on a new connection and is answered
        assert await post(pool, to) == (200, b'{"a": 1}')
    assert server.connections == 2
    assert len(server.requests) == 2


async def test_a_request_the_server_dropped_is_an_error_not_a_retry(server: Server) -> None:
    # Given a server that reads a request and closes without a word (a stale connection)
    server.replies = [Reply(ok(b"{}")), Reply(close=True)]
    to = origin(server.url)
    async with Pool(1) as pool:
        await post(pool, to)
        with pytest.raises(HttpError, match="closed before any answer"):
            await post(pool, to)
    assert len(server.requests) == 2  # the dropped one was not sent again


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n",
        b"hello there\r\n\r\n",
        b"HTTP/2 200\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ],
)
async def test_a_malformed_answer_is_an_error_naming_the_endpoint(
    server: Server, data: bytes
) -> None:
    server.replies = [Reply(data)]
    async with Pool(1) as pool:
        with pytest.raises(HttpError, match=rf"^127\.0\.0\.1:{server.port}: ") as caught:
            await post(pool, origin(server.url))
    assert "hello" not in str(caught.value)  # never a body


async def test_repeated_equal_content_lengths_are_one(server: Server) -> None:
    server.replies = [Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok")]
    async with Pool(1) as pool:
        assert await post(pool, origin(server.url)) == (200, b"ok")


async def test_bytes_from_the_server_between_answers_drop_the_connection(server: Server) -> None:
    server.replies = [Reply(ok(b"{}"))]
    to = origin(server.url)
    async with Pool(1) as pool:
        await post(pool, to)
        # Given bytes arriving on the idle connection (as from a confused server)
        [connection] = pool._idle[to.key]
        assert connection.transport is not None
        connection.data_received(b"HTTP/1.1 200 OK\r\n")
        # Then the connection is not used again
        assert await post(pool, to) == (200, b'{"a": 1}')
    assert server.connections == 2


# -- limits and timeouts --------------------------------------------------------


async def test_a_head_over_the_limit_is_an_error(server: Server) -> None:
    server.replies = [Reply(ok(b"{}", "X-Big: " + "b" * 2_000))]
    async with Pool(1, head_limit=1_024) as pool:
        with pytest.raises(HttpError, match="head is over 1024 bytes"):
            await post(pool, origin(server.url))


@pytest.mark.parametrize(
    "data",
    [
        ok(b"x" * 5_000),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"400\r\n"
        + b"x" * 1024
        + b"\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 5_000,
    ],
    ids=["content-length", "chunked", "read until close"],
)
async def test_a_body_over_the_limit_is_an_error(server: Server, data: bytes) -> None:
    server.replies = [Reply(data)]
    async with Pool(1, body_limit=1_000) as pool:
        with pytest.raises(HttpError, match="body is over 1000 bytes"):
            await post(pool, origin(server.url))


async def test_no_answer_within_the_read_timeout_is_a_timeout(server: Server) -> None:
    server.replies = [Reply(hang=True)]
    async with Pool(1, read_timeout=0.2) as pool:
        with pytest.raises(HttpTimeout, match=rf"127\.0\.0\.1:{server.port}: no answer for 0\.2 s"):
            await post(pool, origin(server.url))
        assert await post(pool, origin(server.url)) == (200, b'{"a": 1}')
    assert issubclass(HttpTimeout, TimeoutError)


async def test_an_endpoint_that_refuses_connections_is_named() -> None:
    async with Server().running() as gone:
        url = gone.url
    async with Pool(1) as pool:
        with pytest.raises(HttpError, match=r"127\.0\.0\.1:\d+: cannot connect"):
            await pool.post(origin(url), HEADERS, BODY)


async def test_an_unusable_url_fails_every_request() -> None:
    to = origin("ftp://example.com/")
    async with Pool(1) as pool:
        with pytest.raises(HttpError, match="not an http"):
            await pool.post(to, HEADERS, BODY)


# -- the pool -----------------------------------------------------------------


async def test_the_pool_never_opens_more_than_its_connections(server: Server) -> None:
    to = origin(server.url)
    async with Pool(2) as pool:
        answers = await asyncio.gather(*(post(pool, to) for _ in range(12)))
        assert pool.open_connections <= 2
    assert answers == [(200, b'{"a": 1}')] * 12
    assert server.most_open <= 2
    assert server.connections <= 2


async def test_idle_connections_are_reused_last_in_first_out(server: Server) -> None:
    to = origin(server.url)
    async with Pool(3) as pool:
        await asyncio.gather(*(post(pool, to) for _ in range(3)))
        stack = list(pool._idle[to.key])
        await post(pool, to)
        assert pool._idle[to.key] == stack  # the last one was taken and given back on top


async def test_a_cancelled_request_frees_its_connection_slot(server: Server) -> None:
    server.replies = [Reply(hang=True)]
    to = origin(server.url)
    async with Pool(1) as pool:
        waiting = asyncio.create_task(post(pool, to))
        await wait_until(lambda: len(server.requests) == 1, 5, "the request to arrive")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await post(pool, to) == (200, b'{"a": 1}')  # on a new connection
    assert server.connections == 2


async def test_closing_the_pool_closes_its_connections(server: Server) -> None:
    async with Pool(2) as pool:
        await asyncio.gather(*(post(pool, origin(server.url)) for _ in range(2)))
    await wait_until(lambda: server.open == 0, 5, "the server to see the connections closed")
    assert server.closed_by_client == server.connections
    with pytest.raises(HttpError, match="pool is closed"):
        await post(pool, origin(server.url))


async def test_closing_the_pool_fails_an_answer_read_until_close(server: Server) -> None:
    # Given an answer whose body ends with the connection, half sent
    server.replies = [Reply(b'HTTP/1.1 200 OK\r\n\r\n{"Messages": [', hang=True)]
    pool = Pool(1)
    waiting = asyncio.create_task(post(pool, origin(server.url)))
    await wait_until(lambda: len(server.requests) == 1, 5, "the request to arrive")
    # When the pool closes (the service stops), then that is no end of the body
    await pool.close()
    with pytest.raises(HttpError, match="closed before its answer ended"):
        await waiting


# -- TLS and proxies ---------------------------------------------------------


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


def server_tls(authority: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(*names).configure_cert(context)
    return context


def client_tls(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context


async def test_tls_with_a_private_ca_and_the_server_name(authority: trustme.CA) -> None:
    async with Server().running(server_tls(authority, "localhost"), host="localhost") as tls:
        to = origin(f"{tls.url}/", client_tls(authority))
        async with Pool(1) as pool:
            assert await post(pool, to) == (200, b'{"a": 1}')
            assert await post(pool, to) == (200, b'{"a": 1}')
    assert tls.connections == 1
    assert tls.requests[0].headers["host"] == f"localhost:{tls.port}"


async def test_tls_with_an_untrusted_certificate_is_refused(authority: trustme.CA) -> None:
    async with Server().running(server_tls(authority, "localhost"), host="localhost") as tls:
        to = origin(tls.url, ssl.create_default_context())  # does not trust the private CA
        async with Pool(1) as pool:
            with pytest.raises(HttpError, match=r"localhost:\d+: cannot connect .*CERTIFICATE"):
                await post(pool, to)
    assert tls.requests == []


async def test_https_through_a_connect_proxy(authority: trustme.CA) -> None:
    hidden = "sqs.http1-test.invalid"  # resolves nowhere: reachable through the proxy only
    async with (
        Server().running(server_tls(authority, hidden), host=hidden) as tls,
        ConnectProxy().running() as proxy,
    ):
        headers = {"Proxy-Authorization": "Basic dXNlcjpwYXNz"}
        to = origin(f"{tls.url}/sqs", client_tls(authority), proxy.url, headers)
        async with Pool(1) as pool:
            assert await post(pool, to) == (200, b'{"a": 1}')
            assert await post(pool, to) == (200, b'{"a": 1}')
    assert proxy.targets == [f"{hidden}:{tls.port}"]  # one tunnel, kept
    assert tls.requests[0].line == "POST /sqs HTTP/1.1"
    assert tls.requests[0].headers["host"] == f"{hidden}:{tls.port}"
    assert "proxy-authorization" not in tls.requests[0].headers  # for the proxy only


async def test_a_proxy_refusing_the_tunnel_is_named(authority: trustme.CA) -> None:
    async with Server().running() as refusing:
        refusing.replies = [
            Reply(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        ]
        to = origin("https://sqs.example:443/", client_tls(authority), refusing.url)
        async with Pool(1) as pool:
            with pytest.raises(
                HttpError,
                match=r"sqs\.example:443: the proxy 127\.0\.0\.1:\d+ refused a tunnel \(HTTP 407\)",
            ):
                await post(pool, to)
    assert refusing.requests[0].line == "CONNECT sqs.example:443 HTTP/1.1"


async def test_http_through_a_proxy_in_absolute_form(server: Server) -> None:
    # The scripted server plays the proxy: it sees what a forward proxy sees
    headers = {"Proxy-Authorization": "Basic dXNlcjpwYXNz"}
    to = origin("http://sqs.http1-test.invalid:4566/q?x=1", None, server.url, headers)
    async with Pool(1) as pool:
        assert await post(pool, to) == (200, b'{"a": 1}')
        assert await post(pool, to) == (200, b'{"a": 1}')
    request = server.requests[0]
    assert request.line == "POST http://sqs.http1-test.invalid:4566/q?x=1 HTTP/1.1"
    assert request.headers["host"] == "sqs.http1-test.invalid:4566"
    assert request.headers["proxy-authorization"] == "Basic dXNlcjpwYXNz"
    assert server.connections == 1


# -- review: hostile answers, RFC 9112 framing, the pool's limit across origins ------


async def test_a_content_length_of_thousands_of_digits_is_a_malformed_answer(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    # Python refuses to convert over 4300 digits (a ValueError, not an HttpError): it
    # must not escape the protocol's callback (asyncio's "Fatal error" log)
    server.replies = [Reply(b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 5_000 + b"\r\n\r\n")]
    async with Pool(1) as pool:
        with pytest.raises(HttpError, match="malformed Content-Length"):
            await post(pool, origin(server.url))
    assert "Fatal error" not in caplog.text


async def test_chunked_framing_counts_against_the_body_limit(server: Server) -> None:
    # Given chunks of one byte of data behind long extensions: 200 bytes of data, 4 KB sent
    chunks = b"1;ext=" + b"e" * 12 + b"\r\nx\r\n"
    server.replies = [
        Reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks * 200)
    ]
    async with Pool(1, body_limit=1_000) as pool:
        with pytest.raises(HttpError, match="body is over 1000 bytes"):
            await post(pool, origin(server.url))


async def test_endless_interim_answers_are_an_error(server: Server) -> None:
    server.replies = [Reply(b"HTTP/1.1 100 Continue\r\n\r\n" * 2_000 + ok())]
    async with Pool(1, head_limit=1_024) as pool:
        with pytest.raises(HttpError, match="head is over 1024 bytes"):
            await post(pool, origin(server.url))


async def test_the_pool_limit_holds_across_origins_connecting_at_once() -> None:
    async with Server().running() as first, Server().running() as second:
        async with Pool(2) as pool:
            await post(pool, origin(first.url))  # one idle connection to the first
            answers = await asyncio.gather(*(post(pool, origin(second.url)) for _ in range(2)))
            assert answers == [(200, b'{"a": 1}')] * 2
            assert pool.open_connections <= 2
        await wait_until(lambda: first.open + second.open == 0, 5, "the connections to close")
    assert first.closed_by_client == 1  # the idle one was closed to make room


def test_an_origin_does_not_show_its_proxy_credentials() -> None:
    headers = {"Proxy-Authorization": "Basic c2VjcmV0OnNlY3JldA=="}
    for url in ("http://sqs.example:4566/", "https://sqs.example/"):
        to = origin(url, None, "http://proxy.example:3128", headers)
        assert "c2VjcmV0" not in repr(to)


async def test_many_callers_cancelled_at_any_point_leak_nothing(server: Server) -> None:
    to = origin(server.url)
    async with Pool(4) as pool:
        for _ in range(5):
            tasks = [asyncio.create_task(post(pool, to)) for _ in range(256)]
            for step in range(64):  # cancel callers at every stage of their requests
                await asyncio.sleep(0)
                tasks[step * 4].cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            assert pool.open_connections <= 4
            assert all(connection.reusable for stack in pool._idle.values() for connection in stack)
            answers = await asyncio.gather(*(post(pool, to) for _ in range(8)))
            assert answers == [(200, b'{"a": 1}')] * 8  # every slot came back
    assert server.most_open <= 4


async def test_a_proxy_refusing_the_tunnel_without_a_body_length_is_named_at_once(
    authority: trustme.CA,
) -> None:
    # Given a proxy whose 407 has no Content-Length and which keeps the connection open:
    # its body (unread: the connection is dropped) would end only with the connection
    async with Server().running() as refusing:
        refusing.replies = [
            Reply(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\nlogin", hang=True)
        ]
        to = origin("https://sqs.example:443/", client_tls(authority), refusing.url)
        async with Pool(1) as pool:
            with pytest.raises(HttpError, match=r"refused a tunnel \(HTTP 407\)"):
                await post(pool, to)
