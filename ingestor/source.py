"""The receive stage: workers that long-poll the queue and feed the bounded inbox.

A worker waits on `inbox.put` when the inbox is full, so a slow database stops receiving
(backpressure) instead of buffering without limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from ingestor.hooks import Hooks
from ingestor.inflight import InFlight
from ingestor.models import BatchResult, Envelope
from ingestor.retry import RETRY_FOREVER, Backoff, observed


class QueueClient(Protocol):
    """The seam to the queue: SQS in production, an in-memory fake in unit tests."""

    async def receive(self, wait_seconds: int, visibility_timeout: int) -> list[Envelope]: ...

    async def delete(self, receipt_handles: Sequence[str]) -> BatchResult: ...

    async def change_visibility(
        self, receipt_handles: Sequence[str], seconds: int
    ) -> BatchResult: ...

    async def depth(self) -> int: ...


class Receiver:
    """One receive worker. Several run at once: each long poll returns at most 10."""

    def __init__(
        self,
        queue: QueueClient,
        inbox: asyncio.Queue[list[Envelope] | None],
        inflight: InFlight,
        hooks: Hooks,
        *,
        wait_seconds: int,
        visibility_timeout: int,
        drain: bool,
        backoff: Backoff = RETRY_FOREVER,
    ) -> None:
        self._queue = queue
        self._inbox = inbox
        self._inflight = inflight
        self._hooks = hooks
        self._wait = wait_seconds
        self._visibility = visibility_timeout
        self._drain = drain
        self._backoff = backoff

    async def run(self, stop: asyncio.Event) -> None:
        """Receive until `stop` is set, or (drain mode) until a receive comes back empty."""
        stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                envelopes = await self._receive_unless(stopped)
                if envelopes is None or (not envelopes and self._drain):
                    return
                if envelopes:
                    now = asyncio.get_running_loop().time()
                    self._inflight.add((e.receipt_handle for e in envelopes), now)
                    self._hooks.on_received(len(envelopes))
                    await self._inbox.put(envelopes)
        finally:
            stopped.cancel()

    async def _receive_unless(self, stopped: asyncio.Future[Any]) -> list[Envelope] | None:
        """One receive (retried while transient), or None when stop comes first. A long
        poll cut short loses nothing: at worst a response already on its way is dropped,
        and SQS shows those messages again after the visibility timeout."""
        receive = asyncio.ensure_future(
            observed("receive", self._receive_once, self._backoff, self._hooks)
        )
        racing: set[asyncio.Future[Any]] = {receive, stopped}
        done, _ = await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        if receive in done:
            return receive.result()
        receive.cancel()
        return None

    async def _receive_once(self) -> list[Envelope]:
        return await self._queue.receive(self._wait, self._visibility)
