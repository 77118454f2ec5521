"""SQS's API as both clients speak it (aiobotocore's, `sqs.py`, and the direct one,
`sqs_wire.py`): the calls' fixed arguments, how an answer is read, and the queue's
methods built on those calls. Nothing here imports an SQS client library, so the direct
client's start-up does not pay for one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from ingestor.models import EntryFailure, Envelope, QueueAttributes, QueueDepth
from ingestor.source.sqs_errors import MalformedAnswer

SQS_BATCH = 10  # the API's limit for ReceiveMessage and every *Batch call
ATTRIBUTES = ["SentTimestamp", "ApproximateReceiveCount"]
DEPTH = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


class SqsApi:
    """One queue's calls, whichever client makes them. Implements `QueueClient`."""

    def __init__(self, queue_url: str) -> None:
        self.url = queue_url

    async def receive(self, wait_seconds: int, visibility_timeout: int | None) -> list[Envelope]:
        """Up to 10 messages; `visibility_timeout` None leaves the queue's own in force."""
        raise NotImplementedError

    async def delete_batch(self, handles: Sequence[str]) -> tuple[EntryFailure, ...]:
        raise NotImplementedError

    async def change_visibility_batch(
        self, handles: Sequence[str], seconds: int
    ) -> tuple[EntryFailure, ...]:
        raise NotImplementedError

    @property
    def region(self) -> str:
        """The region the client signs for (and the queue is looked up in)."""
        raise NotImplementedError

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
        """GetQueueAttributes: the attributes named."""
        raise NotImplementedError


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
