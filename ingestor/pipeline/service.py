"""Wiring: settings -> SQS client, connection pool, sink, masker -> a running pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from ingestor.custody import keyrecord
from ingestor.custody.ledger import ErasureLedger
from ingestor.errors import DrainIncomplete, IngestorError, QueueGone
from ingestor.models import QueueAttributes
from ingestor.observe.hooks import HookChain
from ingestor.observe.telemetry import Telemetry, observing
from ingestor.pipeline.assembly import (
    build_masker,
    not_found,
    open_queue,
    run_migrations,
    start_pool,
)
from ingestor.pipeline.supervisor import Pipeline, PipelineConfig
from ingestor.ports import Hooks
from ingestor.retry import RETRY_FOREVER, observed
from ingestor.settings import Settings, env_name
from ingestor.sink.postgres import PostgresSink, close_pool, connect, mapped_errors
from ingestor.source.sqs_api import SqsApi
from ingestor.transform.masking import HmacMasker
from ingestor.transform.transformer import Transformer

if TYPE_CHECKING:
    from ingestor.custody.vault import VaultingMasker

log = logging.getLogger("ingestor")
SQS_DEFAULT_VISIBILITY = 30  # seconds: a new queue's VisibilityTimeout
T = TypeVar("T")


def pipeline_config(settings: Settings, visibility: tuple[int, int | None]) -> PipelineConfig:
    """The pipeline's settings; `visibility`: the timeout in force and what each receive
    sends (`in_force`)."""
    return PipelineConfig(
        receivers=settings.receivers,
        receive_wait_seconds=(
            settings.drain_wait_seconds if settings.drain else settings.receive_wait_seconds
        ),
        visibility_timeout=visibility[0],
        receive_visibility=visibility[1],
        drain=settings.drain,
        batch_size=settings.batch_size,
        flush_interval=settings.flush_interval,
        buffer_messages=settings.buffer_messages,
        writers=settings.writers,
        shutdown_timeout=settings.shutdown_timeout,
        max_hold_seconds=settings.max_hold_seconds,
    )


async def _prepare_database(settings: Settings, hooks: Hooks) -> str:
    """Migrate, then make sure the tables' tokens are made with this masking key (waiting
    out a rotation under way); a database that is not there yet is waited for."""

    async def claim() -> str:
        connection = await connect(settings.dsn)
        try:
            async with mapped_errors():
                return await keyrecord.claim(connection, settings.key_bytes)
        finally:
            await connection.close()

    await run_migrations(settings, hooks)
    return await observed("startup", claim, RETRY_FOREVER, hooks)


async def run_service(settings: Settings, stop: asyncio.Event, hooks: Hooks) -> None:
    """Migrate, then run the pipeline until `stop` (or the queue is empty, in drain mode),
    observed by the telemetry (metrics, health endpoints, progress lines) throughout.
    The queue's client comes first: no AWS credentials at all stops start-up at once,
    before the database is touched."""
    settings.require("queue_url", "database_url", "hmac_key")
    async with observing(settings, hooks) as telemetry, open_queue(settings) as queue:
        hooks = telemetry.hooks
        hooks.on_state("starting")
        started = await _until_stopped(_start(settings, queue, hooks), stop)
        if started is None:
            hooks.on_state("stopped")
            return
        attributes, pool = started
        try:
            hooks.on_queue_depth(attributes.depth)
            config = pipeline_config(settings, in_force(settings, attributes))
            await _run_pipeline(settings, queue, pool, config, telemetry, stop=stop)
        finally:
            await close_pool(pool)


async def _start(
    settings: Settings, queue: SqsApi, hooks: Hooks
) -> tuple[QueueAttributes, asyncpg.Pool]:
    """The database made ready (migrations, the masking key's claim, then the pool) beside
    the queue's first answer: each side mostly waits on its own server, so they overlap.
    Their outcomes are taken in the order the steps ran one after the other (the
    database's preparation, the queue's attributes, the pool), so a failure is the one
    reported before; whatever is still under way is then cancelled, and a pool already
    open is closed."""
    prepared = asyncio.create_task(_prepare_database(settings, hooks), name="prepare-database")
    pool = asyncio.create_task(_pool_after(prepared, settings, hooks), name="open-pool")
    # The queue answers before the service calls itself ready (and a queue that does not
    # exist stops it here, before anything is received).
    attributes = asyncio.create_task(_queue_at_start(queue, settings, hooks), name="queue")
    try:
        await prepared
        return await attributes, await pool
    except BaseException:
        for task in (prepared, attributes, pool):
            task.cancel()
        await asyncio.gather(prepared, attributes, pool, return_exceptions=True)
        if not pool.cancelled() and pool.exception() is None:
            await close_pool(pool.result())
        raise


async def _pool_after(
    prepared: asyncio.Task[str], settings: Settings, hooks: Hooks
) -> asyncpg.Pool:
    """The pool, once the tables are there (each connection makes its staging table from
    user_logins'). Shielded: only `_start` cancels the preparation."""
    await asyncio.shield(prepared)
    return await start_pool(settings, hooks)


async def _run_pipeline(
    settings: Settings,
    queue: SqsApi,
    pool: asyncpg.Pool,
    config: PipelineConfig,
    telemetry: Telemetry,
    *,
    stop: asyncio.Event,
) -> None:
    masker = build_masker(settings)
    vault = None if isinstance(masker, HmacMasker) else masker  # the vault is on
    hooks = telemetry.hooks if vault is None else _remembering(telemetry.hooks, vault)
    sink = PostgresSink(pool, ErasureLedger(masker), hooks)
    pipeline = Pipeline(queue, sink, Transformer(masker, settings.envelope), config, hooks)
    telemetry.attach(pipeline, queue, pool)
    async with _beside(None if vault is None else _erasures(pool, vault)):
        await pipeline.run(stop)
    await drain_verdict(pipeline, queue, stop)


# With the vault off (no public key), its code and the custody commands' are not imported.
def _remembering(hooks: Hooks, vault: VaultingMasker) -> Hooks:
    """`hooks`, and the committed tokens told to the vaulting masker."""
    from ingestor.custody.vault import VaultMemory  # noqa: PLC0415

    return HookChain(hooks, VaultMemory(vault))


def _erasures(pool: Any, vault: VaultingMasker) -> Coroutine[Any, Any, None]:
    """What applies erasures made elsewhere to the vault cache."""
    from ingestor.custody.erasure import follow_erasures  # noqa: PLC0415

    return follow_erasures(pool, vault)


async def _queue_at_start(queue: SqsApi, settings: Settings, hooks: Hooks) -> QueueAttributes:
    if (hint := settings.endpoint_hint()) is not None:
        log.warning("%s", hint, extra={"event": "endpoint_hint"})
    try:
        return await observed("startup", queue.attributes, RETRY_FOREVER, hooks)
    except QueueGone:
        raise not_found(queue, settings) from None


def in_force(settings: Settings, attributes: QueueAttributes) -> tuple[int, int | None]:
    """(the visibility timeout in force, the one each receive sends): the operator's,
    sent; else the queue's own, not sent. A queue's 0 (every message visible again at
    once) holds nothing: SQS's default, 30 s, is sent with every receive instead."""
    if settings.visibility_timeout:
        seconds, sent = settings.visibility_timeout, settings.visibility_timeout
        source = env_name("visibility_timeout")
    elif attributes.visibility_timeout >= 1:
        seconds, sent, source = attributes.visibility_timeout, None, "the queue's own"
    else:
        seconds = sent = SQS_DEFAULT_VISIBILITY
        source = "SQS's default, sent with every receive: the queue's is 0"
    log.info(
        "visibility timeout %d s (%s)",
        seconds,
        source,
        extra={"event": "visibility_timeout", "seconds": seconds},
    )
    return seconds, sent


async def drain_verdict(pipeline: Pipeline, queue: SqsApi, stop: asyncio.Event) -> None:
    """In drain mode, raise `DrainIncomplete` unless the queue was left empty."""
    watch = pipeline.drain
    if watch is None:
        return
    if (held := watch.held) is not None:
        raise DrainIncomplete(
            f"{held.total} messages could not be loaded after waiting {watch.held_wait:.0f} s "
            f"(the visibility timeout): {held.in_flight} still held by another consumer, "
            f"{held.visible} waiting but not handed out (a FIFO group held elsewhere?), "
            f"{held.delayed} delayed; run again"
        )
    if watch.done:
        return
    try:
        depth = await queue.depths()
    except IngestorError as error:
        raise DrainIncomplete(f"stopped before the queue was empty ({error}); run again") from None
    if depth.total:
        raise DrainIncomplete(
            f"stopped before the queue was empty: {depth.total} messages remain "
            f"({depth.visible} waiting, {depth.in_flight} in flight, {depth.delayed} "
            "delayed); run again"
        )


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


async def _until_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """`work`'s result, or None if `stop` is set first (a signal while waiting at start):
    then `work` is cancelled, and its clean-up done before this returns."""
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
    await asyncio.wait({task})
    return None
