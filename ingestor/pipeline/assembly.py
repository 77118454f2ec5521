"""The parts a command builds from its settings: the queue client, the connection pool,
the masker, the migrated schema. The service and the other commands share them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import asyncpg

from ingestor.errors import QueueGone
from ingestor.pipeline.writer import PENDING_DELETES, delete_calls
from ingestor.ports import Hooks
from ingestor.retry import RETRY_FOREVER, observed
from ingestor.settings import Settings, env_name
from ingestor.sink.postgres import close_pool, connect, create_pool
from ingestor.sink.schema import migrate
from ingestor.source.acks import DEFAULT_POLICY, AckPolicy
from ingestor.source.aws import resolve_aws
from ingestor.source.sqs_api import SqsApi
from ingestor.source.sqs_wire import WireSqs, wire_session
from ingestor.transform.masking import HmacMasker

if TYPE_CHECKING:
    from ingestor.custody.vault import VaultingMasker

log = logging.getLogger("ingestor")


@asynccontextmanager
async def open_queue(settings: Settings) -> AsyncIterator[SqsApi]:
    """The queue, through the direct client (`sqs_wire`), or aiobotocore's when
    INGESTOR_SQS_CLIENT=botocore (imported only then)."""
    settings.require("queue_url")
    assert settings.queue_url is not None
    region, endpoint, limit = settings.region, settings.sqs_endpoint_url, connections(settings)
    if settings.sqs_client == "botocore":
        from ingestor.source.sqs import SqsQueue, open_sqs  # noqa: PLC0415

        async with open_sqs(region, endpoint, limit) as aws:
            yield SqsQueue(aws.client, settings.queue_url, aws.credentials)
        return
    resolved = await resolve_aws(region, endpoint, limit)
    async with wire_session(limit) as http:
        yield WireSqs(resolved, settings.queue_url, http)


def connections(settings: Settings, policy: AckPolicy = DEFAULT_POLICY) -> int:
    """HTTP connections to SQS: one per long poll, the delete calls of each writer's
    pending deletes, and the heartbeat's and the hand-back's calls."""
    calls = delete_calls(settings.receivers, settings.writers, policy.concurrency)
    deletes = settings.writers * PENDING_DELETES * calls
    return settings.receivers + deletes + policy.connections(2)


@asynccontextmanager
async def open_pool(settings: Settings, hooks: Hooks | None = None) -> AsyncIterator[asyncpg.Pool]:
    """The pool (`start_pool`), closed at the end of the block."""
    pool = await start_pool(settings, hooks)
    try:
        yield pool
    finally:
        await close_pool(pool)


async def start_pool(settings: Settings, hooks: Hooks | None = None) -> asyncpg.Pool:
    """The pool; at start-up a database that is not there yet is waited for."""
    size = settings.writers + 1
    return await observed(
        "startup", lambda: create_pool(settings.dsn, size), RETRY_FOREVER, hooks or Hooks()
    )


async def run_migrations(settings: Settings, hooks: Hooks | None = None) -> list[str]:
    """Migrate; a database that is not reachable yet (a pod starting before it) is
    retried with backoff rather than failing the start."""

    async def attempt() -> list[str]:
        connection = await connect(settings.dsn)
        try:
            return await migrate(connection, settings.partition_by)
        finally:
            await connection.close()

    return await observed("startup", attempt, RETRY_FOREVER, hooks or Hooks())


def not_found(queue: SqsApi, settings: Settings) -> QueueGone:
    """The queue is not where the settings say, in plain words."""
    hint = settings.endpoint_hint() or f"check {env_name('queue_url')} and the region"
    return QueueGone(f"queue {queue.name} does not exist in {queue.region} ({queue.url}): {hint}")


def build_masker(settings: Settings) -> HmacMasker | VaultingMasker:
    """The HMAC masker, sealing to the vault when a public key is set (the vault's code,
    and the sealing library, imported only then)."""
    public_key = settings.vault_key
    if public_key is None:
        log.warning(
            "vault off (no %s): masked values can never be recovered",
            env_name("vault_public_key"),
            extra={"event": "vault_off"},
        )
        return HmacMasker(settings.key_bytes)
    from ingestor.custody.vault import Sealer, VaultingMasker  # noqa: PLC0415

    sealer = Sealer(public_key)
    log.info("vault on: sealing to key %s", sealer.key_id, extra={"event": "vault_on"})
    return VaultingMasker(settings.key_bytes, sealer, settings.vault_cache_size)
