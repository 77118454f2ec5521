"""The SQS boundary: an aiobotocore client behind the `QueueClient` seam.

Every botocore, aiohttp or socket error is mapped here to `QueueUnavailable` (retry) or
`QueueError` (retrying cannot help); nothing above this module sees a library exception.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from ingestor.errors import QueueError, QueueUnavailable
from ingestor.models import BatchResult, Envelope, QueueDepth

SQS_BATCH = 10  # the API's limit for ReceiveMessage and every *Batch call
_CONCURRENT_BATCH_CALLS = 16  # per *Batch request, so a big heartbeat cannot crowd out deletes
ATTRIBUTES = ["SentTimestamp", "ApproximateReceiveCount"]
# Codes that say "this will never work": wrong queue, wrong account, wrong credentials.
PERMANENT_CODES = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "InvalidAddress",
        "InvalidSecurity",
    }
)
T = TypeVar("T")


class SqsQueue:
    """One queue, through one aiobotocore client. Implements `QueueClient`."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self.url = queue_url

    async def receive(self, wait_seconds: int, visibility_timeout: int) -> list[Envelope]:
        response = await _mapped(
            self._client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=SQS_BATCH,
                WaitTimeSeconds=wait_seconds,
                VisibilityTimeout=visibility_timeout,
                MessageSystemAttributeNames=ATTRIBUTES,
            )
        )
        return [envelope_from(message) for message in response.get("Messages", ())]

    async def delete(self, receipt_handles: Sequence[str]) -> BatchResult:
        async def call(entries: list[dict[str, str]]) -> Any:
            return await self._client.delete_message_batch(QueueUrl=self.url, Entries=entries)

        return await run_in_batches(receipt_handles, call, {})

    async def change_visibility(self, receipt_handles: Sequence[str], seconds: int) -> BatchResult:
        async def call(entries: list[dict[str, Any]]) -> Any:
            return await self._client.change_message_visibility_batch(
                QueueUrl=self.url, Entries=entries
            )

        return await run_in_batches(receipt_handles, call, {"VisibilityTimeout": seconds})

    async def depth(self) -> int:
        """Messages waiting (visible) in the queue, as SQS approximates it."""
        response = await _mapped(
            self._client.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
            )
        )
        return int(response["Attributes"]["ApproximateNumberOfMessages"])

    async def depths(self) -> QueueDepth:
        """Messages waiting and messages in flight, in one GetQueueAttributes call."""
        response = await _mapped(
            self._client.get_queue_attributes(
                QueueUrl=self.url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )
        )
        counts = response["Attributes"]
        return QueueDepth(
            int(counts["ApproximateNumberOfMessages"]),
            int(counts["ApproximateNumberOfMessagesNotVisible"]),
        )

    async def send(self, bodies: Sequence[str], concurrency: int = 8) -> list[str]:
        """Send bodies in batches of 10 (for seeding demos, tests and benchmarks); return
        their message ids."""
        chunks = [bodies[i : i + SQS_BATCH] for i in range(0, len(bodies), SQS_BATCH)]
        limit = asyncio.Semaphore(concurrency)

        async def send_chunk(chunk: Sequence[str]) -> list[str]:
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
            async with limit:
                response = await _mapped(
                    self._client.send_message_batch(QueueUrl=self.url, Entries=entries)
                )
            if response.get("Failed"):
                raise QueueUnavailable(f"{len(response['Failed'])} messages were not sent")
            return [entry["MessageId"] for entry in response["Successful"]]

        sent = await asyncio.gather(*(send_chunk(chunk) for chunk in chunks))
        return [message_id for chunk in sent for message_id in chunk]


@asynccontextmanager
async def sqs_client(
    region: str, endpoint_url: str | None = None, max_connections: int = 32
) -> AsyncIterator[Any]:
    """An aiobotocore SQS client tuned for a hot loop: no client-side parameter validation
    (the calls are built here, not by users) and botocore's own retries off (ours apply)."""
    config = AioConfig(
        parameter_validation=False,
        max_pool_connections=max_connections,
        connect_timeout=5,
        read_timeout=30,  # longer than the longest long poll (20 s)
        retries={"max_attempts": 1, "mode": "standard"},
    )
    session = get_session()
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            session.create_client(
                "sqs", region_name=region, endpoint_url=endpoint_url, config=config
            )
        )
        yield client


