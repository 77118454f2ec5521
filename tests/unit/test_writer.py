"""The batching writer with fakes: when it flushes, commit-before-delete, retries and the
isolation of rows the database refuses."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from ingestor.errors import DatabaseError, QueueUnavailable, RowRejected, StatementTimeout
from ingestor.models import Processed
from ingestor.observe.hooks import Stats
from ingestor.pipeline.writer import (
    GROW_AFTER,
    PENDING_DELETES,
    BatchWriter,
    TransactionSize,
    WriterConfig,
    delete_calls,
)
from ingestor.retry import Backoff
from ingestor.sink.isolation import BREAKER_THRESHOLD, Breaker
from ingestor.source.acks import Acknowledger, AckPolicy
from ingestor.source.leases import InFlight
from ingestor.transform.masking import HmacMasker
from ingestor.transform.transformer import Transformer
from tests.fakes import FakeQueue, FakeSink, envelopes

TRANSFORMER = Transformer(HmacMasker(b"w" * 32))
FAST = Backoff(base=0.001, cap=0.001)


def processed(count: int, start: int = 0, **fields: object) -> list[Processed]:
    body = orjson.dumps({"user_id": "u", "app_version": "1.0", **fields}).decode()
    return [TRANSFORMER.process(e) for e in envelopes([body] * count, start)]


def make_writer(
    sink: FakeSink, queue: FakeQueue, batch_size: int = 100, interval: float = 0.05
) -> tuple[BatchWriter, asyncio.Queue[list[Processed] | None], Stats]:
    inbox: asyncio.Queue[list[Processed] | None] = asyncio.Queue()
    stats = Stats()
    config = WriterConfig(batch_size, interval, write_backoff=FAST)
    acks = Acknowledger(queue, AckPolicy(backoff=Backoff(0.001, 0.001, attempts=3)), stats)
    writer = BatchWriter(
        inbox=inbox,
        sink=sink,
        acks=acks,
        inflight=InFlight(),
        hooks=stats,
        config=config,
        digest=TRANSFORMER.digest,
    )
    return writer, inbox, stats


async def test_flushes_when_the_batch_is_full() -> None:
    calls: list[str] = []
    sink, queue = FakeSink(calls), FakeQueue(calls=calls)
    writer, inbox, _ = make_writer(sink, queue, batch_size=20, interval=60)
    for i in range(3):
        inbox.put_nowait(processed(10, start=10 * i))
    # When it collects, it stops at the batch size without waiting for the interval
    batch, ended = await asyncio.wait_for(writer.collect(), 1)
    assert (len(batch), ended) == (20, False)


async def test_flushes_a_partial_batch_after_the_interval() -> None:
    sink, queue = FakeSink(), FakeQueue()
    writer, inbox, _ = make_writer(sink, queue, batch_size=1000, interval=0.05)
    inbox.put_nowait(processed(3))
    loop = asyncio.get_running_loop()
    started = loop.time()
    batch, ended = await writer.collect()
    assert (len(batch), ended) == (3, False)
    assert loop.time() - started >= 0.04


async def test_end_of_stream_flushes_what_is_left_and_stops() -> None:
    calls: list[str] = []
    sink, queue = FakeSink(calls), FakeQueue(calls=calls)
    writer, inbox, stats = make_writer(sink, queue, batch_size=1000, interval=60)
    inbox.put_nowait(processed(7))
    inbox.put_nowait(None)
    await asyncio.wait_for(writer.run(), 1)
    assert calls == ["commit 7+0", "delete 7"]
    assert stats.inserted == 7


async def test_deletes_only_after_the_commit() -> None:
    # Given a database that fails twice, transiently
    calls: list[str] = []
    sink, queue = FakeSink(calls, transient_failures=2), FakeQueue(calls=calls)
    writer, _, stats = make_writer(sink, queue)
    # When a batch is flushed
    await writer.flush(processed(5))
    # Then it was retried, and nothing was deleted before the commit
    assert sink.writes == 3
    assert calls == ["commit 5+0", "delete 5"]
    assert sorted(queue.deleted) == [f"h{i}" for i in range(5)]
    assert stats.deleted == 5


async def test_a_message_twice_in_one_batch_is_one_row_and_both_copies_are_deleted() -> None:
    sink, queue = FakeSink(), FakeQueue()
    writer, _, _ = make_writer(sink, queue)
    first = processed(1)[0]
    again = Processed(first.message_id, "h-again", first.outcome, first.sent_timestamp_ms, 2)
    await writer.flush([first, again])
    assert list(sink.rows) == [first.message_id]
    assert sorted(queue.deleted) == ["h-again", first.receipt_handle]


async def test_a_row_the_database_refuses_is_rejected_and_the_rest_commits() -> None:
    # Given a database constraint that refuses one row of a batch of 9
    sink = FakeSink(refuse=lambda row: row.message_id == "m6")
    queue = FakeQueue()
    writer, _, stats = make_writer(sink, queue)
    batch = processed(9) + processed(1, start=9, ip="300.0.0.1")  # plus a reject
    # When the batch is flushed
    result = await writer.flush(batch)
    # Then the other 8 rows and the validation reject commit, the refused row is a reject
    assert sorted(sink.rows) == sorted(f"m{i}" for i in range(9) if i != 6)
    assert sink.rejects["m6"].reason_code == "db_23514"
    assert sink.rejects["m6"].body_kind == "row"
    assert sink.rejects["m9"].reason_code == "invalid_ip"
    assert (result.inserted, result.rejected_by_db) == (8, 1)
    assert stats.reasons == {"db_23514": 1, "invalid_ip": 1}
    # And every message of the batch leaves the queue
    assert len(queue.deleted) == 10


async def test_a_reject_the_database_refuses_is_kept_without_its_body() -> None:
    # Given a database that refuses any reject that has a body (a DBA constraint, say)
    class PickySink(FakeSink):
        async def write(self, rows, rejects, vault=()):  # type: ignore[no-untyped-def]
            if any(r.body is not None for r in rejects):
                raise RowRejected("23514", "CheckViolationError, constraint small_bodies")
            return await super().write(rows, rejects)

    sink, queue = PickySink(), FakeQueue()
    writer, _, stats = make_writer(sink, queue)
    # When a batch with three rows and one (validation) reject is flushed
    await writer.flush(processed(3) + processed(1, start=3, ip="300.0.0.1"))
    # Then the rows commit, and the reject is kept with the database's reason, no body
    assert len(sink.rows) == 3
    kept = sink.rejects["m3"]
    assert (kept.reason_code, kept.body) == ("db_23514", None)
    assert "invalid_ip" in kept.reason
    assert len(queue.deleted) == 4
    # And the hooks count that message once, under the reason it was stored with
    assert (stats.rejected, dict(stats.reasons)) == (1, {"db_23514": 1})


async def test_a_table_that_refuses_every_row_stops_before_the_batch_turns_into_rejects() -> None:
    sink, queue = FakeSink(refuse=lambda row: True), FakeQueue()
    writer, _, _ = make_writer(sink, queue)
    with pytest.raises(DatabaseError, match=f"refused {BREAKER_THRESHOLD} rows in a row"):
        await writer.flush(processed(30))
    # Those refused before the breaker tripped are kept with reasons; the rest stays queued
    assert len(sink.rejects) == BREAKER_THRESHOLD - 1
    assert queue.deleted == []


async def test_the_breaker_counts_across_batches_of_one_message() -> None:
    sink, queue = FakeSink(refuse=lambda row: True, refusal="P0001"), FakeQueue()
    writer, _, stats = make_writer(sink, queue)
    for i in range(BREAKER_THRESHOLD - 1):
        await writer.flush(processed(1, start=i))
    with pytest.raises(DatabaseError, match="P0001"):
        await writer.flush(processed(1, start=BREAKER_THRESHOLD))
    assert stats.reasons == {"db_P0001": BREAKER_THRESHOLD - 1}


async def test_an_accepted_row_resets_the_breaker() -> None:
    sink = FakeSink(refuse=lambda row: row.message_id.endswith(("1", "3", "5", "7")))
    writer, _, stats = make_writer(sink, FakeQueue())
    for i in range(5):  # 4 refused in every 10, never 10 in a row
        await writer.flush(processed(10, start=10 * i))
    assert stats.rejected == 20
    assert len(sink.rows) == 30


async def test_a_statement_timeout_splits_the_batch() -> None:
    # Given a database that cancels any transaction of more than 100 messages
    calls: list[str] = []
    sink, queue = FakeSink(calls, timeout_above=100), FakeQueue(calls=calls)
    writer, _, stats = make_writer(sink, queue, batch_size=1_000)
    # When a batch of 1,000 is flushed
    await writer.flush(processed(1_000))
    # Then it commits in transactions that fit, every message once, then deletes them
    sizes = [int(c.split()[1].split("+")[0]) for c in calls if c.startswith("commit")]
    assert sum(sizes) == 1_000
    assert max(sizes) <= 100
    assert stats.inserted == 1_000
    assert len(queue.deleted) == 1_000


def test_the_transaction_size_halves_on_a_timeout_and_grows_back_after_commits() -> None:
    size = TransactionSize(1_000)
    cancelled = StatementTimeout("canceling statement due to statement timeout")
    assert size.shrink(cancelled)
    assert size.shrink(cancelled)
    assert size.limit == 250
    for _ in range(GROW_AFTER - 1):
        size.fitted()
    assert size.limit == 250
    size.fitted()
    assert size.limit == 500
    for _ in range(3 * GROW_AFTER):
        size.fitted()
    assert size.limit == 1_000  # never above the batch size
    one = TransactionSize(1)
    assert not one.shrink(cancelled)  # one message at a time: retried with backoff instead


async def test_a_delete_that_keeps_failing_does_not_stop_the_writer() -> None:
    class DownQueue(FakeQueue):
        async def delete_batch(self, receipt_handles):  # type: ignore[no-untyped-def]
            raise QueueUnavailable("SQS unreachable")

    sink, queue = FakeSink(), DownQueue()
    writer, _, stats = make_writer(sink, queue)
    await writer.flush(processed(5))
    assert len(sink.rows) == 5
    assert stats.delete_failures == 5


async def test_a_burst_of_ten_poison_messages_does_not_stop_the_service() -> None:
    # Given one producer's bad SendMessageBatch: ten messages in a row the table refuses
    sink = FakeSink(refuse=lambda row: 100 <= int(row.message_id[1:]) < 110)
    writer, _, stats = make_writer(sink, FakeQueue(), batch_size=300)
    # When their batch is flushed, then they are ten rejects and the rest loads
    await writer.flush(processed(300))
    assert stats.reasons == {"db_23514": 10}
    assert len(sink.rows) == 290


def test_the_breaker_counts_a_message_once_however_often_it_is_refused() -> None:
    breaker = Breaker(threshold=3)
    refused = RowRejected("23514", "CheckViolationError")
    for _ in range(5):  # a part written again after a timeout refuses the same rows again
        breaker.refused(refused, "m1")
        breaker.refused(refused, "m2")
    with pytest.raises(DatabaseError, match="refused 3 rows in a row"):
        breaker.refused(refused, "m3")


@pytest.mark.parametrize("receivers", [1, 4, 16, 64, 128, 256])
@pytest.mark.parametrize("writers", [1, 2, 4, 8])
def test_deletes_in_flight_keep_up_with_the_receivers(receivers: int, writers: int) -> None:
    # A receive brings up to 10 messages a round trip, a delete call takes 10: the writers
    # together keep at least one delete call going per receiver, twice that for headroom,
    # and each batch's deletes at least the policy's calls at once.
    least = AckPolicy().concurrency
    calls = delete_calls(receivers, writers, least)
    assert calls >= least
    assert writers * PENDING_DELETES * calls >= 2 * receivers
