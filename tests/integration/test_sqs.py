"""The SQS boundary against a real SQS-speaking server, for both clients: aiobotocore
(`SqsQueue`) and the direct JSON-protocol path (`WireSqs`)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ingestor.errors import QueueGone, QueueUnavailable
from ingestor.pipeline.assembly import open_queue
from ingestor.settings import Settings
from ingestor.source.acks import Acknowledger
from ingestor.source.sqs import SqsQueue
from ingestor.source.sqs_api import SqsApi

pytestmark = pytest.mark.integration
REGION = "us-east-1"


def settings_for(url: str, endpoint: str, client: str) -> Settings:
    return Settings(
        queue_url=url,
        sqs_endpoint_url=endpoint,
        aws_region=REGION,
        sqs_client=client,  # type: ignore[arg-type]
    )


@pytest_asyncio.fixture(params=["botocore", "wire"])
async def queue(
    request: pytest.FixtureRequest, sqs_queue: SqsQueue, sqs_endpoint: str
) -> AsyncIterator[SqsApi]:
    """The queue through either client (seeded through `sqs_queue`)."""
    async with open_queue(settings_for(sqs_queue.url, sqs_endpoint, request.param)) as opened:
        yield opened


async def test_receive_returns_envelopes_with_sent_timestamp(
    queue: SqsApi, sqs_queue: SqsQueue
) -> None:
    before = int(time.time() * 1000) - 5_000
    await sqs_queue.send(['{"user_id": "u"}'] * 3)
    received = await queue.receive(1, 30)
    assert len(received) == 3
    assert all(before <= e.sent_timestamp_ms <= before + 65_000 for e in received)
    assert {e.receive_count for e in received} == {1}
    assert len({e.message_id for e in received}) == 3
    assert {e.body for e in received} == {'{"user_id": "u"}'}


async def test_a_partial_delete_failure_is_reported_per_handle(
    queue: SqsApi, sqs_queue: SqsQueue
) -> None:
    # Given two received messages and a receipt handle SQS does not know
    await sqs_queue.send(['{"user_id": "u"}'] * 2)
    received = await queue.receive(1, 30)
    handles = [e.receipt_handle for e in received] + ["not-a-receipt-handle"]
    # When all three are deleted in one batch
    result = await Acknowledger(queue).delete(handles)
    # Then the two real ones are deleted and the bogus one is reported with its code
    assert result.succeeded == 2
    assert [handle for handle, _ in result.failed] == ["not-a-receipt-handle"]
    assert (await queue.depths()).visible == 0


async def test_visibility_zero_makes_a_message_receivable_again(
    queue: SqsApi, sqs_queue: SqsQueue
) -> None:
    await sqs_queue.send(['{"user_id": "u"}'])
    first = await queue.receive(1, 30)
    await Acknowledger(queue).change_visibility([first[0].receipt_handle], 0)
    again = await queue.receive(1, 30)
    assert [e.message_id for e in again] == [first[0].message_id]
    assert again[0].receive_count == 2


@pytest.mark.parametrize("wire", [False, True])
async def test_a_missing_queue_is_a_permanent_error(sqs_endpoint: str, wire: bool) -> None:
    url = f"{sqs_endpoint}/000000000000/no-such-queue"
    client = "wire" if wire else "botocore"
    async with open_queue(settings_for(url, sqs_endpoint, client)) as missing:
        with pytest.raises(QueueGone, match="no-such-queue no longer exists"):
            await missing.receive(0, 30)


@pytest.mark.parametrize("wire", [False, True])
async def test_an_unreachable_endpoint_is_a_transient_error(wire: bool) -> None:
    endpoint = "http://127.0.0.1:9"
    url = f"{endpoint}/000000000000/q"
    client = "wire" if wire else "botocore"
    async with open_queue(settings_for(url, endpoint, client)) as queue:
        with pytest.raises(QueueUnavailable, match=r"127\.0\.0\.1:9"):
            await queue.receive(0, 30)


async def test_the_queue_attributes_agree_between_the_two_clients(
    sqs_queue: SqsQueue, sqs_endpoint: str
) -> None:
    await sqs_queue.send(['{"user_id": "u"}'] * 2)
    seen = []
    for client in ("botocore", "wire"):
        async with open_queue(settings_for(sqs_queue.url, sqs_endpoint, client)) as queue:
            seen.append((await queue.attributes(), await queue.depths()))
    assert seen[0] == seen[1]
    assert seen[0][0].depth.visible == 2


WIRE_RUN = """
import asyncio, sys
import ingestor.cli.main, ingestor.observe.http, ingestor.pipeline.service
from ingestor.pipeline.assembly import open_queue
from ingestor.settings import Settings
from ingestor.source.acks import Acknowledger

async def calls(url, endpoint):
    settings = Settings(queue_url=url, sqs_endpoint_url=endpoint, aws_region="us-east-1")
    async with open_queue(settings) as queue:
        await queue.attributes()
        await queue.depths()
        [message] = await queue.receive(1, 30)
        await Acknowledger(queue).change_visibility([message.receipt_handle], 0)
        await Acknowledger(queue).delete([message.receipt_handle])
    loaded = sorted({name.split(".")[0] for name in sys.modules} & {"aiobotocore", "aiohttp"})
    print(" ".join(loaded) or "neither")

asyncio.run(calls(sys.argv[1], sys.argv[2]))
"""


async def test_a_run_on_the_wire_client_neither_imports_nor_calls_aiobotocore(
    sqs_queue: SqsQueue, sqs_endpoint: str
) -> None:
    # Importing aiobotocore, and aiohttp with it, was about a third of the service's
    # start-up, and aiohttp's server another third; a run on the direct client, metrics
    # server included, needs neither. (A subprocess: this one has both loaded already.)
    await sqs_queue.send(['{"user_id": "u"}'])
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WIRE_RUN, sqs_queue.url, sqs_endpoint,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(child.communicate(), timeout=60)
    assert child.returncode == 0, err.decode()[-2000:]
    assert out.decode().split() == ["neither"]
    assert (await sqs_queue.depths()).visible == 0  # the calls did what they say
    assert (await sqs_queue.depths()).in_flight == 0


@pytest.mark.parametrize("wire", [False, True])
async def test_the_attributes_of_a_missing_queue_are_a_permanent_error(
    sqs_endpoint: str, wire: bool
) -> None:
    url = f"{sqs_endpoint}/000000000000/no-such-queue"
    client = "wire" if wire else "botocore"
    async with open_queue(settings_for(url, sqs_endpoint, client)) as missing:
        with pytest.raises(QueueGone, match="no-such-queue no longer exists"):
            await missing.attributes()
