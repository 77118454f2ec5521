"""The pipeline with fakes: drain, graceful stop, backpressure, fatal errors."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
import pytest

from ingestor.errors import DatabaseError, QueueUnavailable
from ingestor.models import EntryFailure, Envelope, LoginRow, QueueDepth, Rejection, WriteResult
from ingestor.observe.hooks import Stats
from ingestor.pipeline.supervisor import Pipeline, PipelineConfig
from ingestor.transform.masking import HmacMasker
from ingestor.transform.transformer import Transformer
from tests.envelopes import sns
from tests.fakes import FakeQueue, FakeSink, envelopes
from tests.waiting import wait_until

TRANSFORMER = Transformer(HmacMasker(b"p" * 32))
GOOD = orjson.dumps({"user_id": "u", "ip": "10.0.0.1"}).decode()
SNS_ID = "63a3f6b6-d533-4a47-aef9-fcf5cf758c76"


def pipeline(queue: FakeQueue, sink: object, **config: object) -> tuple[Pipeline, Stats]:
    stats = Stats()
    settings = {"receivers": 3, "receive_wait_seconds": 1, "batch_size": 50, "flush_interval": 0.02}
    settings.update(config)  # type: ignore[arg-type]
    return Pipeline(queue, sink, TRANSFORMER, PipelineConfig(**settings), stats), stats  # type: ignore[arg-type]


async def test_drain_loads_everything_then_stops() -> None:
    queue = FakeQueue(envelopes([GOOD] * 480 + ["junk"] * 20))
    sink = FakeSink()
    runner, stats = pipeline(queue, sink, drain=True)
    await asyncio.wait_for(runner.run(asyncio.Event()), 5)
    assert (len(sink.rows), len(sink.rejects)) == (480, 20)
    assert len(queue.deleted) == 500
    assert (stats.received, stats.loaded, stats.rejected) == (500, 480, 20)
    assert len(runner.inflight) == 0


async def test_stop_flushes_what_was_received_and_exits() -> None:
    queue = FakeQueue(envelopes([GOOD] * 200))
    sink = FakeSink()
    runner, _ = pipeline(queue, sink, flush_interval=60, batch_size=10_000)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    while queue.pending:  # noqa: ASYNC110 - polls a fake: let it receive everything
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    # The half-full batch was committed and deleted on the way out
    assert len(sink.rows) == 200
    assert len(queue.deleted) == 200


class BlockedSink:
    """A database that never answers."""

    async def write(self, rows: object, rejects: object, vault: object = ()) -> WriteResult:
        await asyncio.Event().wait()
        raise AssertionError


async def test_a_stuck_database_stops_the_receivers_and_uncommitted_messages_go_back() -> None:
    # Given a deep queue and a database that never commits
    queue = FakeQueue(envelopes([GOOD] * 20_000))
    runner, stats = pipeline(
        queue, BlockedSink(), buffer_messages=200, batch_size=50, writers=1, shutdown_timeout=0.2
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await wait_until(
        lambda: runner.buffered().received >= runner.buffered().capacity, 5, "a full buffer"
    )
    # Then receiving stops once the bounded buffers are full (backpressure)
    received = stats.received
    assert received <= 200 + 50 + 3 * 10 + 30  # buffers + one batch + receivers' hands
    await asyncio.sleep(0.2)
    assert stats.received == received
    # And on stop, what was not committed is handed back at once (visibility 0)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert len(queue.visibility) == received
    assert set(queue.visibility.values()) == {0}
    assert queue.deleted == []


class BrokenSink:
    async def write(
        self, rows: list[LoginRow], rejects: list[Rejection], vault: object = ()
    ) -> WriteResult:
        raise DatabaseError("permission denied for table user_logins")


async def test_a_permanent_database_error_stops_the_pipeline_and_releases_messages() -> None:
    queue = FakeQueue(envelopes([GOOD] * 30))
    runner, _ = pipeline(queue, BrokenSink(), drain=True)
    with pytest.raises(DatabaseError):
        await asyncio.wait_for(runner.run(asyncio.Event()), 5)
    assert queue.deleted == []
    assert len(queue.visibility) == 30


class OneFifoGroup(FakeQueue):
    """An SQS FIFO queue whose messages are all in one message group: while any received
    message of the group is not deleted, the group is locked and receives come back empty."""

    def __init__(self, messages: list[Envelope]) -> None:
        super().__init__(messages)
        self.out: set[str] = set()

    async def receive(self, wait_seconds: int, visibility_timeout: int | None) -> list[Envelope]:
        if self.out:
            await asyncio.sleep(0.001 * wait_seconds)
            return []
        batch = await super().receive(wait_seconds, visibility_timeout)
        self.out.update(e.receipt_handle for e in batch)
        return batch

    async def delete_batch(self, receipt_handles: Sequence[str]) -> tuple[EntryFailure, ...]:
        self.out.difference_update(receipt_handles)
        return await super().delete_batch(receipt_handles)

    async def depths(self) -> QueueDepth:
        return QueueDepth(len(self.pending), len(self.out))


async def test_a_drain_does_not_end_while_its_own_messages_lock_a_fifo_group() -> None:
    # Given a FIFO group of 600 messages: a receive comes back empty while any is in flight
    queue = OneFifoGroup(envelopes([GOOD] * 600))
    sink = FakeSink()
    runner, _ = pipeline(queue, sink, drain=True, batch_size=50)
    # When the pipeline drains it
    await asyncio.wait_for(runner.run(asyncio.Event()), 30)
    # Then it ended only once every message was committed and deleted
    assert len(sink.rows) == 600
    assert len(queue.deleted) == 600
    assert runner.drain is not None
    assert runner.drain.done
    assert runner.drain.held is None


class LatePoll(FakeQueue):
    """A first receive answered at once, then a long poll answered 2.5 s later (after the
    pipeline failed at 0.6 s: within the 2 s grace), and hand-backs that take 0.5 s."""

    def __init__(self) -> None:
        super().__init__(envelopes([GOOD] * 10))
        self.polls = 0

    async def receive(self, wait_seconds: int, visibility_timeout: int | None) -> list[Envelope]:
        self.polls += 1
        if self.polls == 1:
            return await super().receive(wait_seconds, visibility_timeout)
        await asyncio.sleep(2.5)  # SQS's answer, on its way
        return envelopes([GOOD] * 10, start=1000)

    async def change_visibility_batch(
        self, receipt_handles: Sequence[str], seconds: int
    ) -> tuple[EntryFailure, ...]:
        await asyncio.sleep(0.5)
        return await super().change_visibility_batch(receipt_handles, seconds)


class FailsSoon:
    async def write(self, rows: object, rejects: object, vault: object = ()) -> WriteResult:
        await asyncio.sleep(0.6)
        raise DatabaseError("permission denied for table user_logins")


async def test_a_poll_answered_after_a_failure_has_its_messages_handed_back() -> None:
    queue = LatePoll()
    runner, _ = pipeline(queue, FailsSoon(), receivers=1, receive_wait_seconds=20)
    with pytest.raises(DatabaseError):
        await asyncio.wait_for(runner.run(asyncio.Event()), 20)
    late = [f"h{i}" for i in range(1000, 1010)]
    assert {queue.visibility.get(handle) for handle in late} == {0}
    assert queue.deleted == []


async def test_copies_of_one_sns_notification_are_one_row_and_every_copy_is_deleted() -> None:
    # Given one event sent raw, and published to SNS and delivered twice in one receive
    notification = sns({"user_id": "u", "ip": "10.0.0.1"}, SNS_ID)
    queue = FakeQueue(envelopes([GOOD, notification, notification]))
    sink = FakeSink()  # refuses a write holding one message id twice
    runner, stats = pipeline(queue, sink, drain=True)
    # When the pipeline drains it
    await asyncio.wait_for(runner.run(asyncio.Event()), 5)
    # Then the SNS event is one row under its SNS key, and all three messages are deleted
    assert set(sink.rows) == {"m0", f"sns:{SNS_ID}"}
    assert sorted(queue.deleted) == ["h0", "h1", "h2"]
    assert (stats.received, stats.loaded, stats.rejected) == (3, 2, 0)
    # When SNS delivers it once more, in a later batch
    queue.pending.extend(envelopes([notification], start=3))
    runner, stats = pipeline(queue, sink, drain=True)
    await asyncio.wait_for(runner.run(asyncio.Event()), 5)
    # Then it replaces its row, and is deleted
    assert (stats.inserted, stats.replaced) == (0, 1)
    assert set(sink.rows) == {"m0", f"sns:{SNS_ID}"}
    assert sorted(queue.deleted) == ["h0", "h1", "h2", "h3"]


class LosingAnswers(FakeQueue):
    """An SQS whose answers with messages are lost on the way (a cut-short body) until
    `until`: SQS took the messages (invisible for `visibility` seconds), the client got
    an error."""

    def __init__(self, messages: list[Envelope], visibility: float, until: float) -> None:
        super().__init__(messages)
        self.hidden: list[tuple[float, Envelope]] = []
        self.visibility_seconds, self.until, self.lost = visibility, until, 0

    async def receive(self, wait_seconds: int, visibility_timeout: int | None) -> list[Envelope]:
        now = asyncio.get_running_loop().time()
        self.pending.extend(e for at, e in self.hidden if at <= now)
        self.hidden = [(at, e) for at, e in self.hidden if at > now]
        batch = await super().receive(wait_seconds, visibility_timeout)
        if batch and now < self.until:
            self.hidden += [(now + self.visibility_seconds, e) for e in batch]
            self.lost += 1
            raise QueueUnavailable("the answer was cut short")
        return batch

    async def depths(self) -> QueueDepth:
        return QueueDepth(len(self.pending), len(self.hidden))


async def test_a_drain_waits_on_while_answers_with_messages_are_being_lost() -> None:
    # Given messages whose receives keep being answered and lost (SQS hides them for the
    # visibility timeout each time) for longer than a drain waits for held messages
    start = asyncio.get_running_loop().time()
    queue = LosingAnswers(envelopes([GOOD] * 5), visibility=1.0, until=start + 3.0)
    sink = FakeSink()
    runner, _ = pipeline(queue, sink, drain=True, visibility_timeout=1, receive_wait_seconds=0)
    assert runner.drain is not None
    assert runner.drain.held_wait < 3.0
    # When the drain runs, then a lost answer counts as a receive that may have brought
    # messages (they are this process's, not another consumer's): it loads them all
    await asyncio.wait_for(runner.run(asyncio.Event()), 20)
    assert queue.lost >= 2
    assert runner.drain.held is None
    assert (len(sink.rows), len(queue.deleted)) == (5, 5)


class SlowDeletes(FakeQueue):
    """Delete calls wait at a gate; counts the calls and receipt handles waiting there."""

    def __init__(self, messages: Sequence[Envelope]) -> None:
        super().__init__(messages)
        self.gate = asyncio.Event()
        self.calls_waiting = 0
        self.handles_waiting = 0

    async def delete_batch(self, receipt_handles: Sequence[str]) -> tuple[EntryFailure, ...]:
        self.calls_waiting += 1
        self.handles_waiting += len(receipt_handles)
        try:
            await self.gate.wait()
        finally:
            self.calls_waiting -= 1
            self.handles_waiting -= len(receipt_handles)
        return await super().delete_batch(receipt_handles)


async def test_many_receivers_delete_with_more_calls_not_more_batches_held() -> None:
    # Given 256 receivers, one writer, and a queue whose deletes do not answer yet
    queue = SlowDeletes(envelopes([GOOD] * 3_000))
    sink = FakeSink()
    runner, _ = pipeline(queue, sink, drain=True, receivers=256, writers=1, batch_size=500)
    task = asyncio.create_task(runner.run(asyncio.Event()))
    # When a third batch has committed while the first two are being deleted
    await wait_until(lambda: sink.writes >= 3, 5, "three commits")
    await wait_until(lambda: queue.calls_waiting >= 100, 5, "two batches' delete calls")
    # Then each batch's 50 calls go at once (not 16 at a time), and the writer holds two
    # batches' receipt handles for deleting, not one more per 16 receivers: it waits
    assert (queue.calls_waiting, queue.handles_waiting) == (100, 1_000)
    assert sink.writes == 3
    # And once SQS answers, everything is deleted
    queue.gate.set()
    await asyncio.wait_for(task, 10)
    assert len(queue.deleted) == 3_000
