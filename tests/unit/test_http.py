"""The HTTP endpoints on a loopback port: /metrics, /healthz, /readyz, a port in use, and
the server's limits (malformed, oversized, unfinished and unexpected requests)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from ingestor.demo.embedded import free_port
from ingestor.errors import ConfigError, DatabaseUnavailable
from ingestor.observe import http
from ingestor.observe.http import build_app, serving
from ingestor.observe.metrics import PrometheusHooks
from ingestor.observe.readiness import Readiness


async def get(port: int, path: str) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, response.headers["Content-Type"], await response.text()


async def test_the_endpoints_answer_from_the_hooks_state() -> None:
    metrics, readiness = PrometheusHooks(), Readiness()
    port = free_port()
    async with serving(build_app(metrics.registry, readiness), "127.0.0.1", port):
        metrics.on_received(7)
        status, content_type, text = await get(port, "/metrics")
        assert (status, content_type) == (200, CONTENT_TYPE_LATEST)
        assert "ingestor_messages_received_total 7.0" in text
        assert (await get(port, "/healthz"))[0] == 200
        assert (await get(port, "/readyz"))[::2] == (503, "not ready: starting\n")
        readiness.on_state("running")
        assert (await get(port, "/readyz"))[::2] == (200, "ready\n")
        readiness.on_retry("write", DatabaseUnavailable("connection refused"), 1, 0.1)
        assert (await get(port, "/readyz"))[::2] == (503, "not ready: write failing\n")
        readiness.on_recovered("write")
        readiness.on_state("draining")
        assert (await get(port, "/readyz"))[::2] == (503, "not ready: draining\n")
        assert (await get(port, "/nothing"))[0] == 404


async def test_a_port_in_use_is_a_configuration_error_naming_the_variable() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = build_app(PrometheusHooks().registry, Readiness())
        with pytest.raises(ConfigError) as raised:
            async with serving(app, "127.0.0.1", port):
                pytest.fail("it should not listen on a port in use")
    assert raised.value.variable == "INGESTOR_METRICS_PORT"
    assert f"cannot listen on port {port}" in str(raised.value)
    assert "\n" not in str(raised.value)


# -- the server's own limits: what a port reachable by probes and scrapers must hold ---


async def exchange(port: int, request: bytes) -> bytes:
    """Send `request` on a new connection; everything the server sent until it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async def failing() -> tuple[int, str, bytes]:
        raise RuntimeError("a collector that fails")

    app = build_app(PrometheusHooks().registry, Readiness())
    app["/failing"] = failing
    chosen = free_port()
    async with serving(app, "127.0.0.1", chosen):
        yield chosen


