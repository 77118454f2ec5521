"""The SQS boundary through aiobotocore: the `INGESTOR_SQS_CLIENT=botocore` fallback, and
the client that seeds queues (demo, tests, benchmarks). The service's own calls go
through `sqs_wire.py`, which does not import aiobotocore.

Each call is one SQS call (a batch call carries at most 10 entries); how many run at once
and how they are retried is `acks.py`'s business. Every botocore, aiohttp or socket error
is mapped here, through `sqs_errors.classify` (shared with the direct client), to
`QueueUnavailable` (retry), `QueueGone` or `QueueError` (stop); nothing above this module
sees a library exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from ingestor.errors import IngestorError, QueueError, QueueUnavailable, StaleCredentials
from ingestor.models import EntryFailure, Envelope
from ingestor.source.aws import (
    Aws,
    Credentials,
    CredentialSource,
    client_config,
    identification,
    loaded,
    prepare,
    region_of,
    route_of,
    settings_refused,
    unloadable,
)
from ingestor.source.sqs_api import (
    ATTRIBUTES,
    SQS_BATCH,
    SqsApi,
    batch_entries,
    entry_failures,
    envelopes_from,
    json_object,
)
from ingestor.source.sqs_errors import (
    MESSAGE_LIMIT,
    MalformedAnswer,
    classify,
    describe,
    unreachable,
)
from ingestor.terminal import printable


class SqsQueue(SqsApi):
    """One queue, through one aiobotocore client. Implements `QueueClient`."""

    def __init__(
        self, client: Any, queue_url: str, credentials: CredentialSource | None = None
    ) -> None:
        super().__init__(queue_url)
        self._client = client
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
        return str(self._client.meta.region_name)

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
async def open_aws(
    region: str | None, endpoint_url: str | None, max_connections: int
) -> AsyncIterator[Aws]:
    """Resolve the credential chain once, create the aiobotocore SQS client, and work
    out the route from it. No credentials at all is a `ConfigError` (exit 2)."""
    with settings_refused():
        session = prepare(get_session())
    try:
        resolved = await session.get_credentials()
    except Exception as error:  # whatever the failing provider raised
        raise unloadable(error) from None
    credentials = loaded(resolved)
    config = client_config(max_connections, identification(session), AioConfig)
    async with AsyncExitStack() as stack:
        with settings_refused():
            client = await stack.enter_async_context(
                session.create_client(
                    "sqs",
                    region_name=region_of(session, region),
                    endpoint_url=endpoint_url,
                    config=config,
                )
            )
        route = await asyncio.to_thread(route_of, client, session)  # reads a CA bundle file
        yield Aws(Credentials(credentials), route, client)


@asynccontextmanager
async def open_sqs(
    region: str | None, endpoint_url: str | None = None, max_connections: int = 32
) -> AsyncIterator[Aws]:
    """The aiobotocore SQS client and what it resolved (`open_aws`), made to refuse a
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


async def create_queue(client: Any, name: str, attributes: dict[str, str] | None = None) -> str:
    """Create (or find) a queue and return its URL."""
    queue = SqsQueue(client, f"(new queue {name})")
    response = await queue._call(
        "CreateQueue", client.create_queue, QueueName=name, Attributes=attributes or {}
    )
    return str(response["QueueUrl"])
