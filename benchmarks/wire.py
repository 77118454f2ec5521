"""SQS's JSON protocol spoken with nothing in between, for the floor consumer
(`floor.py`) and for filling queues fast: botocore's SigV4 over a body built here,
posted with aiohttp, as the service's own client (`ingestor/source/sqs_wire.py`) does.

Filling: SendMessageBatch calls of 10, 32 at a time, each body serialised by orjson and
signed with botocore's SigV4Auth, through one aiohttp session. The messages are real SQS
messages sent through fauxqs's API, as `SqsQueue.send` sends them; only aiobotocore's
per-call cost (model-driven serialisation, parsing, the event system) is skipped, which
about doubles the fill rate: 200,000 messages take about 10 s instead of 20.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import aiohttp
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ingestor.source.sqs_api import ATTRIBUTES, SQS_BATCH

REGION = "us-east-1"
# As the service's client sends them (sqs_wire._STATIC_HEADERS).
STATIC_HEADERS = {
    "Content-Type": "application/x-amz-json-1.0",
    "x-amzn-query-mode": "true",
}


def credentials() -> Credentials:
    """The benchmark's static keys (fauxqs accepts any), as the children get them."""
    return Credentials(
        os.environ.get("AWS_ACCESS_KEY_ID", "bench"),
        os.environ.get("AWS_SECRET_ACCESS_KEY", "bench"),
    )


def signed(keys: Credentials, url: str, target: str, body: bytes) -> dict[str, str]:
    """The headers of one signed call: botocore's SigV4Auth, as the service signs."""
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={**STATIC_HEADERS, "X-Amz-Target": f"AmazonSQS.{target}"},
    )
    SigV4Auth(keys, "sqs", REGION).add_auth(request)
    return dict(request.headers.items())


def receive_body(queue_url: str, wait_seconds: int) -> bytes:
    """The service's ReceiveMessage in drain mode (the queue's own visibility timeout)."""
    return orjson.dumps(
        {
            "QueueUrl": queue_url,
            "MaxNumberOfMessages": SQS_BATCH,
            "WaitTimeSeconds": wait_seconds,
            "MessageSystemAttributeNames": ATTRIBUTES,
        }
    )


def endpoint_url(endpoint: str) -> str:
    return endpoint.rstrip("/") + "/"


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> bytes:
    async with http.post(url, data=body, headers=headers) as response:
        data = await response.read()
        if response.status != 200:
            raise RuntimeError(f"SQS answered {response.status}: {data[:300]!r}")
    return data


async def send_all(
    endpoint: str, queue_url: str, bodies: Sequence[str], concurrency: int = 32
) -> None:
    """Send `bodies` in SendMessageBatch calls of 10, `concurrency` at a time."""
    url, keys = endpoint_url(endpoint), credentials()
    chunks = [bodies[i : i + SQS_BATCH] for i in range(0, len(bodies), SQS_BATCH)]
    limit = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)

    async def send(http: aiohttp.ClientSession, chunk: Sequence[str]) -> None:
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
        body = orjson.dumps({"QueueUrl": queue_url, "Entries": entries})
        async with limit:
            data = await post(http, url, body, signed(keys, url, "SendMessageBatch", body))
        if b'"Failed":[{' in data:
            raise RuntimeError(f"SendMessageBatch failed: {data[:300]!r}")

    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(send(http, chunk) for chunk in chunks))
