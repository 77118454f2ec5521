"""The pipeline: receive workers -> bounded queue -> transform -> bounded queue -> writers.

It owns the tasks and their shutdown. On stop it stops receiving, lets everything received
flow through to commit and delete, and exits; whatever cannot finish within the shutdown
timeout is handed back to SQS (visibility 0) so another consumer takes it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, replace
from typing import Any

from ingestor.errors import QueueGone
from ingestor.models import Buffered, Envelope, Processed
from ingestor.observe.hooks import HookChain
from ingestor.pipeline.writer import BatchWriter, TransactionSize, WriterConfig, delete_calls
from ingestor.ports import Hooks, QueueClient, Sink
from ingestor.sink.isolation import Breaker
from ingestor.source.acks import DEFAULT_POLICY, Acknowledger, AckPolicy
from ingestor.source.drain import DrainWatch
from ingestor.source.leases import InFlight, LeaseTerms, hand_back, heartbeat
from ingestor.source.receiver import POLL_GRACE, Receiver
from ingestor.transform.transformer import Transformer


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    receivers: int = 16
    receive_wait_seconds: int = 20
    # The visibility timeout in force (the queue's own, unless the operator set one): what
    # the heartbeat extends to, and how long a drain waits for messages held elsewhere.
    visibility_timeout: int = 30
    # Sent on every receive only when the operator set one; None leaves the queue's own.
    receive_visibility: int | None = None
    drain: bool = False
    batch_size: int = 2_000
    flush_interval: float = 0.5
    buffer_messages: int = 5_000
    writers: int = 4
    shutdown_timeout: float = 30.0
    max_hold_seconds: float = 900.0

    @property
    def heartbeat_interval(self) -> float:
        """Extend visibility three times per timeout: two heartbeats may fail in a row
        before SQS would show a held message to another consumer."""
        return max(0.5, self.visibility_timeout / 3)

    @property
    def lease_terms(self) -> LeaseTerms:
        return LeaseTerms(self.heartbeat_interval, self.visibility_timeout, self.max_hold_seconds)

    @property
    def queue_bound(self) -> int:
        """Each internal queue holds lists of up to 10 messages; split the buffer between
        the two queues."""
        return max(1, self.buffer_messages // 20)

    @property
    def held_wait(self) -> float:
        """How long a drain waits for messages another consumer holds: until their
        visibility timeout has surely run out and a receive has had time to see them."""
        return self.visibility_timeout + self.receive_wait_seconds + 1.0

    @property
    def release_budget(self) -> float:
        """The part of the shutdown timeout kept for handing messages back."""
        return min(5.0, self.shutdown_timeout / 4)


class Pipeline:
    def __init__(
        self,
        queue: QueueClient,
        sink: Sink,
        transformer: Transformer,
        config: PipelineConfig,
        hooks: Hooks,
        *,
        acks: AckPolicy = DEFAULT_POLICY,
    ) -> None:
        self._queue = queue
        self._sink = sink
        self._transformer = transformer
        self._config = config
        # Every stage reports through a chain: an observer that raises never reaches them.
        self._hooks = hooks if isinstance(hooks, HookChain) else HookChain(hooks)
        hooks = self._hooks
        self.acks = Acknowledger(queue, acks, hooks)
        # The writers' deletes: as many calls at once per batch as keep up with receiving.
        calls = delete_calls(config.receivers, config.writers, acks.concurrency)
        self._deletes = Acknowledger(queue, replace(acks, concurrency=calls), hooks)
        # One for all writers: refusals in a row across batches; one transaction size.
        self._breaker = Breaker()
        self._size = TransactionSize(config.batch_size, hooks=hooks)
        self.inflight = InFlight()
        self._received: asyncio.Queue[list[Envelope] | None] = asyncio.Queue(config.queue_bound)
        self._processed: asyncio.Queue[list[Processed] | None] = asyncio.Queue(config.queue_bound)
        self.drain = (
            DrainWatch(queue, lambda: self.inflight.idle, config.held_wait, hooks)
            if config.drain
            else None
        )
        self._stopping = asyncio.Event()  # receivers end: a stop, or a failure
        # ...and pauses between retries end: also at the end of a drain
        self._halt = self.drain.ended if self.drain is not None else asyncio.Event()

    def buffered(self) -> Buffered:
        """A read-only look at the internal queues (for gauges; cheap, no copies)."""
        return Buffered(self._received.qsize(), self._processed.qsize(), self._config.queue_bound)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set (or, in drain mode, the drain is over) and all that was
        received is committed and deleted. Raises a PermanentError that stopped it."""
        self._hooks.on_state("running")
        receivers, tasks = self._start(stop)
        beat = heartbeat(self.inflight, self.acks, self._hooks, self._config.lease_terms)
        heartbeat_task = asyncio.create_task(beat, name="heartbeat")
        failure: BaseException | None = None
        try:
            await self._supervise(tasks, stop)
        except BaseException as error:
            failure = error
            raise
        finally:
            await self._end_receiving(receivers)
            for task in [*tasks, heartbeat_task]:
                task.cancel()
            await asyncio.gather(*tasks, heartbeat_task, return_exceptions=True)
            if not isinstance(failure, QueueGone):  # a queue that is gone takes nothing back
                await hand_back(self.inflight, self.acks, self._hooks, self._config.release_budget)
            self._hooks.on_state("stopped")

    def _start(
        self, stop: asyncio.Event
    ) -> tuple[list[asyncio.Task[None]], list[asyncio.Task[None]]]:
        """(the receive workers, every task): receivers end at `self._stopping`, which
        follows `stop` (or a failure); `self._halt` also ends at the drain's end."""
        config = self._config
        receivers = [
            asyncio.create_task(
                self._receiver().run(self._stopping, self._halt), name=f"receiver-{i}"
            )
            for i in range(config.receivers)
        ]
        writers = [
            asyncio.create_task(self._writer().run(), name=f"writer-{i}")
            for i in range(config.writers)
        ]
        return receivers, [
            *receivers,
            asyncio.create_task(self._follow(stop), name="stop"),
            asyncio.create_task(self._end_after(receivers), name="end-of-input"),
            asyncio.create_task(self._transform(), name="transform"),
            *writers,
        ]

    async def _follow(self, stop: asyncio.Event) -> None:
        """Stop receiving when `stop` is set; return once receiving has ended otherwise."""
        stopping = asyncio.ensure_future(stop.wait())
        halting = asyncio.ensure_future(self._halt.wait())
        try:
            await asyncio.wait({stopping, halting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            halting.cancel()
        if stop.is_set():
            self._stop_receiving()

    def _stop_receiving(self) -> None:
        self._stopping.set()
        self._halt.set()

    async def _end_receiving(self, receivers: list[asyncio.Task[None]]) -> None:
        """Let polls under way come back (and hand their messages back) before the
        receivers are cancelled, as after a stop, also after a failure."""
        self._stop_receiving()
        if running := [task for task in receivers if not task.done()]:
            await asyncio.wait(running, timeout=POLL_GRACE)

    async def _supervise(self, tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
        """Until every task ends, or a stop's deadline (the shutdown timeout, less what
        the hand-back keeps for itself) passes. The first failure is raised."""
        everything: asyncio.Future[Any] = asyncio.gather(*tasks)
        stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({everything, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not everything.done():
                self._hooks.on_state("draining")
                budget = self._config.shutdown_timeout - self._config.release_budget
                await asyncio.wait({everything}, timeout=budget)
            if not everything.done():
                self._timed_out()
            else:
                everything.result()  # re-raises the first failure
        finally:
            stopping.cancel()
            everything.cancel()
            with contextlib.suppress(BaseException):
                await everything

    def _timed_out(self) -> None:
        self._hooks.on_shutdown_timeout(self._config.shutdown_timeout, len(self.inflight))

    def _receiver(self) -> Receiver:
        config = self._config
        return Receiver(
            self._queue,
            self._received,
            self.inflight,
            self._hooks,
            self.acks,
            wait_seconds=config.receive_wait_seconds,
            visibility_timeout=config.receive_visibility,
            drain=self.drain,
        )

    def _writer(self) -> BatchWriter:
        config = WriterConfig(self._config.batch_size, self._config.flush_interval)
        return BatchWriter(
            inbox=self._processed,
            sink=self._sink,
            acks=self._deletes,
            inflight=self.inflight,
            hooks=self._hooks,
            config=config,
            digest=self._transformer.digest,
            breaker=self._breaker,
            size=self._size,
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
