"""When `run --drain` is done (PRODUCT.md section 5): the queue shows no visible and no
in-flight message, and everything this process received is committed and deleted.

An empty receive alone does not say so. A consumer that crashed still holds its messages
(invisible until their visibility timeout), a FIFO message group is locked while its
messages are in flight, messages may be delayed, and this process's own commits and
deletes may still be under way. So after an empty receive, once this process holds
nothing, the queue's counts are asked (one GetQueueAttributes call; when the queue is
simply empty that is the whole cost). While they are not all zero, receiving goes on; if
no receive brings anything for the queue's visibility timeout (what another consumer
holds has then surely come back), the drain ends incomplete (exit 3). A receive whose
answer was lost counts as one that brought something: SQS may have handed it messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ingestor.errors import IngestorError
from ingestor.models import QueueDepth
from ingestor.ports import DepthSource, Hooks

CHECK_INTERVAL = 1.0  # seconds between two looks at the counts while waiting


class DrainWatch:
    """Asked by every receive worker after an empty receive: is the drain over?"""

    def __init__(
        self,
        queue: DepthSource,
        idle: Callable[[], bool],
        held_wait: float,
        hooks: Hooks,
        clock: Callable[[], float] = lambda: asyncio.get_running_loop().time(),
    ) -> None:
        self._queue = queue
        self._idle = idle
        self.held_wait = held_wait
        self._hooks = hooks
        self._clock = clock
        self._lock = asyncio.Lock()
        self._stuck_since: float | None = None  # since the counts said "not empty" ...
        self._checked_at = float("-inf")
        self.ended = asyncio.Event()  # set with `done`: ends the receivers' pauses
        self.done = False
        self.held: QueueDepth | None = None  # the counts when it gave up waiting

    def received(self) -> None:
        """A receive brought messages, or may have (its answer was lost): ... and nothing
        came (the queue is moving)."""
        self._stuck_since = None

    async def over(self) -> bool:
        """True once the queue is empty, or held elsewhere for longer than the wait."""
        async with self._lock:
            if not self.done and self._idle() and self._due():
                await self._look()
            if self.done:
                self.ended.set()
            return self.done

    def _due(self) -> bool:
        return self._clock() - self._checked_at >= CHECK_INTERVAL

    async def _look(self) -> None:
        self._checked_at = now = self._clock()
        try:
            depth = await self._queue.depths()
        except IngestorError as error:  # not over yet: the next empty receive asks again
            self._hooks.on_retry("depth", error, 1, CHECK_INTERVAL)
            return
        self._hooks.on_queue_depth(depth)
        if not depth.total:
            self.done = True
            return
        self._stuck_since = self._stuck_since if self._stuck_since is not None else now
        if now - self._stuck_since >= self.held_wait:
            self.done, self.held = True, depth
