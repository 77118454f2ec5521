"""The hot SQS calls spoken directly: ReceiveMessage, DeleteMessageBatch and
ChangeMessageVisibilityBatch in SQS's JSON protocol over aiohttp, signed with botocore's
SigV4, serialised and parsed with orjson.

Why: profiling the service put two thirds of its CPU in aiobotocore's generic request
path (model-driven serialisation, the event system, the user-agent string, response
parsing), per call, on one core. Three calls with fixed shapes do not need it. Errors are
mapped like `sqs.py`'s; everything else (create queue, attributes) stays on aiobotocore.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
from aiobotocore.session import get_session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from ingestor.errors import QueueError, QueueUnavailable
from ingestor.models import BatchResult, Envelope
from ingestor.sqs import (
    ATTRIBUTES,
    SQS_BATCH,
    SqsQueue,
    envelope_from,
    error_for,
    run_in_batches,
)

_CONTENT_TYPE = "application/x-amz-json-1.0"


class WireSqs(SqsQueue):
    """`SqsQueue` with the three hot calls spoken directly; implements `QueueClient`."""

    def __init__(
        self, client: Any, queue_url: str, http: aiohttp.ClientSession, endpoint: str, region: str
    ) -> None:
        super().__init__(client, queue_url)
        self._http = http
        self._endpoint = endpoint
        self._region = region
        self._credentials: Any = None

    async def receive(self, wait_seconds: int, visibility_timeout: int) -> list[Envelope]:
        response = await self._call(
            "ReceiveMessage",
            {
                "QueueUrl": self.url,
                "MaxNumberOfMessages": SQS_BATCH,
                "WaitTimeSeconds": wait_seconds,
                "VisibilityTimeout": visibility_timeout,
                "MessageSystemAttributeNames": ATTRIBUTES,
            },
        )
        return [envelope_from(message) for message in response.get("Messages", ())]

    async def delete(self, receipt_handles: Sequence[str]) -> BatchResult:
        async def call(entries: list[dict[str, Any]]) -> Any:
            return await self._call(
                "DeleteMessageBatch", {"QueueUrl": self.url, "Entries": entries}
            )

        return await run_in_batches(receipt_handles, call, {})

    async def change_visibility(self, receipt_handles: Sequence[str], seconds: int) -> BatchResult:
        async def call(entries: list[dict[str, Any]]) -> Any:
            return await self._call(
                "ChangeMessageVisibilityBatch", {"QueueUrl": self.url, "Entries": entries}
            )

        return await run_in_batches(receipt_handles, call, {"VisibilityTimeout": seconds})

    async def _call(self, target: str, payload: dict[str, Any]) -> dict[str, Any]:
        body = orjson.dumps(payload)
        headers = await self._signed_headers(target, body)
        try:
            async with self._http.post(self._endpoint, data=body, headers=headers) as response:
                data = await response.read()
                status = response.status
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            raise QueueUnavailable(f"SQS unreachable: {type(error).__name__}") from None
        if status != 200:
            raise _error(status, data)
        result: dict[str, Any] = orjson.loads(data) if data else {}
        return result

    async def _signed_headers(self, target: str, body: bytes) -> dict[str, str]:
        if self._credentials is None:
            self._credentials = await get_session().get_credentials()
            if self._credentials is None:
                raise QueueError("no AWS credentials found (AWS_ACCESS_KEY_ID or a role)")
        frozen = await self._credentials.get_frozen_credentials()
        request = AWSRequest(
            method="POST",
            url=self._endpoint,
            data=body,
            headers={"Content-Type": _CONTENT_TYPE, "X-Amz-Target": f"AmazonSQS.{target}"},
        )
        SigV4Auth(frozen, "sqs", self._region).add_auth(request)
        return dict(request.headers.items())


def _error(status: int, data: bytes) -> QueueError | QueueUnavailable:
    try:
        details = orjson.loads(data)
        code = str(details.get("__type", "Unknown")).rpartition("#")[2]
    except (orjson.JSONDecodeError, AttributeError):
        code = "Unknown"
    return error_for(code, status)


@asynccontextmanager
async def wire_session(connections: int) -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30)
    connector = aiohttp.TCPConnector(limit=connections, ttl_dns_cache=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield session


def endpoint_for(region: str, endpoint_url: str | None) -> str:
    return endpoint_url or f"https://sqs.{region}.amazonaws.com"
