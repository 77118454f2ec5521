"""What observes one service run, started and stopped together: the metrics, the readiness
state and the HTTP server that serves them, the progress log line, and the queue-depth
sampler. All of it is hooks plus a few background tasks; nothing lives in the pipeline's
loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import asyncpg

from ingestor.errors import IngestorError
from ingestor.observe.hooks import HookChain
from ingestor.observe.progress import ProgressLog
from ingestor.observe.readiness import Readiness
from ingestor.ports import Buffers, DepthSource, Hooks
from ingestor.settings import Settings
from ingestor.sink.postgres import ping

if TYPE_CHECKING:
    from ingestor.observe.metrics import PrometheusHooks

log = logging.getLogger("ingestor")


class Telemetry:
    """Build with `observing`; pass `hooks` to the pipeline, then `attach` it."""

    def __init__(self, settings: Settings, hooks: Hooks) -> None:
        self._settings = settings
        self.readiness = Readiness()
        self.metrics = _prometheus_hooks() if settings.metrics_port else None
        if self.metrics is not None:
            self.metrics.watch_readiness(self.readiness)
        self.progress = ProgressLog() if settings.progress_interval else None
        observers = [self.readiness, self.metrics, self.progress]
        self.hooks = HookChain(hooks, *(hook for hook in observers if hook is not None))
        if self.metrics is not None:
            self.metrics.watch_hooks(self.hooks.failures)
        self._tasks: list[asyncio.Task[None]] = []

    def attach(self, pipeline: Buffers, queue: DepthSource, pool: asyncpg.Pool) -> None:
        """Watch a pipeline about to run: its gauges, a live database check for /readyz,
        and the background tasks."""
        self.readiness.probe_database_with(lambda: ping(pool))
        if self.metrics is not None:
            self.metrics.watch(pipeline)
        interval = self._settings.queue_depth_interval
        if interval:
            self._spawn(sample_depth(queue, interval, self.hooks), "queue-depth")
        if self.progress is not None:
            self._spawn(self.progress.run(self._settings.progress_interval), "progress")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(work, name=name))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def observing(settings: Settings, hooks: Hooks) -> AsyncIterator[Telemetry]:
    """Telemetry for one run, with its HTTP server listening (when a port is set) from
    the start, so /healthz answers while the service is still migrating."""
    telemetry = Telemetry(settings, hooks)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(telemetry.close)
        if telemetry.metrics is not None:
            # The server's module (and prometheus_client's exposition), imported only when
            # it serves.
            from ingestor.observe.http import build_app, serving  # noqa: PLC0415

            app = build_app(telemetry.metrics.registry, telemetry.readiness)
            await stack.enter_async_context(
                serving(app, settings.metrics_host, settings.metrics_port)
            )
        yield telemetry


def _prometheus_hooks() -> PrometheusHooks:
    """The metrics, with prometheus_client imported only when there is a port to serve
    them on."""
    from ingestor.observe.metrics import PrometheusHooks  # noqa: PLC0415

    return PrometheusHooks()


async def sample_depth(queue: DepthSource, interval: float, hooks: Hooks) -> None:
    """Report the queue's depth every `interval` seconds (one GetQueueAttributes call, not
    one per message). A failed sample is reported like any retry, and tried again at the
    next tick: a gauge a little stale is no reason to stop the service."""
    failures = 0  # samples failed in a row: the attempt number the hooks see
    while True:
        await asyncio.sleep(interval)
        try:
            depth = await queue.depths()
        except IngestorError as error:
            failures += 1
            hooks.on_retry("depth", error, failures, interval)
            continue
        except Exception:
            log.exception("sampling the queue depth failed", extra={"event": "depth_failed"})
            continue
        if failures:
            failures = 0
            hooks.on_recovered("depth")
        hooks.on_queue_depth(depth)
