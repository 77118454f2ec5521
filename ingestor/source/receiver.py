"""The receive stage: workers that long-poll the queue and feed the bounded inbox.

A worker waits on `inbox.put` when the inbox is full, so a slow database stops receiving
(backpressure) instead of buffering without limit.

A stop does not drop a poll SQS has already answered: the messages of an answer on its way
would stay invisible for their whole visibility timeout. A poll under way is given
`POLL_GRACE` to come back; whatever it brings after the stop is handed back at once
(visibility 0). A poll still waiting after that has found nothing, and is cut. Pauses
between retries end at a stop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ingestor.errors import IngestorError
from ingestor.models import Envelope
from ingestor.ports import Hooks, QueueClient
from ingestor.retry import RETRY_FOREVER, Backoff, Interrupted, observed
from ingestor.source.acks import Acknowledger
from ingestor.source.drain import DrainWatch
from ingestor.source.leases import InFlight

# Seconds a poll under way at a stop may take to come back. An answer SQS has sent
# arrives within milliseconds; a long poll still waiting this long has found nothing.
POLL_GRACE = 2.0


class Receiver:
    """One receive worker. Several run at once: each long poll returns at most 10."""

    def __init__(
        self,
        queue: QueueClient,
        inbox: asyncio.Queue[list[Envelope] | None],
        inflight: InFlight,
        hooks: Hooks,
        acks: Acknowledger,
        *,
        wait_seconds: int,
        visibility_timeout: int | None,
        drain: DrainWatch | None,
        backoff: Backoff = RETRY_FOREVER,
    ) -> None:
        self._queue = queue
        self._inbox = inbox
        self._inflight = inflight
        self._hooks = hooks
        self._acks = acks
        self._wait = wait_seconds
        self._visibility = visibility_timeout
        self._drain = drain
        self._backoff = backoff
        self._polling = False  # a receive is under way (cut after the grace; nothing else is)
        self._cut = False

    async def run(self, stop: asyncio.Event, halt: asyncio.Event) -> None:
        """Receive until `stop` is set or (drain mode) the drain is over. `halt` is set by
        either and cuts a pause between retries short."""
        # The worker's loop is one task for its whole life, awaiting each receive itself:
        # a task per receive (and a wait on it) cost event-loop turns, each queued behind
        # the transform and the writers, so a receive took ~28 ms against a 20 ms round trip.
        work = asyncio.ensure_future(self._receive_all(stop, halt))
        try:
            await self._watch(work, halt)
        except BaseException:  # this worker is cancelled: so is its loop
            work.cancel()
            await asyncio.wait({work})
            raise
        work.result()  # what ended it (a queue that is gone, say) is this worker's

    async def _watch(self, work: asyncio.Future[None], halt: asyncio.Event) -> None:
        """Until `work` ends. After `halt`, a poll under way has POLL_GRACE to come back,
        then it is cut (a hand-back or a hand-on under way is not)."""
        halted: asyncio.Future[Any] = asyncio.ensure_future(halt.wait())
        try:
            await asyncio.wait({work, halted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            halted.cancel()
        if not work.done():
            await asyncio.wait({work}, timeout=POLL_GRACE)
        if not work.done() and self._polling:
            self._cut = True
            work.cancel()
        await asyncio.wait({work})

    async def _receive_all(self, stop: asyncio.Event, halt: asyncio.Event) -> None:
        while not halt.is_set():
            try:
                envelopes = await self._poll(halt)
            except Interrupted as cut:
                if cut.after_failures and not stop.is_set():
                    # The drain is over, so SQS answered: this worker's outage is too.
                    self._hooks.on_recovered("receive")
                return
            if envelopes is None:
                return
            if stop.is_set():
                await self._hand_back(envelopes)
                return
            if envelopes:
                await self._pass_on(envelopes)
            elif self._drain is not None and await self._drain.over():
                return

    async def _poll(self, halt: asyncio.Event) -> list[Envelope] | None:
        """One receive (retried while transient); None when it was cut after a halt."""
        self._polling = True
        try:
            return await observed("receive", self._receive_once, self._backoff, self._hooks, halt)
        except asyncio.CancelledError:
            if not self._cut:
                raise
            current = asyncio.current_task()
            assert current is not None
            current.uncancel()  # our own cut, not a cancellation of this worker
            return None
        finally:
            self._polling = False

    async def _receive_once(self) -> list[Envelope]:
        try:
            return await self._queue.receive(self._wait, self._visibility)
        except IngestorError:
            if self._drain is not None:
                # An answer lost on the way (cut short, timed out) may have taken messages
                # that SQS now hides for the visibility timeout: this process's, not
                # another consumer's, so the drain's wait for held messages starts over.
                self._drain.received()
            raise

    async def _pass_on(self, envelopes: list[Envelope]) -> None:
        now = asyncio.get_running_loop().time()
        self._inflight.add((e.receipt_handle for e in envelopes), now)
        self._hooks.on_received(len(envelopes))
        if self._drain is not None:
            self._drain.received()
        await self._inbox.put(envelopes)

    async def _hand_back(self, envelopes: list[Envelope]) -> None:
        """Messages a poll brought after the stop: visible again at once, for whoever
        receives next. Held meanwhile, so that if this is cut short the pipeline's final
        hand-back covers them; a refusal is logged there, not raised."""
        if not envelopes:
            return
        handles = [e.receipt_handle for e in envelopes]
        self._inflight.add(handles, asyncio.get_running_loop().time())
        try:
            result = await self._acks.change_visibility(handles, 0, "release")
        except IngestorError:
            return  # still held: the pipeline's hand-back tries again, and says why
        self._inflight.released(handles)
        self._hooks.on_released(result)
