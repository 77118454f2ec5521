"""The HTTP endpoints on a loopback port: /metrics, /healthz, /readyz, and a port in use."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from ingestor.demo.embedded import free_port
from ingestor.errors import ConfigError, DatabaseUnavailable
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
