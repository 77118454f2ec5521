"""The SQS boundary against a real SQS-speaking server."""

from __future__ import annotations

import time

import pytest

from ingestor.errors import QueueError, QueueUnavailable
from ingestor.sqs import SqsQueue, sqs_client

pytestmark = pytest.mark.integration


async def test_receive_returns_envelopes_with_sent_timestamp(sqs_queue: SqsQueue) -> None:
    before = int(time.time() * 1000) - 5_000
    await sqs_queue.send(['{"user_id": "u"}'] * 3)
    received = await sqs_queue.receive(1, 30)
    assert len(received) == 3
    assert all(before <= e.sent_timestamp_ms <= before + 65_000 for e in received)
    assert {e.receive_count for e in received} == {1}
    assert len({e.message_id for e in received}) == 3


async def test_a_partial_delete_failure_is_reported_per_handle(sqs_queue: SqsQueue) -> None:
    # Given two received messages and a receipt handle SQS does not know
    await sqs_queue.send(['{"user_id": "u"}'] * 2)
    received = await sqs_queue.receive(1, 30)
    handles = [e.receipt_handle for e in received] + ["not-a-receipt-handle"]
    # When all three are deleted in one batch
    result = await sqs_queue.delete(handles)
    # Then the two real ones are deleted and the bogus one is reported with its code
    assert result.succeeded == 2
    assert [handle for handle, _ in result.failed] == ["not-a-receipt-handle"]
    assert await sqs_queue.depth() == 0


async def test_visibility_zero_makes_a_message_receivable_again(sqs_queue: SqsQueue) -> None:
    await sqs_queue.send(['{"user_id": "u"}'])
    first = await sqs_queue.receive(1, 30)
    await sqs_queue.change_visibility([first[0].receipt_handle], 0)
    again = await sqs_queue.receive(1, 30)
    assert [e.message_id for e in again] == [first[0].message_id]
    assert again[0].receive_count == 2


async def test_a_missing_queue_is_a_permanent_error(sqs_endpoint: str) -> None:
    async with sqs_client("us-east-1", sqs_endpoint) as client:
        missing = SqsQueue(client, f"{sqs_endpoint}/000000000000/no-such-queue")
        with pytest.raises(QueueError):
            await missing.receive(0, 30)


async def test_an_unreachable_endpoint_is_a_transient_error() -> None:
    async with sqs_client("us-east-1", "http://127.0.0.1:9") as client:
        with pytest.raises(QueueUnavailable):
            await SqsQueue(client, "http://127.0.0.1:9/000000000000/q").receive(0, 30)
