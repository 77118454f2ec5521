"""`run --drain` that kills itself with SIGKILL at a chosen point, for crash tests.

    python -m tests.faults.crashing_run POINT N

POINT is where the N-th occurrence kills the process:
- receive: after a receive call returned messages (held in memory, nothing committed);
- copy:    inside the write transaction, after the COPY and the merge, before the commit;
- commit:  after a batch committed, before its messages are deleted from the queue.
Settings come from the environment, as for `python -m ingestor`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from ingestor.models import Rejection, WriteResult
from ingestor.pipeline.service import run_service
from ingestor.ports import Hooks
from ingestor.settings import load_settings
from ingestor.sink.postgres import PostgresSink


class Countdown:
    def __init__(self, after: int) -> None:
        self.left = after

    def tick(self) -> None:
        self.left -= 1
        if self.left <= 0:
            os.kill(os.getpid(), signal.SIGKILL)


class CrashHooks(Hooks):
    def __init__(self, point: str, countdown: Countdown) -> None:
        self.point, self.countdown = point, countdown

    def on_received(self, count: int) -> None:
        if self.point == "receive":
            self.countdown.tick()

    def on_written(
        self, result: WriteResult, rejections: Sequence[Rejection], seconds: float
    ) -> None:
        if self.point == "commit":
            self.countdown.tick()


def crash_inside_copy(countdown: Countdown) -> None:
    merge_rows = PostgresSink._merge_rows

    async def crashing(self: PostgresSink, connection: Any, rows: Any) -> tuple[int, int]:
        counts = await merge_rows(self, connection, rows)
        if rows:
            countdown.tick()  # the transaction is open: COPY and merge done, not committed
        return counts

    PostgresSink._merge_rows = crashing  # type: ignore[method-assign]


def main() -> None:
    point, after = sys.argv[1], int(sys.argv[2])
    countdown = Countdown(after)
    if point == "copy":
        crash_inside_copy(countdown)
    settings = load_settings(drain=True)
    asyncio.run(run_service(settings, asyncio.Event(), CrashHooks(point, countdown)))


if __name__ == "__main__":
    main()
