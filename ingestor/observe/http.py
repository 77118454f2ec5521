"""The HTTP endpoints for the platform: /metrics (Prometheus), /healthz (liveness) and
/readyz (readiness), served by aiohttp on the service's own event loop.

/healthz answers 200 as long as the event loop runs: a loop that is blocked or gone does
not answer at all, which is what a liveness probe must notice. /readyz answers 200 or 503
with a short reason (a state or stage name, never data).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ingestor.errors import ConfigError
from ingestor.observe.readiness import Readiness
from ingestor.settings import env_name

log = logging.getLogger("ingestor")
# Errors that say the port is the problem (taken, or privileged); others blame the host.
_PORT_ERRORS = frozenset({errno.EADDRINUSE, errno.EACCES})
# A scraper's keep-alive connection must not hold up the service's exit.
_SHUTDOWN_GRACE = 1.0


def build_app(registry: CollectorRegistry, readiness: Readiness) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        verdict = await readiness.check()
        status = 200 if verdict.ready else 503
        text = "ready\n" if verdict.ready else f"not ready: {verdict.reason}\n"
        return web.Response(status=status, text=text)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


@asynccontextmanager
async def serving(app: web.Application, host: str, port: int) -> AsyncIterator[None]:
    """Serve `app` on host:port while inside. A port that cannot be bound is a bad
    setting (ConfigError naming the variable), not a runtime failure."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_GRACE)
    await runner.setup()
    try:
        await _listen(runner, host, port)
        log.info(
            "metrics on http://%s:%d/metrics, health on /healthz and /readyz",
            host,
            port,
            extra={"event": "http_listening", "port": port},
        )
        yield
    finally:
        await runner.cleanup()


async def _listen(runner: web.AppRunner, host: str, port: int) -> None:
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
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
