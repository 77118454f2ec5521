"""The service's SQS calls spoken directly: ReceiveMessage, DeleteMessageBatch,
ChangeMessageVisibilityBatch and GetQueueAttributes in SQS's JSON protocol, signed with
SigV4 as botocore signs it (`sigv4.Signer`), serialised and parsed with orjson, sent
over an HTTP/1.1 client of its own (`http1.Pool`).

Why: profiling the service put two thirds of its CPU in aiobotocore's generic request
path (model-driven serialisation, the event system, the user-agent string, response
parsing), per call, on one core. Three calls with fixed shapes do not need it. Then half
of what was left was aiohttp's request path, which `http1` replaces.

What it must not do is decide anything botocore decides: the endpoint, the region, the
proxy, the CA bundle and the user agent come from a botocore client (`aws.Route`), the
credentials are the ones botocore resolved (`aws.ThreadedCredentials`), and an error
answer is read and classified as botocore reads it (`sqs_errors`). The queue's
attributes (at start-up and the depth samples) come this way too, so a run neither
calls nor imports aiobotocore (`aws.py`: why). Seeding stays on aiobotocore.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson

from ingestor.errors import QueueError, QueueUnavailable, StaleCredentials
from ingestor.models import EntryFailure, Envelope
from ingestor.source.aws import CredentialSource, Resolved
from ingestor.source.http1 import Pool, origin
from ingestor.source.sigv4 import Signer
from ingestor.source.sqs_api import (
    ATTRIBUTES,
    SQS_BATCH,
    SqsApi,
    batch_entries,
    entry_failures,
    envelopes_from,
    json_object,
)
from ingestor.source.sqs_errors import MalformedAnswer, classify, parse_error, unreachable

_STATIC_HEADERS = {
    "Content-Type": "application/x-amz-json-1.0",
    # As aiobotocore sends it (SQS's awsQueryCompatible trait): errors then carry the
    # x-amzn-query-error code, so both clients see the same codes.
    "x-amzn-query-mode": "true",
}


class WireSqs(SqsApi):
    """The service's calls spoken directly; implements `QueueClient`."""

    def __init__(
        self,
        aws: Resolved,
        queue_url: str,
        http: Pool,
        clock: Callable[[], float] = time.time,  # the signatures' (tests fix it)
    ) -> None:
        super().__init__(queue_url)
        self._credentials: CredentialSource = aws.credentials
        self._http = http
        route = self._route = aws.route
        self._signer = Signer(route.url, route.region, "sqs", _STATIC_HEADERS, clock)
        self._origin = origin(route.url, route.tls, route.proxy, route.proxy_headers)

    @property
    def region(self) -> str:
        return self._route.region

    async def receive(self, wait_seconds: int, visibility_timeout: int | None) -> list[Envelope]:
        payload: dict[str, Any] = {
            "QueueUrl": self.url,
            "MaxNumberOfMessages": SQS_BATCH,
            "WaitTimeSeconds": wait_seconds,
            "MessageSystemAttributeNames": ATTRIBUTES,
        }
        if visibility_timeout is not None:
            payload["VisibilityTimeout"] = visibility_timeout
        return envelopes_from(await self._post("ReceiveMessage", _body(payload)))

    async def delete_batch(self, handles: Sequence[str]) -> tuple[EntryFailure, ...]:
        body = _body({"QueueUrl": self.url, "Entries": batch_entries(handles)})
        return entry_failures(await self._post("DeleteMessageBatch", body), handles)

    async def change_visibility_batch(
        self, handles: Sequence[str], seconds: int
    ) -> tuple[EntryFailure, ...]:
        body = _body(
            {"QueueUrl": self.url, "Entries": batch_entries(handles, VisibilityTimeout=seconds)}
        )
        return entry_failures(await self._post("ChangeMessageVisibilityBatch", body), handles)

    async def _attributes(self, names: list[str]) -> dict[str, str]:
        body = _body({"QueueUrl": self.url, "AttributeNames": names})
        answer = await self._post("GetQueueAttributes", body)
        attributes = answer.get("Attributes", {})
        if not isinstance(attributes, dict):
            raise MalformedAnswer("SQS answered GetQueueAttributes with Attributes not an object")
        return attributes

    async def _post(self, target: str, body: bytes) -> dict[str, Any]:
        """One call; every failure, signing included, mapped to the ingestor's errors."""
        used = await self._credentials.frozen()
        headers = self._signed(target, body, used)
        try:
            answer = await self._http.post(self._origin, headers, body)
        except OSError as error:  # http1.HttpError, and its HttpTimeout
            raise unreachable(target, self._route.url, error) from None
        data = answer.body
        if answer.status != 200:
            raise await self._wire_refused(target, answer.status, answer.headers, data, used)
        return json_object(data, target) if data else {}

    async def _wire_refused(
        self, target: str, status: int, headers: Any, data: bytes, used: Any
    ) -> QueueError | QueueUnavailable:
        code, message = parse_error(status, headers, data)
        mapped = classify(code, status, message, target, self.url)
        if isinstance(mapped, StaleCredentials):
            await self._credentials.refresh(used, mapped)
        return mapped

    def _signed(self, target: str, body: bytes, frozen: Any) -> dict[str, str]:
        headers = self._signer.headers(f"AmazonSQS.{target}", body, frozen)
        headers["User-Agent"] = self._route.user_agent
        return headers


def _body(payload: dict[str, Any]) -> bytes:
    """`payload` as JSON, in a bytes object of its own size. orjson's result keeps the
    buffer it wrote into (4 KiB at least, for bodies of about 700 bytes), and a body lasts
    its whole call: with hundreds of calls in flight (one per receiver, two per receiver
    for the deletes), that spare room was megabytes of the service's peak memory."""
    return bytes(memoryview(orjson.dumps(payload)))


@asynccontextmanager
async def wire_session(connections: int) -> AsyncIterator[Pool]:
    """The direct client's connection pool: at most `connections` to SQS, timeouts as
    botocore's (connect 5 s, read 30 s). Proxies and TLS are the route's (`aws.Route`),
    given with each call: nothing is read from the environment here."""
    async with Pool(connections) as pool:
        yield pool
