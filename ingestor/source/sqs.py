"""The SQS boundary: an aiobotocore client behind the `QueueClient` seam.

Each call is one SQS call (a batch call carries at most 10 entries); how many run at once
and how they are retried is `acks.py`'s business. Every botocore, aiohttp or socket error
is mapped here, through `sqs_errors.classify` (shared with the direct client), to
`QueueUnavailable` (retry), `QueueGone` or `QueueError` (stop); nothing above this module
sees a library exception.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
from botocore.exceptions import BotoCoreError, ClientError

from ingestor.errors import IngestorError, QueueError, QueueUnavailable, StaleCredentials
from ingestor.models import EntryFailure, Envelope, QueueAttributes, QueueDepth
from ingestor.source.aws import Aws, Credentials, open_aws
from ingestor.source.sqs_errors import (
    MESSAGE_LIMIT,
    MalformedAnswer,
    classify,
    describe,
    unreachable,
)
from ingestor.terminal import printable

SQS_BATCH = 10  # the API's limit for ReceiveMessage and every *Batch call
ATTRIBUTES = ["SentTimestamp", "ApproximateReceiveCount"]
DEPTH = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


class SqsQueue:
    """One queue, through one aiobotocore client. Implements `QueueClient`."""

    def __init__(self, client: Any, queue_url: str, credentials: Credentials | None = None) -> None:
        self._client = client
        self.url = queue_url
        self._credentials = credentials

    async def receive(self, wait_seconds: int, visibility_timeout: int | None) -> list[Envelope]:
        """Up to 10 messages; `visibility_timeout` None leaves the queue's own in force."""
        extra = {} if visibility_timeout is None else {"VisibilityTimeout": visibility_timeout}
        response = await self._call(
            "ReceiveMessage",
            self._client.receive_message,
            QueueUrl=self.url,
            MaxNumberOfMessages=SQS_BATCH,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=ATTRIBUTES,
            **extra,
        )
        return envelopes_from(response)

    async def delete_batch(self, handles: Sequence[str]) -> tuple[EntryFailure, ...]:
        response = await self._call(
            "DeleteMessageBatch",
            self._client.delete_message_batch,
            QueueUrl=self.url,
            Entries=batch_entries(handles),
        )
        return entry_failures(response, handles)

    async def change_visibility_batch(
        self, handles: Sequence[str], seconds: int
    ) -> tuple[EntryFailure, ...]:
        response = await self._call(
            "ChangeMessageVisibilityBatch",
            self._client.change_message_visibility_batch,
            QueueUrl=self.url,
            Entries=batch_entries(handles, VisibilityTimeout=seconds),
        )
        return entry_failures(response, handles)

    @property
    def region(self) -> str:
        """The region the client signs for (and the queue is looked up in)."""
        return str(self._client.meta.region_name)

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    async def depths(self) -> QueueDepth:
        """Messages waiting and messages in flight, in one GetQueueAttributes call."""
        return depth_of(await self._attributes(DEPTH))

    async def attributes(self) -> QueueAttributes:
        """The depth and the queue's own VisibilityTimeout, in one call."""
        counts = await self._attributes([*DEPTH, "VisibilityTimeout"])
        try:
            visibility = int(counts.get("VisibilityTimeout", 30))
        except (TypeError, ValueError):
            raise MalformedAnswer(
                "SQS answered GetQueueAttributes with a VisibilityTimeout "
                "that is not a number of seconds"
            ) from None
        return QueueAttributes(depth_of(counts), visibility)

    async def _attributes(self, names: list[str]) -> dict[str, str]:
        response = await self._call(
            "GetQueueAttributes",
            self._client.get_queue_attributes,
            QueueUrl=self.url,
            AttributeNames=names,
        )
        return dict(response.get("Attributes", {}))

    async def send(self, bodies: Sequence[str], concurrency: int = 8) -> list[str]:
        """Send bodies in batches of 10 (for seeding demos, tests and benchmarks); return
        their message ids."""
        chunks = [bodies[i : i + SQS_BATCH] for i in range(0, len(bodies), SQS_BATCH)]
        limit = asyncio.Semaphore(concurrency)

        async def send_chunk(chunk: Sequence[str]) -> list[str]:
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
            async with limit:
                response = await self._call(
                    "SendMessageBatch",
                    self._client.send_message_batch,
                    QueueUrl=self.url,
                    Entries=entries,
                )
            if response.get("Failed"):
                raise QueueUnavailable(f"{len(response['Failed'])} messages were not sent")
            return [entry["MessageId"] for entry in response["Successful"]]

        sent = await asyncio.gather(*(send_chunk(chunk) for chunk in chunks))
        return [message_id for chunk in sent for message_id in chunk]

    async def _call(self, name: str, method: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
        """One SQS call, every failure mapped (signing included: the credentials are
        fetched, and refreshed when due, inside the mapping)."""
        used = None if self._credentials is None else await self._credentials.frozen()
        try:
            return await method(**kwargs)
        except IngestorError:
            raise  # already ours (a malformed answer)
        except ClientError as error:
            raise await self._refused(name, error, used) from None
        except (BotoCoreError, aiohttp.ClientError, OSError, TimeoutError) as error:
            raise unreachable(name, str(self._client.meta.endpoint_url), error) from None
        except Exception as error:  # botocore's parser on an answer of another shape
            raise MalformedAnswer(f"SQS answered {name} with {describe(error)}") from None

    async def _refused(
        self, name: str, error: ClientError, used: Any
    ) -> QueueError | QueueUnavailable:
        details = error.response.get("Error", {})
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        code, message = str(details.get("Code", status)), str(details.get("Message", ""))
        mapped = classify(code, status, printable(message, MESSAGE_LIMIT), name, self.url)
        if isinstance(mapped, StaleCredentials) and self._credentials is not None:
            await self._credentials.refresh(used, mapped)
        return mapped


@asynccontextmanager
async def open_sqs(
    region: str | None, endpoint_url: str | None = None, max_connections: int = 32
) -> AsyncIterator[Aws]:
    """The aiobotocore SQS client and what it resolved (`aws.open_aws`), made to refuse a
    200 whose body is not a JSON object: botocore would read a body cut short as an empty
    answer, and a receive as "no messages"."""
    async with open_aws(region, endpoint_url, max_connections) as aws:
        aws.client.meta.events.register("before-parse.sqs.*", _json_object_or_refuse)
        yield aws


@asynccontextmanager
async def sqs_client(
    region: str | None, endpoint_url: str | None = None, max_connections: int = 32
) -> AsyncIterator[Any]:
    """An aiobotocore SQS client (for seeding, tests and benchmarks)."""
    async with open_sqs(region, endpoint_url, max_connections) as aws:
        yield aws.client


def _json_object_or_refuse(response_dict: dict[str, Any], operation_model: Any, **_: Any) -> None:
    body = response_dict.get("body")
    if response_dict.get("status_code") == 200 and body:
        json_object(body, str(operation_model.name))


def json_object(body: bytes, call: str) -> dict[str, Any]:
    """The JSON object of a 200 answer, or `MalformedAnswer`."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedAnswer(
            f"SQS answered {call} with a body that is not JSON ({len(body)} bytes; cut short?)"
        ) from None
    if not isinstance(value, dict):
        raise MalformedAnswer(f"SQS answered {call} with JSON that is not an object")
    return value


async def create_queue(client: Any, name: str, attributes: dict[str, str] | None = None) -> str:
    """Create (or find) a queue and return its URL."""
    queue = SqsQueue(client, f"(new queue {name})")
    response = await queue._call(
        "CreateQueue", client.create_queue, QueueName=name, Attributes=attributes or {}
    )
    return str(response["QueueUrl"])


def batch_entries(handles: Sequence[str], **extra: Any) -> list[dict[str, Any]]:
    return [{"Id": str(i), "ReceiptHandle": handle, **extra} for i, handle in enumerate(handles)]


def entry_failures(response: dict[str, Any], handles: Sequence[str]) -> tuple[EntryFailure, ...]:
    """The failed entries of a *Batch answer, by receipt handle. An answer that does not
    account for every entry sent (none, or others) is not an answer."""
    try:
        failed = list(response.get("Failed") or ())
        done = {int(entry["Id"]) for entry in response.get("Successful") or ()}
        failures = tuple(
            EntryFailure(
                handles[int(f["Id"])], str(f.get("Code", "unknown")), not f.get("SenderFault", True)
            )
            for f in failed
        )
        if done | {int(f["Id"]) for f in failed} != set(range(len(handles))):
            raise ValueError("entries missing from the answer")
    except (KeyError, ValueError, IndexError, TypeError, AttributeError):
        raise MalformedAnswer(
            "SQS answered a batch call without an outcome for each entry sent"
        ) from None
    return failures


def envelopes_from(response: dict[str, Any]) -> list[Envelope]:
    """The envelopes of a ReceiveMessage answer (either client's)."""
    try:
        return [envelope_from(message) for message in response.get("Messages", ())]
    except (KeyError, ValueError, TypeError, AttributeError):
        raise MalformedAnswer(
            "SQS answered ReceiveMessage with a message that has no MessageId or ReceiptHandle"
        ) from None


def envelope_from(message: dict[str, Any]) -> Envelope:
    """An `Envelope` from one message of a ReceiveMessage response."""
    attributes = message.get("Attributes", {})
    sent = attributes.get("SentTimestamp")
    return Envelope(  # positional: one per message (message_id, receipt_handle, body, ...)
        message["MessageId"],
        message["ReceiptHandle"],
        message.get("Body", ""),
        # Real SQS always sends SentTimestamp; an emulator that does not gets receive time.
        int(sent) if sent is not None else int(time.time() * 1000),
        int(attributes.get("ApproximateReceiveCount", 1)),
    )


def depth_of(counts: dict[str, str]) -> QueueDepth:
    try:
        return QueueDepth(
            int(counts["ApproximateNumberOfMessages"]),
            int(counts["ApproximateNumberOfMessagesNotVisible"]),
            int(counts.get("ApproximateNumberOfMessagesDelayed", 0)),
        )
    except (KeyError, TypeError, ValueError):
        raise MalformedAnswer("SQS answered GetQueueAttributes without the counts") from None
