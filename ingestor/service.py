"""Wiring: settings -> SQS client, connection pool, sink, masker -> a running pipeline."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from ingestor.hooks import Hooks
from ingestor.masking import HmacMasker
from ingestor.pipeline import Pipeline, PipelineConfig
from ingestor.postgres import PostgresSink, connect, create_pool
from ingestor.schema import migrate
from ingestor.settings import Settings
from ingestor.sqs import SqsQueue, sqs_client
from ingestor.transform import Transformer

log = logging.getLogger("ingestor")


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
    connections = settings.receivers + 2 * settings.writers + 2
    async with sqs_client(settings.region, settings.sqs_endpoint_url, connections) as client:
        yield SqsQueue(client, settings.queue_url)


@asynccontextmanager
async def open_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings.dsn, settings.writers + 1)
    try:
        yield pool
    finally:
        await pool.close()


async def run_migrations(settings: Settings) -> list[str]:
    connection = await connect(settings.dsn)
    try:
        return await migrate(connection)
    finally:
        await connection.close()


async def run_service(settings: Settings, stop: asyncio.Event, hooks: Hooks) -> None:
    """Migrate, then run the pipeline until `stop` (or the queue is empty, in drain mode)."""
    settings.require("queue_url", "database_url", "hmac_key")
    await run_migrations(settings)
    transformer = Transformer(HmacMasker(settings.key_bytes))
    async with open_queue(settings) as queue, open_pool(settings) as pool:
        pipeline = Pipeline(
            queue, PostgresSink(pool), transformer, pipeline_config(settings), hooks
        )
        await pipeline.run(stop)