@pytest.mark.parametrize(
    ("request_bytes", "status_line"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK"),
        (b"GET /healthz?probe=1 HTTP/1.0\r\n\r\n", b"HTTP/1.1 200 OK"),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"HTTP/1.1 405 "),
        (b"GET /metrics/../etc HTTP/1.1\r\n\r\n", b"HTTP/1.1 404 "),
        (b"GET /healthz\r\n\r\n", b"HTTP/1.1 400 "),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"HTTP/1.1 400 "),
        (b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", b"HTTP/1.1 431 "),
        (b"GET /failing HTTP/1.1\r\n\r\n", b"HTTP/1.1 500 "),
        (b"GET http://pod:9108/healthz HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK"),
        (b"GET /%68ealthz HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK"),
        (b"GET /healthz HTTP/1.1\nHost: x\n\n", b"HTTP/1.1 200 OK"),
        (b"GET /healthz HTTP/1.9x\r\n\r\n", b"HTTP/1.1 400 "),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"HTTP/1.1 400 "),
        (b"GET http://[::1/healthz HTTP/1.1\r\n\r\n", b"HTTP/1.1 404 "),
    ],
    ids=["get", "query, HTTP/1.0", "post", "unknown path", "no version", "tls hello",
         "head too large", "failing route", "absolute form", "percent-encoded", "bare LF",
         "HTTP/1.9x", "HTTP/2 preface", "broken host"],
)  # fmt: skip
async def test_each_request_gets_one_whole_answer_and_the_connection_closes(
    port: int, request_bytes: bytes, status_line: bytes
) -> None:
    answer = await exchange(port, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(status_line)
    assert f"Content-Length: {len(body)}".encode() in head.split(b"\r\n")
    assert b"Connection: close" in head.split(b"\r\n")
    # and the server answers the next request as before
    assert (await exchange(port, b"GET /healthz HTTP/1.1\r\n\r\n")).endswith(b"\r\n\r\nok\n")


async def test_head_gets_the_headers_without_the_body(port: int) -> None:
    answer = await exchange(port, b"HEAD /healthz HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"Content-Length: 3\r\nConnection: close\r\n\r\n")


async def test_a_client_that_never_finishes_its_request_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http, "HEAD_TIMEOUT", 0.2)
    chosen = free_port()
    async with serving(build_app(PrometheusHooks().registry, Readiness()), "127.0.0.1", chosen):
        reader, writer = await asyncio.open_connection("127.0.0.1", chosen)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        # a scrape is answered meanwhile
        assert (await exchange(chosen, b"GET /healthz HTTP/1.1\r\n\r\n")).endswith(b"ok\n")
        assert await closed(reader)  # dropped, unanswered
        writer.close()


async def test_connections_left_open_do_not_hold_up_the_exit() -> None:
    chosen = free_port()
    app = build_app(PrometheusHooks().registry, Readiness())
    async with serving(app, "127.0.0.1", chosen):
        reader, writer = await asyncio.open_connection("127.0.0.1", chosen)
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # a request under way at the exit
        await writer.drain()
    # the server has closed it (the block above returned: its exit did not wait 10 s)
    assert await closed(reader)
    writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", chosen)


async def closed(reader: asyncio.StreamReader) -> bool:
    """Whether the server closed the connection without an answer (a reset included)."""
    try:
        return await asyncio.wait_for(reader.read(), timeout=10) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
async def server() -> AsyncIterator[tuple[http._Server, int, asyncio.Event]]:
    """The server's connection handler on a free port, with /big (16 MiB) and /slow
    (answers once the event is set)."""
    gate = asyncio.Event()

    async def big() -> tuple[int, str, bytes]:
        return 200, http.TEXT, b"x" * (16 << 20)

    async def slow() -> tuple[int, str, bytes]:
        await gate.wait()
        return 200, http.TEXT, b"late\n"

    app = build_app(PrometheusHooks().registry, Readiness())
    app.update({"/big": big, "/slow": slow})
    handler = http._Server(app)
    listening = await asyncio.start_server(handler.handle, "127.0.0.1", 0, limit=http.HEAD_LIMIT)
    try:
        yield handler, listening.sockets[0].getsockname()[1], gate
    finally:
        listening.close()
        await handler.close()
        await listening.wait_closed()


async def until(condition: Callable[[], bool]) -> None:
    """Wait for `condition`, polling, for at most 10 seconds."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - the server's own state: no event to wait on
            await asyncio.sleep(0.01)


async def test_a_client_that_does_not_take_its_answer_is_dropped(
    server: tuple[http._Server, int, asyncio.Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    handler, chosen, _ = server
    monkeypatch.setattr(http, "SEND_TIMEOUT", 0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", chosen)
    writer.write(b"GET /big HTTP/1.1\r\n\r\n")
    await until(lambda: bool(handler.connections))
    await until(lambda: not handler.connections)  # given up on, never read
    received = 0
    with contextlib.suppress(ConnectionResetError):
        while chunk := await asyncio.wait_for(reader.read(1 << 20), timeout=10):
            received += len(chunk)
    writer.close()
    assert received < 16 << 20  # the answer was cut, not sent whole


async def test_connections_past_the_cap_are_closed_as_they_come(
    server: tuple[http._Server, int, asyncio.Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    handler, chosen, _ = server
    monkeypatch.setattr(http, "MAX_CONNECTIONS", 3)
    idle = [await asyncio.open_connection("127.0.0.1", chosen) for _ in range(3)]
    await until(lambda: len(handler.connections) == 3)
    reader, writer = await asyncio.open_connection("127.0.0.1", chosen)
    writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
    assert await closed(reader)  # refused, unanswered
    writer.close()
    for _, idle_writer in idle:  # the idle ones go: the server answers again
        idle_writer.close()
    await until(lambda: not handler.connections)
    assert (await exchange(chosen, b"GET /healthz HTTP/1.1\r\n\r\n")).endswith(b"ok\n")


async def test_an_answer_still_awaited_at_the_exit_is_cancelled_quietly(
    server: tuple[http._Server, int, asyncio.Event],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler, chosen, _ = server
    monkeypatch.setattr(http, "_SHUTDOWN_GRACE", 0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", chosen)
    writer.write(b"GET /slow HTTP/1.1\r\n\r\n")  # a readiness check that takes long
    await until(lambda: bool(handler.connections))
    await handler.close()
    assert not handler.connections
    assert await closed(reader)
    writer.close()
    await asyncio.sleep(0)  # (the loop's callbacks for the ended task run)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