async def create_queue(client: Any, name: str, attributes: dict[str, str] | None = None) -> str:
    """Create (or find) a queue and return its URL."""
    response = await _mapped(client.create_queue(QueueName=name, Attributes=attributes or {}))
    return str(response["QueueUrl"])


def envelope_from(message: dict[str, Any]) -> Envelope:
    """An `Envelope` from one message of a ReceiveMessage response (either client's)."""
    attributes = message.get("Attributes", {})
    sent = attributes.get("SentTimestamp")
    return Envelope(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        body=message.get("Body", ""),
        # Real SQS always sends SentTimestamp; an emulator that does not gets receive time.
        sent_timestamp_ms=int(sent) if sent is not None else int(time.time() * 1000),
        receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
    )


async def run_in_batches(
    handles: Sequence[str],
    call: Callable[[list[dict[str, Any]]], Awaitable[Any]],
    extra: dict[str, Any],
) -> BatchResult:
    """Run a *Batch call over `handles` in chunks of 10, concurrently; collect failures."""
    chunks = [handles[i : i + SQS_BATCH] for i in range(0, len(handles), SQS_BATCH)]
    limit = asyncio.Semaphore(_CONCURRENT_BATCH_CALLS)

    async def bounded(chunk: Sequence[str]) -> BatchResult:
        async with limit:
            return await _one_batch(chunk, call, extra)

    # A TaskGroup cancels the other chunks when one fails, so a retry of the whole call
    # does not race calls still running from the failed attempt.
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(bounded(chunk)) for chunk in chunks]
    except ExceptionGroup as failures:
        raise failures.exceptions[0] from None  # already one of ours: QueueUnavailable, ...
    results = [task.result() for task in tasks]
    return BatchResult(
        sum(r.succeeded for r in results), tuple(f for r in results for f in r.failed)
    )


async def _one_batch(
    chunk: Sequence[str],
    call: Callable[[list[dict[str, Any]]], Awaitable[Any]],
    extra: dict[str, Any],
    attempts: int = 3,
) -> BatchResult:
    """One *Batch call; entries that failed on SQS's side (SenderFault false) are tried
    again, up to `attempts` calls in all. Failures of the sender's own (an expired receipt
    handle) are final and returned."""
    pending, failed, succeeded = list(chunk), [], 0
    for attempt in range(attempts):
        entries = [{"Id": str(i), "ReceiptHandle": h, **extra} for i, h in enumerate(pending)]
        response = await _mapped(call(entries))
        failures = response.get("Failed", ())
        succeeded += len(pending) - len(failures)
        retry = [pending[int(f["Id"])] for f in failures if not f.get("SenderFault", True)]
        failed += [
            (pending[int(f["Id"])], str(f.get("Code", "unknown")))
            for f in failures
            if f.get("SenderFault", True) or attempt == attempts - 1
        ]
        if not retry:
            break
        pending = retry
        await asyncio.sleep(0.1 * 2**attempt)
    return BatchResult(succeeded, tuple(failed))


async def _mapped(call: Awaitable[T]) -> T:
    try:
        return await call
    except ClientError as error:
        raise _client_error(error) from None
    except NoCredentialsError:
        raise QueueError("no AWS credentials found (AWS_ACCESS_KEY_ID or a role)") from None
    except (BotoCoreError, aiohttp.ClientError, OSError, TimeoutError) as error:
        raise QueueUnavailable(f"SQS unreachable: {type(error).__name__}") from None


def _client_error(error: ClientError) -> QueueError | QueueUnavailable:
    code = str(error.response.get("Error", {}).get("Code", "Unknown"))
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    return error_for(code, status)


def error_for(code: str, status: int) -> QueueError | QueueUnavailable:
    """An SQS error code and HTTP status as the ingestor's own error (either client's)."""
    transient = "Throttl" in code or "OverLimit" in code or status >= 500 or status == 0
    if code in PERMANENT_CODES or not transient:
        return QueueError(f"SQS refused the call: {code}")
    return QueueUnavailable(f"SQS error: {code}")
