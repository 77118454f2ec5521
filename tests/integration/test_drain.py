"""The whole path against the real servers: SQS emulator -> pipeline -> PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import Callable

import asyncpg
import orjson
import pytest

from ingestor.demo.run import crash_after_commit
from ingestor.demo.synthetic import generate
from ingestor.observe.hooks import Stats
from ingestor.pipeline.service import run_service
from ingestor.settings import Settings
from ingestor.source.sqs import SqsQueue
from ingestor.transform.masking import HmacMasker
from tests.integration.helpers import (
    expected_row,
    find_plaintext,
    plaintext_pii,
    queue_is_empty,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

ROW_COLUMNS = "user_id, device_type, masked_ip, masked_device_id, locale, app_version"


async def test_a_mixed_queue_drains_into_rows_and_rejects(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, db: asyncpg.Connection
) -> None:
    # Given a queue of valid events, junk, and events sent twice as separate messages
    events = generate(600, seed=11, junk_rate=0.1, repeat_rate=0.05)
    bodies = [e.body for e in events]
    await sqs_queue.send(bodies)
    settings = make_settings(batch_size=100)
    # When the service drains it
    stats = Stats()
    await asyncio.wait_for(run_service(settings, asyncio.Event(), stats), 60)
    # Then user_logins holds exactly the valid events, once each, with the right content
    masker = HmacMasker(settings.key_bytes)
    valid = [orjson.loads(e.body) for e in events if e.valid]
    rows = await db.fetch(f"SELECT {ROW_COLUMNS}, create_date, message_id FROM user_logins")
    assert Counter(tuple(r)[:6] for r in rows) == Counter(expected_row(e, masker) for e in valid)
    assert len({r["message_id"] for r in rows}) == len(rows)
    assert {r["create_date"] for r in rows} == {dt.datetime.now(dt.UTC).date()}
    # And the rejects hold the rest, each with a reason
    rejects = await db.fetch("SELECT reason_code, reason FROM ingestor_rejects")
    assert len(rejects) == sum(1 for e in events if not e.valid) == stats.rejected
    assert all(r["reason"] for r in rejects)
    # And the queue is empty, and no plaintext ip/device_id is anywhere in the database
    assert await queue_is_empty(sqs_queue)
    assert await find_plaintext(db, plaintext_pii(bodies)) == []


async def test_a_redelivered_message_replaces_its_row(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, db: asyncpg.Connection
) -> None:
    # Given 30 messages, 10 of which an earlier consumer committed but never deleted
    events = generate(30, seed=3, junk_rate=0, repeat_rate=0)
    await sqs_queue.send([e.body for e in events])
    settings = make_settings()
    assert (await crash_after_commit(settings, 10)).messages == 10
    assert await db.fetchval("SELECT count(*) FROM user_logins") == 10
    # When the service drains the queue, receiving those 10 a second time
    stats = Stats()
    await asyncio.wait_for(run_service(settings, asyncio.Event(), stats), 60)
    # Then each message is one row: the 10 redelivered replaced theirs
    assert stats.received == 30
    assert (stats.inserted, stats.replaced) == (20, 10)
    assert await db.fetchval("SELECT count(*) FROM user_logins") == 30
    assert await queue_is_empty(sqs_queue)
