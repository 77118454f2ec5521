"""Metrics and health endpoints of a service running against the real servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from ingestor.demo.embedded import EmbeddedPostgres, free_port
from ingestor.demo.synthetic import generate
from ingestor.observe.hooks import HookChain, LogHooks, Stats
from ingestor.pipeline.service import run_service
from ingestor.settings import Settings
from ingestor.source.sqs import SqsQueue
from tests.conftest import REGION, TEST_KEY
from tests.endpoints import Endpoints
from tests.faults.test_outages import hold_lock

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[Endpoints]:
    """A service on `settings`, ready (/readyz 200), stopped on the way out."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(settings, stop, LogHooks()))
    try:
        async with aiohttp.ClientSession() as session:
            endpoints = Endpoints(session, settings.metrics_port)
            await endpoints.wait_for("/readyz", 200)
            yield endpoints
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def total(samples: dict[str, float], name: str) -> float:
    """A counter summed over its labels."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def accounted(samples: dict[str, float]) -> bool:
    """loaded + rejected == received - in flight: every message received is either
    committed (as a row or a reject) or still held."""
    done = total(samples, "ingestor_messages_loaded_total") + total(
        samples, "ingestor_messages_rejected_total"
    )
    held = samples["ingestor_messages_received_total"] - samples["ingestor_inflight_messages"]
    return done == held


def service_settings(make_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    return make_settings(
        drain=False,
        receive_wait_seconds=1,
        metrics_host="127.0.0.1",
        metrics_port=free_port(),
        queue_depth_interval=0.5,
        batch_size=50,
        **overrides,
    )


@pytest.mark.postgres
async def test_metrics_account_for_every_message_and_readiness_follows_the_service(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, database: str
) -> None:
    # Given a running service with its metrics port
    settings = service_settings(make_settings)
    stop, stats = asyncio.Event(), Stats()
    task = asyncio.create_task(run_service(settings, stop, HookChain(LogHooks(), stats)))
    async with aiohttp.ClientSession() as session:
        endpoints = Endpoints(session, settings.metrics_port)
        await endpoints.wait_for("/healthz", 200)
        await endpoints.wait_for("/readyz", 200)
        assert (await endpoints.scrape())["ingestor_ready"] == 1
        # When valid events and junk arrive
        events = generate(1500, seed=21, junk_rate=0.1, repeat_rate=0)
        junk = sum(1 for e in events if not e.valid)
        sent = len(await sqs_queue.send([e.body for e in events]))
        # Then, at every scrape, each received message is committed or still in flight
        scrapes = 0
        while (samples := await endpoints.scrape())["ingestor_messages_deleted_total"] < sent:
            assert accounted(samples), samples
            scrapes += 1
            assert scrapes < 3000, "the service did not delete what was sent"
            await asyncio.sleep(0.02)
        # And at the end the counters add up to what was sent
        assert accounted(samples)
        assert samples["ingestor_messages_received_total"] == sent
        assert total(samples, "ingestor_messages_loaded_total") == sent - junk
        assert total(samples, "ingestor_messages_rejected_total") == junk
        assert samples["ingestor_messages_deleted_total"] == sent
        assert samples["ingestor_batch_size_messages_sum"] == sent
        assert samples["ingestor_lag_seconds_count"] == sent
        assert samples["ingestor_flush_duration_seconds_count"] > 0
        assert samples['ingestor_buffer_capacity_items{buffer="received"}'] > 0
        await endpoints.until("ingestor_queue_visible_messages", 0)  # sampled: catches up
        assert (await endpoints.status("/readyz"))[0] == 200
        # When a stop is requested while messages are held (writes blocked by a lock)
        async with hold_lock(database):
            more = generate(20, seed=22, junk_rate=0, repeat_rate=0)
            sent += len(await sqs_queue.send([e.body for e in more]))
            await endpoints.until("ingestor_messages_received_total", sent)
            stop.set()
            # Then /readyz says 503 while it drains, and /healthz still answers
            assert "draining" in await endpoints.wait_for("/readyz", 503)
            assert (await endpoints.scrape())["ingestor_ready"] == 0
            assert (await endpoints.status("/healthz"))[0] == 200
    await asyncio.wait_for(task, 30)
    assert (stats.received, stats.deleted) == (sent, sent)


async def test_readyz_follows_a_database_that_goes_away_and_comes_back(
    own_postgres: EmbeddedPostgres, sqs_queue: SqsQueue, sqs_endpoint: str
) -> None:
    # Given an idle service (nothing to write: only the live check can notice the database)
    settings = Settings(
        queue_url=sqs_queue.url,
        database_url=SecretStr(own_postgres.url),
        hmac_key=SecretStr(TEST_KEY),
        sqs_endpoint_url=sqs_endpoint,
        aws_region=REGION,
        receive_wait_seconds=1,
        metrics_host="127.0.0.1",
        metrics_port=free_port(),
    )
    async with running_service(settings) as endpoints:
        # When PostgreSQL stops, /readyz says 503 (and /healthz still 200)
        await asyncio.to_thread(own_postgres.stop)
        assert "database" in await endpoints.wait_for("/readyz", 503, within=15)
        assert (await endpoints.status("/healthz"))[0] == 200
        # And when it is back, 200 again, without a restart
        await asyncio.to_thread(own_postgres.start)
        await endpoints.wait_for("/readyz", 200, within=30)
