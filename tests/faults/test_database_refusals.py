"""A database that misbehaves without stopping the service, tried as a DBA would make it
misbehave, on the real PostgreSQL: a trigger that refuses one row (any SQLSTATE), a NOT
NULL column nobody fills (every row refused: stop, at any rate, before the queue turns
into rejects), and a statement_timeout that a big transaction cannot meet."""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import orjson
import pytest

from ingestor.custody.keys import generate_key_pair, vault_key_id, write_private_key
from ingestor.demo.synthetic import generate
from ingestor.settings import Settings
from ingestor.sink.isolation import BREAKER_THRESHOLD
from ingestor.source.sqs import SqsQueue
from tests.cli import drain, ingestor
from tests.conftest import service_env
from tests.faults.conftest import check_invariant, record
from tests.integration.helpers import find_plaintext, plaintext_pii

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

BANNING_TRIGGER = """
CREATE FUNCTION no_banned_devices() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.device_type = 'banned' THEN
        RAISE EXCEPTION 'device % of % is banned', NEW.masked_device_id, NEW.user_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER no_banned_devices BEFORE INSERT OR UPDATE ON user_logins
    FOR EACH ROW EXECUTE FUNCTION no_banned_devices();
"""


async def test_a_trigger_that_refuses_one_row_isolates_that_row_whatever_its_sqlstate(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, db: asyncpg.Connection
) -> None:
    # Given a DBA's trigger that raises P0001 for one kind of row, quoting its values
    await db.execute(BANNING_TRIGGER)
    events = [orjson.loads(e.body) for e in generate(600, seed=81, junk_rate=0, repeat_rate=0)]
    events[123]["device_type"] = "banned"
    bodies = [orjson.dumps(event).decode() for event in events]
    sent = await sqs_queue.send(bodies)
    # When the service drains the queue in batches of 200
    env = service_env(make_settings())
    env["INGESTOR_BATCH_SIZE"] = "200"
    code, logs = await drain(env)
    # Then the refused row is a db_P0001 reject and the other 599 are rows: nothing stopped
    assert code == 0, logs[-2_000:]
    rejects = await db.fetch("SELECT reason_code, reason FROM ingestor_rejects")
    assert [r["reason_code"] for r in rejects] == ["db_P0001"]
    # with the server's message, minus the values it quoted
    assert "is banned" in rejects[0]["reason"]
    assert events[123]["user_id"] not in rejects[0]["reason"]
    assert await db.fetchval("SELECT count(*) FROM user_logins") == 599
    await check_invariant(db, sqs_queue, sent)
    assert await find_plaintext(db, plaintext_pii(bodies)) == []
    record("DBA trigger raising P0001 for one row", 1, len(sent), "same batch")


async def test_a_column_nobody_fills_stops_the_service_before_a_batch_turns_into_rejects(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, db: asyncpg.Connection
) -> None:
    # Given a NOT NULL column without a default, added by a DBA, and 3,000 messages
    await db.execute("ALTER TABLE user_logins ADD COLUMN region text NOT NULL")
    sent = await sqs_queue.send([e.body for e in generate(3_000, seed=82, junk_rate=0)])
    # When the service runs under load (batches of 500)
    env = service_env(make_settings())
    env["INGESTOR_BATCH_SIZE"] = "500"
    code, logs = await drain(env)
    # Then it stops (exit 1) saying why, with at most the breaker's count turned into
    # rejects, and nothing lost: the rest is still on the queue
    assert code == 1, logs[-2_000:]
    assert "refused" in logs
    assert "db_23502" in logs
    rejects = await db.fetchval("SELECT count(*) FROM ingestor_rejects")
    assert 0 < rejects < BREAKER_THRESHOLD
    assert await db.fetchval("SELECT count(*) FROM user_logins") == 0
    # (the rejects' messages too: their batch did not finish, so they are redelivered)
    depth = await sqs_queue.depths()
    assert (depth.visible, depth.in_flight) == (len(sent), 0)


