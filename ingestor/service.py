"""Wiring: settings -> SQS client, connection pool, sink, masker -> a running pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

from ingestor.erasure import follow_erasures
from ingestor.hooks import HookChain, Hooks
from ingestor.ledger import ErasureLedger
from ingestor.masking import HmacMasker
from ingestor.pipeline import Pipeline, PipelineConfig
from ingestor.postgres import PostgresSink, close_pool, connect, create_pool
from ingestor.retry import RETRY_FOREVER, observed
from ingestor.schema import migrate
from ingestor.settings import Settings, env_name
from ingestor.sqs import SqsQueue, sqs_client
from ingestor.sqs_wire import WireSqs, endpoint_for, wire_session
from ingestor.telemetry import observing
from ingestor.transform import Transformer
from ingestor.vault import Sealer, VaultingMasker, VaultMemory
from ingestor.writer import WriterConfig

log = logging.getLogger("ingestor")
T = TypeVar("T")


def pipeline_config(settings: Settings) -> PipelineConfig:
    return PipelineConfig(
        receivers=settings.receivers,
        receive_wait_seconds=(
            settings.drain_wait_seconds if settings.drain else settings.receive_wait_seconds
        ),
        visibility_timeout=settings.visibility_timeout,
        drain=settings.drain,
        batch_size=settings.batch_size,
        flush_interval=settings.flush_interval,
        buffer_messages=settings.buffer_messages,
        writers=settings.writers,
        shutdown_timeout=settings.shutdown_timeout,
        max_hold_seconds=settings.max_hold_seconds,
    )


@asynccontextmanager
async def open_queue(settings: Settings) -> AsyncIterator[SqsQueue]:
    settings.require("queue_url")
    assert settings.queue_url is not None
    # Long polls hold one connection each; each writer's pending deletes and the heartbeat
    # may use up to 16 each at once (sqs._CONCURRENT_BATCH_CALLS).
    pending = WriterConfig(settings.batch_size, settings.flush_interval).pending_deletes
    connections = settings.receivers + 16 * (settings.writers * pending + 1)
    async with sqs_client(settings.region, settings.sqs_endpoint_url, connections) as client:
        if settings.sqs_client == "botocore":
            yield SqsQueue(client, settings.queue_url)
            return
        endpoint = endpoint_for(settings.region, settings.sqs_endpoint_url)
        async with wire_session(connections) as http:
            yield WireSqs(client, settings.queue_url, http, endpoint, settings.region)


@asynccontextmanager
async def open_pool(settings: Settings, hooks: Hooks | None = None) -> AsyncIterator[asyncpg.Pool]:
    """The pool; at start-up a database that is not there yet is waited for."""
    size = settings.writers + 1
    pool = await observed(
        "startup", lambda: create_pool(settings.dsn, size), RETRY_FOREVER, hooks or Hooks()
    )
    try:
        yield pool
    finally:
        await close_pool(pool)


async def run_migrations(settings: Settings, hooks: Hooks | None = None) -> list[str]:
    """Migrate; a database that is not reachable yet (a pod starting before it) is
    retried with backoff rather than failing the start."""

    async def attempt() -> list[str]:
        connection = await connect(settings.dsn)
        try:
            return await migrate(connection)
        finally:
            await connection.close()

    return await observed("startup", attempt, RETRY_FOREVER, hooks or Hooks())


async def run_service(settings: Settings, stop: asyncio.Event, hooks: Hooks) -> None:
    """Migrate, then run the pipeline until `stop` (or the queue is empty, in drain mode),
    observed by the telemetry (metrics, health endpoints, progress lines) throughout."""
    settings.require("queue_url", "database_url", "hmac_key")
    async with observing(settings, hooks) as telemetry:
        hooks = telemetry.hooks
        hooks.on_state("starting")
        if await _until_stopped(run_migrations(settings, hooks), stop) is None:
            hooks.on_state("stopped")
            return
        masker = build_masker(settings)
        if isinstance(masker, VaultingMasker):
            hooks = HookChain(hooks, VaultMemory(masker))
        transformer = Transformer(masker)
        async with open_queue(settings) as queue, open_pool(settings, hooks) as pool:
            # The queue answers before the service calls itself ready (and a queue that
            # does not exist stops it here, before anything is received).
            depth = await _until_stopped(
                observed("startup", queue.depths, RETRY_FOREVER, hooks), stop
            )
            if depth is None:
                hooks.on_state("stopped")
                return
            hooks.on_queue_depth(depth)
            sink = PostgresSink(pool, ErasureLedger(masker))
            pipeline = Pipeline(queue, sink, transformer, pipeline_config(settings), hooks)
            telemetry.attach(pipeline, queue, pool)
            erasures = follow_erasures(pool, masker) if isinstance(masker, VaultingMasker) else None
            async with _beside(erasures):
                await pipeline.run(stop)


@asynccontextmanager
async def _beside(work: Coroutine[Any, Any, None] | None) -> AsyncIterator[None]:
    """Run `work` (if any) as a background task for the duration of the block."""
    task = None if work is None else asyncio.create_task(work)
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def build_masker(settings: Settings) -> HmacMasker | VaultingMasker:
    """The HMAC masker, sealing to the vault when a public key is set."""
    public_key = settings.vault_key
    if public_key is None:
        log.warning(
            "vault off (no %s): masked values can never be recovered",
            env_name("vault_public_key"),
            extra={"event": "vault_off"},
        )
        return HmacMasker(settings.key_bytes)
    sealer = Sealer(public_key)
    log.info("vault on: sealing to key %s", sealer.key_id, extra={"event": "vault_on"})
    return VaultingMasker(settings.key_bytes, sealer, settings.vault_cache_size)


async def _until_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """`work`'s result, or None if `stop` is set first (a signal while waiting at start)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    racing: set[asyncio.Future[Any]] = {task, stopped}
    try:
        await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    return None
