"""The pipeline: receive workers -> bounded queue -> transform -> bounded queue -> writers.

It owns the tasks and their shutdown. On stop it stops receiving, lets everything received
flow through to commit and delete, and exits; whatever cannot finish within the shutdown
timeout is handed back to SQS (visibility 0) so another consumer takes it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from ingestor.errors import IngestorError
from ingestor.hooks import Hooks
from ingestor.inflight import InFlight
from ingestor.isolation import Sink
from ingestor.models import BatchResult, Envelope, Processed
from ingestor.retry import Backoff, retrying
from ingestor.source import QueueClient, Receiver
from ingestor.transform import Transformer
from ingestor.writer import BatchWriter, WriterConfig

log = logging.getLogger("ingestor")


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    receivers: int = 16
    receive_wait_seconds: int = 20
    visibility_timeout: int = 120
    drain: bool = False
    batch_size: int = 2_000
    flush_interval: float = 0.5
    buffer_messages: int = 5_000
    writers: int = 2
    shutdown_timeout: float = 30.0
    max_hold_seconds: float = 900.0

    @property
    def heartbeat_interval(self) -> float:
        """Extend visibility three times per timeout: two heartbeats may fail in a row
        before SQS would show a held message to another consumer."""
        return max(0.5, self.visibility_timeout / 3)

    @property
    def queue_bound(self) -> int:
        """Each internal queue holds lists of up to 10 messages; split the buffer between
        the two queues."""
        return max(1, self.buffer_messages // 20)


@dataclass(frozen=True, slots=True)
class Buffered:
    """What waits in the two internal queues, in items of up to 10 messages (one receive
    each), and how many items each may hold."""

    received: int
    processed: int
    capacity: int


class Pipeline:
    def __init__(
        self,
        queue: QueueClient,
        sink: Sink,
        transformer: Transformer,
        config: PipelineConfig,
        hooks: Hooks,
    ) -> None:
        self._queue = queue
        self._sink = sink
        self._transformer = transformer
        self._config = config
        self._hooks = hooks
        self.inflight = InFlight()
        self._received: asyncio.Queue[list[Envelope] | None] = asyncio.Queue(config.queue_bound)
        self._processed: asyncio.Queue[list[Processed] | None] = asyncio.Queue(config.queue_bound)

    def buffered(self) -> Buffered:
        """A read-only look at the internal queues (for gauges; cheap, no copies)."""
        return Buffered(self._received.qsize(), self._processed.qsize(), self._config.queue_bound)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set (or, in drain mode, the queue is empty) and all that was
        received is committed and deleted. Raises a PermanentError that stopped it."""
        self._hooks.on_state("running")
        tasks = self._start(stop)
        heartbeat = asyncio.create_task(self._heartbeat(), name="heartbeat")
        try:
            await self._supervise(tasks, stop)
        finally:
            for task in [*tasks, heartbeat]:
                task.cancel()
            await asyncio.gather(*tasks, heartbeat, return_exceptions=True)
            await self._release_unfinished()
            self._hooks.on_state("stopped")

    def _start(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        config = self._config
        receivers = [
            asyncio.create_task(self._receiver().run(stop), name=f"receiver-{i}")
            for i in range(config.receivers)
        ]
        writers = [
            asyncio.create_task(self._writer().run(), name=f"writer-{i}")
            for i in range(config.writers)
        ]
        return [
            *receivers,
            asyncio.create_task(self._end_after(receivers), name="end-of-input"),
            asyncio.create_task(self._transform(), name="transform"),
            *writers,
        ]

    async def _supervise(self, tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
        everything: asyncio.Future[Any] = asyncio.gather(*tasks)
        stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({everything, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not everything.done():
                self._hooks.on_state("draining")
                await asyncio.wait_for(asyncio.shield(everything), self._config.shutdown_timeout)
            everything.result()  # re-raises the first failure
        except TimeoutError:
            log.error(
                "shutdown timeout (%.0f s) reached; handing %d uncommitted messages back "
                "to the queue",
                self._config.shutdown_timeout,
                len(self.inflight),
                extra={"event": "shutdown_timeout", "held": len(self.inflight)},
            )
        finally:
            stopping.cancel()
            everything.cancel()
            with contextlib.suppress(BaseException):
                await everything

    def _receiver(self) -> Receiver:
        config = self._config
        return Receiver(
            self._queue,
            self._received,
            self.inflight,
            self._hooks,
            wait_seconds=config.receive_wait_seconds,
            visibility_timeout=config.visibility_timeout,
            drain=config.drain,
        )

    def _writer(self) -> BatchWriter:
        config = WriterConfig(self._config.batch_size, self._config.flush_interval)
        return BatchWriter(
            inbox=self._processed,
            sink=self._sink,
            queue=self._queue,
            inflight=self.inflight,
            hooks=self._hooks,
            config=config,
            digest=self._transformer.digest,
        )

    async def _end_after(self, receivers: list[asyncio.Task[None]]) -> None:
        await asyncio.gather(*receivers)
        await self._received.put(None)

    async def _transform(self) -> None:
        process = self._transformer.process
        inbox, outbox = self._received, self._processed
        while (envelopes := await inbox.get()) is not None:
            await outbox.put([process(envelope) for envelope in envelopes])
        for _ in range(self._config.writers):
            await outbox.put(None)

    async def _heartbeat(self) -> None:
        """Keep held messages invisible while they wait for a commit, so a slow flush or
        an outage does not make SQS hand them to another consumer. A message held longer
        than max_hold_seconds is no longer extended: it goes back to the queue (and, after
        maxReceiveCount, to the dead-letter queue) instead of being held forever."""
        config, loop = self._config, asyncio.get_running_loop()
        failures = 0  # beats failed in a row: the attempt number the hooks see
        while True:
            await asyncio.sleep(config.heartbeat_interval)
            handles = self.inflight.held_since(loop.time() - config.max_hold_seconds)
            try:
                result = (
                    await self._queue.change_visibility(handles, config.visibility_timeout)
                    if handles
                    else BatchResult(0)
                )
            except IngestorError as error:  # logged once per outage; the next beat tries again
                failures += 1
                self._hooks.on_retry("heartbeat", error, failures, config.heartbeat_interval)
                continue
            except Exception:
                log.exception(
                    "heartbeat failed; trying again at the next beat",
                    extra={"event": "heartbeat_failed"},
                )
                continue
            if failures:  # a beat with nothing to extend also ends an outage
                failures = 0
                self._hooks.on_recovered("heartbeat")
            if handles:
                self._hooks.on_extended(result)

    async def _release_unfinished(self) -> None:
        handles = self.inflight.snapshot()
        if not handles:
            return
        try:
            result = await asyncio.wait_for(
                retrying(lambda: self._queue.change_visibility(handles, 0), Backoff(attempts=3)),
                timeout=10,
            )
        except Exception as error:  # the messages still come back after their timeout
            log.warning(
                "could not hand %d messages back: %s",
                len(handles),
                error,
                extra={"event": "release_failed"},
            )
            return
        self.inflight.committed(handles)
        self._hooks.on_released(result)
