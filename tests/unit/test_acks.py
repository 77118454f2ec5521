"""Acknowledgement with a fake queue that fails as SQS does: per-call retries of only the
entries that failed, a delete whose answer was lost counted as done, one outage per
operation in the hooks, and a queue that is gone stopping every chunk."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from ingestor.errors import QueueGone, QueueUnavailable
from ingestor.models import EntryFailure
from ingestor.observe.hooks import LogHooks
from ingestor.retry import Backoff
from ingestor.source.acks import Acknowledger, AckPolicy
from tests.fakes import RecordingHooks

FAST = AckPolicy(concurrency=4, backoff=Backoff(base=0.0001, cap=0.0001, attempts=4))


class FlakyQueue:
    """Deletes that fail by a script: per call number, "lost" (SQS did it, the answer was
    lost), "down" (not done), "half" (every other entry failed on SQS's side), "gone"."""

    def __init__(self, script: dict[int, str]) -> None:
        self.script = script
        self.calls: list[list[str]] = []
        self.deleted: set[str] = set()

    async def delete_batch(self, handles: Sequence[str]) -> tuple[EntryFailure, ...]:
        self.calls.append(list(handles))
        what = self.script.get(len(self.calls), "ok")
        await asyncio.sleep(0)
        if what == "gone":
            raise QueueGone("queue q no longer exists")
        if what == "down":
            raise QueueUnavailable("no SQS answers")
        gone = [h for h in handles if h in self.deleted]
        kept = list(handles)[1::2] if what == "half" else []
        self.deleted.update(h for h in handles if h not in kept)
        if what == "lost":
            raise QueueUnavailable("the answer was lost")
        return tuple(EntryFailure(h, "ReceiptHandleIsInvalid") for h in gone) + tuple(
            EntryFailure(h, "InternalError", retryable=True) for h in kept
        )

    async def change_visibility_batch(
        self, handles: Sequence[str], seconds: int
    ) -> tuple[EntryFailure, ...]:
        raise AssertionError("not used")


async def test_a_delete_whose_answer_was_lost_counts_as_done() -> None:
    queue = FlakyQueue({1: "lost"})
    result = await Acknowledger(queue, FAST).delete([f"h{i}" for i in range(10)])
    # The retry found every handle gone (its own first call deleted them): all done
    assert (result.succeeded, result.failed) == (10, ())
    assert len(queue.calls) == 2


async def test_only_the_entries_that_failed_are_sent_again() -> None:
    queue = FlakyQueue({1: "half"})
    result = await Acknowledger(queue, FAST).delete([f"h{i}" for i in range(10)])
    assert result.succeeded == 10
    assert [len(call) for call in queue.calls] == [10, 5]
    assert queue.calls[1] == [f"h{i}" for i in range(1, 10, 2)]


async def test_each_call_is_retried_on_its_own() -> None:
    # 50 handles are 5 calls; the 2nd call fails once: only it is sent again
    queue = FlakyQueue({2: "down"})
    result = await Acknowledger(queue, FAST).delete([f"h{i}" for i in range(50)])
    assert result.succeeded == 50
    assert len(queue.calls) == 6


async def test_what_still_fails_after_the_last_try_is_returned_by_handle() -> None:
    queue = FlakyQueue(dict.fromkeys(range(1, 5), "down"))
    hooks = RecordingHooks()
    result = await Acknowledger(queue, FAST, hooks).delete(["a", "b"])
    assert result.succeeded == 0
    assert result.failed == (("a", "QueueUnavailable"), ("b", "QueueUnavailable"))
    assert hooks.events == ["retry delete"] * 3 + ["gave up delete"]


async def test_a_queue_that_is_gone_stops_every_chunk() -> None:
    queue = FlakyQueue({1: "gone"})
    with pytest.raises(QueueGone):
        await Acknowledger(queue, FAST).delete([f"h{i}" for i in range(100)])
    # The calls under way were cut, and of the 10, the ones not started were never sent
    assert len(queue.calls) <= FAST.concurrency + 1


async def test_an_operation_that_fails_after_a_partial_failure_is_one_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One chunk half fails, then fails outright, then recovers; another is fine. The log
    # says the outage started and ended once, in that order.
    caplog.set_level("INFO", logger="ingestor")
    queue = FlakyQueue({1: "half", 3: "down"})
    await Acknowledger(queue, FAST, LogHooks()).delete([f"h{i}" for i in range(20)])
    events = [getattr(r, "event", "") for r in caplog.records]
    assert events == ["outage_start", "outage_end"]