async def test_at_one_message_per_batch_the_breaker_trips_too_and_replay_restores(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    # Given the same column, and a service at low traffic: one message at a time, each
    # sent once the one before it was handled (so each is a batch of its own)
    await db.execute("ALTER TABLE user_logins ADD COLUMN region text NOT NULL")
    bodies = [e.body for e in generate(20, seed=83, junk_rate=0)]
    env = service_env(make_settings())
    env.update(INGESTOR_DRAIN="false", INGESTOR_RECEIVE_WAIT_SECONDS="1")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingestor", "run", env=env, stderr=asyncio.subprocess.PIPE
    )
    sent: list[str] = []
    for body in bodies:
        sent += await sqs_queue.send([body])
        if not await handled(db, process, len(sent)):
            break
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    logs = stderr.decode()
    # Then it stops after the breaker's count, with a WARNING that names the reason once
    assert process.returncode == 1, logs[-2_000:]
    assert len(sent) == BREAKER_THRESHOLD
    warnings = [line for line in logs.splitlines() if '"row_refused"' in line]
    assert len(warnings) == 1, logs[-2_000:]  # once per SQLSTATE per minute, not per row
    assert '"level":"warning"' in warnings[0]
    assert "db_23502" in warnings[0]
    assert await db.fetchval("SELECT count(*) FROM ingestor_rejects") == BREAKER_THRESHOLD - 1
    # And once the DBA fixes the table, `rejects replay` loads them, and a drain the rest
    sent += await sqs_queue.send(bodies[len(sent) :])
    await db.execute("ALTER TABLE user_logins ALTER COLUMN region SET DEFAULT 'eu'")
    key_file = tmp_path / "vault.key"
    private, public = generate_key_pair()
    write_private_key(key_file, private, vault_key_id(public))
    replay = await ingestor(
        env, "rejects", "replay", "--reason", "db_23502", "--private-key-file", str(key_file)
    )
    assert replay.code == 0, replay.err[-2_000:]
    assert await db.fetchval("SELECT count(*) FROM user_logins") == BREAKER_THRESHOLD - 1
    code, logs = await drain({**env, "INGESTOR_DRAIN": "true"})
    assert code == 0, logs[-2_000:]
    await check_invariant(db, sqs_queue, sent)
    assert await db.fetchval("SELECT count(*) FROM user_logins") == len(bodies)
    record("NOT NULL column added, one message per batch", 3, len(sent), "replayed once fixed")


async def handled(db: asyncpg.Connection, process: asyncio.subprocess.Process, count: int) -> bool:
    """Wait until `count` messages are rejected (True) or the service has exited (False)."""
    deadline = time.monotonic() + 30
    while await db.fetchval("SELECT count(*) FROM ingestor_rejects") < count:
        if process.returncode is not None:
            return False
        assert time.monotonic() < deadline, f"message {count} was not handled"
        await asyncio.sleep(0.05)
    return True


SLOW_ROWS = """
CREATE FUNCTION slow_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.001);
    RETURN NEW;
END $$;
CREATE TRIGGER slow_rows BEFORE INSERT OR UPDATE ON user_logins
    FOR EACH ROW EXECUTE FUNCTION slow_rows();
"""


async def test_a_statement_timeout_makes_transactions_smaller_instead_of_stalling(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    database: str,
) -> None:
    # Given a statement_timeout of 250 ms, a millisecond per row (a DBA's audit trigger),
    # the vault on, and batches of up to 6,000 messages: a whole batch cannot commit
    _, public = generate_key_pair()
    name = urlsplit(database).path.lstrip("/")
    await db.execute(SLOW_ROWS)
    await db.execute(f"ALTER DATABASE \"{name}\" SET statement_timeout = '250ms'")
    sent = await sqs_queue.send([e.body for e in generate(6_000, seed=84)])
    env = service_env(make_settings())
    env.update(
        INGESTOR_BATCH_SIZE="6000",
        INGESTOR_FLUSH_INTERVAL="3",
        INGESTOR_BUFFER_MESSAGES="20000",
        INGESTOR_VAULT_PUBLIC_KEY=base64.b64encode(public).decode(),
    )
    # When the service drains it
    code, logs = await drain(env)
    # Then it writes smaller transactions, says so once, and loads everything
    assert code == 0, logs[-2_000:]
    assert logs.count('"transaction_shrunk"') == 1
    await check_invariant(db, sqs_queue, sent)
    record("statement_timeout 250 ms, 1 ms a row, batches of 6,000", 1, len(sent), "smaller")
