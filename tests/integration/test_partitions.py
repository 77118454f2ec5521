"""A user_logins range-partitioned by create_date, on the real servers: migrate gives it
its unique index on (message_id, create_date); a message stays one row whatever delivers
it twice, across partition boundaries; a row whose date has no partition is never a
reject (the sink adds the partition when its role may, else the batch waits); isolation,
unloading, erasure, rekey and replay work on it as on a plain table."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import pytest
import pytest_asyncio
from pydantic import SecretStr

from ingestor.cli.check import check_database
from ingestor.custody.audit import Request
from ingestor.custody.erasure import forget
from ingestor.custody.keys import generate_key_pair
from ingestor.custody.ledger import ErasureLedger
from ingestor.custody.replay import Replay, replay
from ingestor.custody.reveal import reveal
from ingestor.custody.tombstones import is_tombstone
from ingestor.custody.vault import Checker, Opener, Sealer, VaultingMasker
from ingestor.demo.synthetic import generate
from ingestor.errors import PartitionMissing
from ingestor.models import Envelope, MissingPartition, Processed
from ingestor.pipeline.service import run_service
from ingestor.ports import Hooks
from ingestor.settings import Settings
from ingestor.sink.isolation import Batch, split_outcomes, vault_entries, write_isolating
from ingestor.sink.postgres import PostgresSink, close_pool, create_pool
from ingestor.sink.schema import migrate, schema_problems
from ingestor.source.sqs import SqsQueue
from ingestor.transform.transformer import Transformer
from tests.cli import ingestor
from tests.conftest import TEST_KEY
from tests.envelopes import sns
from tests.integration.helpers import queue_is_empty
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

KEY = TEST_KEY.encode()
REQUEST = Request.of("TICKET-14", "alice")
ANALYSTS_COLUMNS = """
    user_id varchar(128), device_type varchar(32), masked_ip varchar(256),
    masked_device_id varchar(256), locale varchar(32), app_version integer, create_date date
"""
# The months a DBA partitioned (as their own tool names them): 2023-10 to 2023-12.
MONTHS = ("2023-10-01", "2023-11-01", "2023-12-01", "2024-01-01")


def at(moment: str) -> int:
    """SentTimestamp (ms) of an ISO time in UTC."""
    return int(dt.datetime.fromisoformat(moment).replace(tzinfo=dt.UTC).timestamp() * 1000)


def event(user: str = "u-1", ip: str = "203.0.113.7", device: str = "123-45-6789") -> str:
    return orjson.dumps({"user_id": user, "ip": ip, "device_id": device}).decode()


def message(message_id: str, sent: str, body: str | None = None, receives: int = 1) -> Envelope:
    return Envelope(message_id, f"h-{message_id}", body or event(), at(sent), receives)


async def partition_by_month(
    db: asyncpg.Connection, bounds: Sequence[str] = MONTHS, *, default: bool = False
) -> None:
    """user_logins made again as a DBA partitions it: by range on create_date, one
    partition per pair of `bounds` (and a DEFAULT one), then migrated."""
    await db.execute("DROP TABLE user_logins")
    await db.execute(
        f"CREATE TABLE user_logins ({ANALYSTS_COLUMNS}) PARTITION BY RANGE (create_date)"
    )
    for lower, upper in itertools.pairwise(bounds):
        name = f"user_logins_{lower[:7].replace('-', '_')}"
        await db.execute(
            f"CREATE TABLE {name} PARTITION OF user_logins "
            f"FOR VALUES FROM ('{lower}') TO ('{upper}')"
        )
    if default:
        await db.execute("CREATE TABLE user_logins_default PARTITION OF user_logins DEFAULT")
    await migrate(db)


async def where(db: asyncpg.Connection) -> list[tuple[str, str, dt.date]]:
    """(message_id, partition, create_date) of every row."""
    rows = await db.fetch(
        "SELECT message_id, tableoid::regclass::text AS part, create_date FROM user_logins "
        "ORDER BY message_id"
    )
    return [(r["message_id"], r["part"], r["create_date"]) for r in rows]


class Heard(Hooks):
    def __init__(self) -> None:
        self.missing: list[MissingPartition] = []

    def on_partition_missing(self, missing: MissingPartition) -> None:
        self.missing.append(missing)


class Loader:
    """The transform and the sink as the writer runs them, on a pool of `dsn`."""

    def __init__(self, pool: asyncpg.Pool, masker: Any = None) -> None:
        self.masker = masker or VaultingMasker(KEY, Sealer(generate_key_pair()[1]), 100)
        self.transformer = Transformer(self.masker)
        self.heard = Heard()
        self.sink = PostgresSink(pool, ErasureLedger(self.masker), self.heard)

    async def load(self, messages: Sequence[Envelope]) -> tuple[Any, list[Any]]:
        processed = [self.transformer.process(m) for m in messages]
        return await self.write(processed)

    async def write(self, processed: Sequence[Processed]) -> tuple[Any, list[Any]]:
        rows, rejects = split_outcomes(processed)
        batch = Batch(processed, self.transformer.digest, vault_entries(processed))
        return await write_isolating(self.sink, rows, rejects, batch)


@pytest_asyncio.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database, 2)
    yield pool
    await close_pool(pool)


def with_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.netloc.rsplit('@', 1)[-1]}"))


@pytest_asyncio.fixture
async def partitioned(db: asyncpg.Connection) -> asyncpg.Connection:
    """The test's database, its user_logins partitioned by month (`MONTHS`)."""
    await partition_by_month(db)
    return db


@pytest_asyncio.fixture
async def loader_url(
    partitioned: asyncpg.Connection, database: str, postgres_url: str
) -> AsyncIterator[str]:
    """A role that may read and write the tables of the partitioned database, as the
    service's should, and no more: it does not own user_logins and may not CREATE in its
    schema."""
    role = f"loader_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN")
        await admin.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}")
        await admin.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
        )
    finally:
        await admin.close()
    yield with_user(database, role)
    admin = await asyncpg.connect(database)
    try:
        await admin.execute(f"DROP OWNED BY {role}")
    finally:
        await admin.close()
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
    finally:
        await admin.close()


# --- migrate and check ------------------------------------------------------------------


async def test_migrate_gives_a_partitioned_table_its_key_and_keeps_its_rows(
    db: asyncpg.Connection,
) -> None:
    # Given an analysts' table partitioned by month after ingestor's migrations ran, with
    # rows of its own and no message_id
    await db.execute("DROP TABLE user_logins")
    await db.execute(
        f"CREATE TABLE user_logins ({ANALYSTS_COLUMNS}) PARTITION BY RANGE (create_date)"
    )
    await db.execute(
        "CREATE TABLE old_2023_11 PARTITION OF user_logins "
        "FOR VALUES FROM ('2023-11-01') TO ('2023-12-01')"
    )
    await db.execute("INSERT INTO user_logins (user_id, create_date) VALUES ('old', '2023-11-02')")
    assert any(
        "no unique index on (create_date, message_id)" in p for p in await schema_problems(db)
    )
    # When migrate runs (no migration is pending)
    assert await migrate(db) == []
    # Then the rows stay, message_id is there, the unique index holds the partition key
    assert [tuple(r) for r in await db.fetch("SELECT user_id, message_id FROM user_logins")] == [
        ("old", None)
    ]
    key = await db.fetchval("SELECT pg_get_indexdef('user_logins_message_id_key'::regclass)")
    assert key.endswith("USING btree (message_id, create_date)")
    assert await schema_problems(db) == []
    assert await migrate(db) == []  # and a second run changes nothing


async def test_a_fresh_database_with_a_partitioned_table_migrates_from_the_first_migration(
    empty_database: str,
) -> None:
    # Given the analysts' table, partitioned by day with a DEFAULT partition, before
    # ingestor ever ran (migration 0001 would make a unique index without the date)
    connection = await asyncpg.connect(empty_database)
    try:
        await connection.execute(
            f"CREATE TABLE user_logins ({ANALYSTS_COLUMNS}) PARTITION BY RANGE (create_date);"
            "CREATE TABLE logins_d1 PARTITION OF user_logins "
            "FOR VALUES FROM ('2024-03-01') TO ('2024-03-02');"
            "CREATE TABLE logins_rest PARTITION OF user_logins DEFAULT;"
        )
        # When migrate runs every migration
        applied = await migrate(connection)
        # Then all apply, and the check is clean
        assert applied[0] == "0001_user_logins_and_rejects"
        assert await schema_problems(connection) == []
    finally:
        await connection.close()


async def test_a_unique_index_a_dba_built_first_is_kept_and_not_doubled(
    empty_database: str,
) -> None:
    # Given a partitioned table to which a DBA added message_id and its unique index on
    # (create_date, message_id), named their way, before ingestor first ran (on a large
    # table they would build it partition by partition, CONCURRENTLY)
    connection = await asyncpg.connect(empty_database)
    try:
        await connection.execute(
            f"CREATE TABLE user_logins ({ANALYSTS_COLUMNS}, message_id varchar(128))"
            " PARTITION BY RANGE (create_date);"
            "CREATE TABLE logins_2024 PARTITION OF user_logins"
            " FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
            "CREATE UNIQUE INDEX logins_key ON user_logins (create_date, message_id);"
        )
        await migrate(connection)
        indexes = await connection.fetch(
            "SELECT indexrelid::regclass::text AS name FROM pg_index"
            " WHERE indrelid = 'user_logins'::regclass"
        )
        assert [r["name"] for r in indexes] == ["logins_key"]
        assert await schema_problems(connection) == []
    finally:
        await connection.close()


async def test_a_table_partitioned_another_way_is_refused_with_the_reason(
    db: asyncpg.Connection,
) -> None:
    await db.execute("DROP TABLE user_logins")
    await db.execute(f"CREATE TABLE user_logins ({ANALYSTS_COLUMNS}) PARTITION BY LIST (locale)")
    problems = await schema_problems(db)
    assert any(
        "partitioned by LIST (locale)" in p and "range-partitioned by create_date" in p
        for p in problems
    )
    with pytest.raises(Exception, match="LIST"):
        await migrate(db)


async def test_check_names_the_partitions_a_service_role_cannot_add(
    db: asyncpg.Connection, loader_url: str
) -> None:
    # Given a partitioned table with no partition for today, and the service's role
    service = await asyncpg.connect(loader_url)
    try:
        problems = await schema_problems(service)
    finally:
        await service.close()
    today = dt.datetime.now(dt.UTC).date()
    # Then the check names today's date, that the role cannot add it, and the statement
    (line,) = [p for p in problems if "(today)" in p]
    assert str(today) in line
    assert "does not own user_logins" in line
    assert f"PARTITION OF user_logins FOR VALUES FROM ('{today:%Y-%m}-01')" in line
    # while the owner, who may add partitions, has nothing to report
    assert await schema_problems(db) == []


async def test_check_says_what_becomes_of_a_date_without_a_partition(
    make_settings: Callable[..., Settings], partitioned: asyncpg.Connection, loader_url: str
) -> None:
    # The owner's check: all is well, and the service adds what is missing
    lines = await check_database(make_settings())
    assert lines[-1] == (
        "ok   user_logins is partitioned by RANGE (create_date): 3 partitions, no DEFAULT "
        "partition; a date with no partition gets one from the service"
    )
    # The service role's: today has no partition and it cannot add one
    lines = await check_database(make_settings(database_url=SecretStr(loader_url)))
    assert [line[:40] for line in lines] == [
        "FAIL database: no partition of user_logi"
    ] * 2  # today, and the first day after today's month (the next partition)
    # With a DEFAULT partition, nothing waits
    await partitioned.execute("CREATE TABLE user_logins_default PARTITION OF user_logins DEFAULT")
    lines = await check_database(make_settings(database_url=SecretStr(loader_url)))
    assert lines[-1].endswith("a date no other partition holds goes to the DEFAULT partition")


# --- loading ------------------------------------------------------------------------------


async def test_a_redelivery_is_one_row_also_at_the_last_moment_of_a_month(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    # Given a partitioned table, and one SQS message sent at the last millisecond of
    # November, delivered twice (SQS keeps its SentTimestamp: the second delivery, received
    # in December, is dated by it too)
    await partition_by_month(db)
    loader = Loader(pool)
    first = message("m-1", "2023-11-30T23:59:59.999")
    again = message("m-1", "2023-11-30T23:59:59.999", receives=2)
    # When both deliveries are written, in two batches and in one
    await loader.load([first])
    result, _ = await loader.load([again])
    await loader.load([first, again])
    # Then the message is one row, in November's partition, replaced by its redelivery
    assert (result.inserted, result.replaced) == (0, 1)
    assert await where(db) == [("m-1", "user_logins_2023_11", dt.date(2023, 11, 30))]


async def test_two_sns_copies_sent_either_side_of_a_month_boundary_are_one_row(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    # Given one SNS notification published at the end of November, whose two copies
    # reached SQS either side of midnight (two MessageIds, SentTimestamps a month apart)
    await partition_by_month(db)
    loader = Loader(pool)
    notification = sns(orjson.loads(event()), "7f1d6f9e-4b9a-4a45-9d3e-2f3a8f1c0b11",
                       "2023-11-30T23:59:59.950Z")  # fmt: skip
    copies = [
        message("sqs-a", "2023-11-30T23:59:59.990", notification),
        message("sqs-b", "2023-12-01T00:00:00.020", notification),
    ]
    # When each copy is written in a batch of its own
    for copy in copies:
        await loader.load([copy])
    # Then they are one row, keyed and dated by the envelope: November
    assert await where(db) == [
        ("sns:7f1d6f9e-4b9a-4a45-9d3e-2f3a8f1c0b11", "user_logins_2023_11", dt.date(2023, 11, 30))
    ]


async def test_a_burst_over_three_months_lands_in_three_partitions(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await partition_by_month(db)
    loader = Loader(pool)
    sent = ["2023-10-31T23:59:59", "2023-11-01T00:00:00", "2023-11-15T12:00:00",
            "2023-12-01T00:00:00", "2023-12-31T23:59:59"]  # fmt: skip
    burst = [message(f"m-{i}", moment, event(f"u-{i}")) for i, moment in enumerate(sent)]
    result, refused = await loader.load([*burst, burst[2]])  # one of them delivered twice
    assert (result.inserted, refused) == (5, [])
    parts = [part for _, part, _ in await where(db)]
    assert parts == [
        "user_logins_2023_10",
        *["user_logins_2023_11"] * 2,
        *["user_logins_2023_12"] * 2,
    ]


async def test_a_default_partition_takes_every_date_the_others_do_not(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await partition_by_month(db, default=True)
    loader = Loader(pool)
    messages = [message("m-1", "2023-11-02T10:00:00"), message("m-2", "2031-05-02T10:00:00")]
    await loader.load(messages)
    result, refused = await loader.load([message("m-2", "2031-05-02T10:00:00", receives=2)])
    assert ((result.inserted, result.replaced), refused) == ((0, 1), [])
    assert [part for _, part, _ in await where(db)] == [
        "user_logins_2023_11",
        "user_logins_default",
    ]
    assert loader.heard.missing == []


# --- a date with no partition ---------------------------------------------------------------


async def test_a_date_without_partition_waits_for_one_and_is_never_a_reject(
    db: asyncpg.Connection, loader_url: str
) -> None:
    # Given a partitioned table with no partition for February 2024 and no DEFAULT one,
    # and a service role that may not add one
    pool = await create_pool(loader_url, 2)
    try:
        loader = Loader(pool)
        batch = [message("m-1", "2023-12-05T10:00:00"), message("m-2", "2024-02-10T10:00:00")]
        # When a batch with a row of that month is written
        with pytest.raises(PartitionMissing) as failed:
            await loader.load(batch)
        # Then the batch fails as transient, naming the table and the date, and nothing is
        # stored: no reject, no row
        assert "no partition of user_logins holds 2024-02-10" in str(failed.value)
        assert "does not own user_logins" in str(failed.value)
        assert await db.fetchval("SELECT count(*) FROM ingestor_rejects") == 0
        assert await db.fetchval("SELECT count(*) FROM user_logins") == 0
        (heard,) = loader.heard.missing
        assert (heard.day, heard.created, heard.partition) == (
            dt.date(2024, 2, 10),
            False,
            "user_logins_p2024_02",
        )
        # And once a DBA adds the partition it suggests, the same batch loads
        await db.execute(heard.statement())
        result, refused = await loader.load(batch)
        assert (result.inserted, refused) == (2, [])
    finally:
        await close_pool(pool)


async def test_a_role_that_owns_the_table_adds_the_missing_partition_like_its_neighbours(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    # Given monthly partitions up to December 2023 and a sink whose role owns the table
    await partition_by_month(db)
    loader = Loader(pool)
    # When rows of March 2024 and of the same March arrive (two writers at once)
    batches = [[message("m-1", "2024-03-10T10:00:00")], [message("m-2", "2024-03-31T23:00:00")]]
    results = await asyncio.gather(*(loader.load(b) for b in batches))
    # Then March's partition was added once, a month like the others, and both loaded
    assert [(r.inserted, refused) for r, refused in results] == [(1, []), (1, [])]
    assert {part for _, part, _ in await where(db)} == {"user_logins_p2024_03"}
    bound = await db.fetchval(
        "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'user_logins_p2024_03'"
    )
    assert bound == "FOR VALUES FROM ('2024-03-01') TO ('2024-04-01')"
    added = [m for m in loader.heard.missing if m.created]
    assert [(m.partition, m.span) for m in added] == [
        ("user_logins_p2024_03", (dt.date(2024, 3, 1), dt.date(2024, 4, 1)))
    ]
    # and the partition carries the unique index: a redelivery is still one row
    await loader.load([message("m-1", "2024-03-10T10:00:00", receives=2)])
    assert await db.fetchval("SELECT count(*) FROM user_logins") == 2


async def test_a_partition_that_cannot_be_attached_now_makes_the_batch_wait_not_a_reject(
    partitioned: asyncpg.Connection, pool: asyncpg.Pool, database: str
) -> None:
    # Given a long-running session holding a lock that lets rows in but no partition be
    # attached (ATTACH PARTITION waits for it, up to its 2 s lock timeout)
    holder = await asyncpg.connect(database)
    try:
        locked = holder.transaction()
        await locked.start()
        await holder.execute("LOCK TABLE user_logins IN SHARE UPDATE EXCLUSIVE MODE")
        loader = Loader(pool)
        batch = [message("m-1", "2023-11-02T10:00:00"), message("m-2", "2024-03-02T10:00:00")]
        # When a batch needs a partition the owner's sink cannot attach
        with pytest.raises(PartitionMissing, match="adding user_logins_p2024_03 failed"):
            await loader.load(batch)
        # Then it waits, reported, and nothing is rejected or loaded
        (heard,) = loader.heard.missing
        assert not heard.created
        assert "SQLSTATE 55P03" in heard.problem
        assert await partitioned.fetchval("SELECT count(*) FROM ingestor_rejects") == 0
        assert await partitioned.fetchval("SELECT count(*) FROM user_logins") == 0
        # And once the lock is gone, the partition is added and the batch loads
        await locked.rollback()
        result, refused = await loader.load(batch)
        assert (result.inserted, refused) == (2, [])
    finally:
        await holder.close()


async def test_copies_starting_at_once_create_the_partitioned_table_once(
    empty_database: str,
) -> None:
    connections = [await asyncpg.connect(empty_database) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(migrate(c, "month") for c in connections))
        assert sorted(len(names) for names in applied)[:3] == [0, 0, 0]
        assert len(await partitions_of(connections[0])) == 5
        assert await schema_problems(connections[0]) == []
    finally:
        for connection in connections:
            await connection.close()


async def test_a_check_constraint_on_a_partitioned_table_still_isolates_its_row(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    # Given a DBA's constraint that one row breaks, in a batch that also needs a partition
    await partition_by_month(db)
    await db.execute("ALTER TABLE user_logins ADD CONSTRAINT no_evil CHECK (user_id <> 'evil')")
    loader = Loader(pool)
    batch = [
        message("m-1", "2023-11-02T10:00:00"),
        message("m-2", "2023-11-02T10:00:00", event("evil")),
        message("m-3", "2024-05-02T10:00:00"),
    ]
    result, refused = await loader.load(batch)
    # Then the refused row is a db_23514 reject naming the constraint, the others load
    assert result.inserted == 2
    assert [(r.message_id, r.reason_code) for r in refused] == [("m-2", "db_23514")]
    assert "no_evil" in refused[0].reason


async def test_a_row_a_partition_s_own_bounds_refuse_is_a_refused_row_not_a_missing_one(
    partitioned: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    # Given a DBA's trigger on November's partition that moves one user's rows to another
    # month: PostgreSQL then refuses the row with 23514 and no constraint, as it does a
    # row no partition holds, but names the partition instead of the table
    await partitioned.execute("""
        CREATE FUNCTION shift() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.user_id = 'shifty' THEN NEW.create_date := '2023-12-24'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER shift BEFORE INSERT ON user_logins_2023_11
            FOR EACH ROW EXECUTE FUNCTION shift();
    """)
    loader = Loader(pool)
    batch = [
        message("m-1", "2023-11-02T10:00:00"),
        message("m-2", "2023-11-02T10:00:00", event("shifty")),
    ]
    result, refused = await loader.load(batch)
    # Then that row is isolated as a refusal, the other loads, and no partition is added
    assert result.inserted == 1
    assert [(r.message_id, r.reason_code) for r in refused] == [("m-2", "db_23514")]
    assert "partition constraint" in refused[0].reason
    assert loader.heard.missing == []


async def test_a_message_rejected_on_redelivery_leaves_its_partition(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    # Given a message loaded in December, redelivered with a body rules now reject
    await partition_by_month(db)
    loader = Loader(pool)
    await loader.load([message("m-1", "2023-12-02T10:00:00")])
    bad = orjson.dumps({"user_id": "u-1", "ip": "not an address"}).decode()
    await loader.load([message("m-1", "2023-12-02T10:00:00", bad, receives=2)])
    # Then the row left its partition (found by message_id alone) and the reject is there
    assert await where(db) == []
    assert await db.fetchval("SELECT reason_code FROM ingestor_rejects") == "invalid_ip"


# --- custody on a partitioned table ------------------------------------------------------------


async def test_forget_a_user_erases_their_rows_in_every_partition_and_for_good(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await partition_by_month(db)
    loader = Loader(pool)
    mine = [message("m-1", "2023-10-05T10:00:00"), message("m-2", "2023-12-05T10:00:00")]
    other = message("m-3", "2023-11-05T10:00:00", event("u-2", "198.51.100.9", "999-99-9999"))
    await loader.load([*mine, other])
    # When the user is forgotten
    erased = await forget(db, KEY, REQUEST, user_id="u-1")
    # Then their rows in both partitions hold tombstones, the other user's do not
    rows = await db.fetch("SELECT user_id, masked_ip, masked_device_id FROM user_logins ORDER BY 1")
    assert erased.rows == 2
    assert all(is_tombstone(r["masked_ip"]) and is_tombstone(r["masked_device_id"])
               for r in rows if r["user_id"] == "u-1")  # fmt: skip
    assert not any(is_tombstone(r["masked_ip"]) for r in rows if r["user_id"] == "u-2")
    # And a redelivery of one of their messages does not bring the values back
    await loader.load([message("m-2", "2023-12-05T10:00:00", receives=2)])
    again = await db.fetchrow("SELECT masked_ip FROM user_logins WHERE message_id = 'm-2'")
    assert is_tombstone(again["masked_ip"])


async def test_forget_a_token_and_reveal_on_a_partitioned_table(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    private, public = generate_key_pair()
    loader = Loader(pool, VaultingMasker(KEY, Sealer(public), 100))
    await partition_by_month(db)
    await loader.load(
        [message("m-1", "2023-10-05T10:00:00"), message("m-2", "2023-11-05T10:00:00")]
    )
    token = await db.fetchval("SELECT masked_ip FROM user_logins WHERE message_id = 'm-1'")
    (shown,) = await reveal(db, Opener(private), Checker(KEY), [token], REQUEST)
    assert shown.value == "203.0.113.7"
    erased = await forget(db, KEY, REQUEST, tokens=[token])
    assert erased.rows == 2
    tokens = await db.fetch("SELECT masked_ip FROM user_logins")
    assert all(is_tombstone(r["masked_ip"]) for r in tokens)


async def test_rekey_rewrites_every_block_of_every_partition(
    db: asyncpg.Connection, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a partitioned table (which has no blocks of its own) whose partitions span
    # several blocks, walked one block per transaction
    from ingestor.custody import rekey as rekeying

    monkeypatch.setattr(rekeying, "BLOCKS_PER_RANGE", 1)
    private, public = generate_key_pair()
    await partition_by_month(db)
    messages = [
        message(f"m-{i:03}", f"2023-{10 + i % 3}-0{1 + i % 9}T10:00:00",
                event(f"u-{i}", f"198.51.100.{i % 250}", f"{i:03}-00-0000"))
        for i in range(600)
    ]  # fmt: skip
    pool = await create_pool(database, 1)  # closed before the rotation: the service stopped
    try:
        await Loader(pool, VaultingMasker(KEY, Sealer(public), 1_000)).load(messages)
    finally:
        await close_pool(pool)
    blocks = await db.fetchval(
        "SELECT max(pg_relation_size(relid)) / 8192 FROM pg_partition_tree('user_logins')"
    )
    assert blocks > 2
    before = {r["message_id"]: r["masked_ip"] for r in await db.fetch("SELECT * FROM user_logins")}
    # When the key is rotated
    new_key = b"the-new-hmac-key-after-rotation-0123456789"
    done = await rekeying.rekey(db, Opener(private), Checker(KEY), new_key, REQUEST)
    # Then every row of every partition holds its token under the new key
    after = {r["message_id"]: r["masked_ip"] for r in await db.fetch("SELECT * FROM user_logins")}
    assert done.rows == 600
    assert all(after[m] != before[m] for m in before)
    new_masker = VaultingMasker(new_key, Sealer(public), 10)
    assert after["m-007"] == new_masker.masking("ip")("198.51.100.7")


async def test_replay_loads_a_row_an_older_version_rejected_for_want_of_a_partition(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    # Given a row that an earlier version stored as a db_23514 reject when its date had
    # no partition (the row itself, masked, as isolation stores a refused row)
    await partition_by_month(db)
    private, public = generate_key_pair()
    masker = VaultingMasker(KEY, Sealer(public), 100)
    loader = Loader(pool, masker)
    await loader.load([message("m-0", "2023-11-05T10:00:00")])  # the masking key's record
    row = {"message_id": "m-9", "user_id": "u-9", "device_type": None, "masked_ip": None,
           "masked_device_id": None, "locale": None, "app_version": None,
           "create_date": "2024-06-03"}  # fmt: skip
    body = orjson.dumps(row).decode()
    await db.execute(
        "INSERT INTO ingestor_rejects (message_id, reason_code, reason, body, body_kind,"
        " body_bytes, body_digest, sent_at, receive_count)"
        " VALUES ('m-9', 'db_23514', 'no partition', $1, 'row', $2, $3, now(), 1)",
        body, len(body), loader.transformer.digest(body.encode()),
    )  # fmt: skip
    # When rejects are replayed
    tools = Replay(Opener(private), loader.transformer, loader.sink)
    total = await replay(db, tools, REQUEST, "db_23514")
    # Then June's partition was added and the row loaded; the reject is gone
    assert (total.inserted, total.rejected) == (1, 0)
    assert ("m-9", "user_logins_p2024_06", dt.date(2024, 6, 3)) in await where(db)
    assert await db.fetchval("SELECT count(*) FROM ingestor_rejects") == 0


# --- migrate --partition-by month, and the service ----------------------------------------


async def partitions_of(connection: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await connection.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'user_logins'::regclass ORDER BY 1"
    )
    return [(r["relname"], r["bound"]) for r in rows]


def first_of_month(months_from_now: int) -> dt.date:
    today = dt.datetime.now(dt.UTC).date().replace(day=1)
    year, month = divmod(today.month - 1 + months_from_now, 12)
    return today.replace(year=today.year + year, month=month + 1)


async def test_partition_by_month_creates_a_missing_table_by_month(
    empty_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ingestor")
    connection = await asyncpg.connect(empty_database)
    try:
        # When migrate runs on a database without user_logins, asked to partition it
        applied = await migrate(connection, "month")
        # Then it is range-partitioned by create_date, from last month to 3 months ahead,
        # with its unique index on (message_id, create_date), and the check is clean
        assert applied[0] == "0001_user_logins_and_rejects"
        assert (
            await connection.fetchval("SELECT pg_get_partkeydef('user_logins'::regclass)")
            == "RANGE (create_date)"
        )
        months = [first_of_month(n) for n in range(-1, 5)]
        assert await partitions_of(connection) == [
            (f"user_logins_p{lower:%Y_%m}", f"FOR VALUES FROM ('{lower}') TO ('{upper}')")
            for lower, upper in itertools.pairwise(months)
        ]
        assert await connection.fetchval(
            "SELECT pg_get_indexdef('user_logins_message_id_key'::regclass)"
        ) == "CREATE UNIQUE INDEX user_logins_message_id_key ON ONLY public.user_logins " \
             "USING btree (message_id, create_date)"  # fmt: skip
        assert await schema_problems(connection) == []
        assert "created user_logins partitioned by month" in caplog.text
        # And run again, it changes nothing and says why
        assert await migrate(connection, "month") == []
        assert "INGESTOR_PARTITION_BY=month changes nothing" in caplog.text
    finally:
        await connection.close()


async def test_partition_by_month_leaves_an_existing_table_as_it_is_and_says_so(
    db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    assert await migrate(db, "month") == []
    assert (
        await db.fetchval("SELECT relkind::text FROM pg_class WHERE relname = 'user_logins'") == "r"
    )
    (record,) = [r for r in caplog.records if "changes nothing" in r.getMessage()]
    assert record.levelname == "WARNING"
    assert record.getMessage() == (
        "user_logins exists already (not partitioned): INGESTOR_PARTITION_BY=month changes "
        "nothing (it only creates a missing table)"
    )


async def test_the_migrate_command_takes_partition_by(empty_database: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGESTOR_")}
    env["INGESTOR_DATABASE_URL"] = empty_database
    ran = await ingestor(env, "migrate", "--partition-by", "month")
    assert ran.code == 0, ran.err
    assert ran.out.startswith("applied: 0001_user_logins_and_rejects")
    assert "created user_logins partitioned by month" in ran.err
    env["INGESTOR_PARTITION_BY"] = "month"
    again = await ingestor(env, "migrate")
    assert (again.code, again.out) == (0, "schema is up to date\n")
    assert "changes nothing" in again.err


async def test_a_service_started_with_partition_by_month_creates_and_loads_the_table(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, empty_database: str
) -> None:
    bodies = [e.body for e in generate(40, seed=141, junk_rate=0, repeat_rate=0)]
    await sqs_queue.send(bodies)
    settings = make_settings(database_url=SecretStr(empty_database), partition_by="month")
    await asyncio.wait_for(run_service(settings, asyncio.Event(), Hooks()), 60)
    connection = await asyncpg.connect(empty_database)
    try:
        parts = await connection.fetch(
            "SELECT tableoid::regclass::text AS part, count(*) FROM user_logins GROUP BY 1"
        )
    finally:
        await connection.close()
    assert [tuple(r) for r in parts] == [(f"user_logins_p{first_of_month(0):%Y_%m}", 40)]


async def test_the_service_waits_for_a_missing_partition_then_loads_everything(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    partitioned: asyncpg.Connection,
    loader_url: str,
) -> None:
    # Given a partitioned table with no partition for today, a service whose role may not
    # add one, and messages (sent today) on the queue
    bodies = [e.body for e in generate(60, seed=142, junk_rate=0, repeat_rate=0)]
    sent = await sqs_queue.send(bodies)
    heard = Heard()
    settings = make_settings(database_url=SecretStr(loader_url))
    service = asyncio.create_task(run_service(settings, asyncio.Event(), heard))
    try:
        # When the service writes its first batch, it reports the date and waits: nothing
        # becomes a reject, nothing is loaded, nothing leaves the queue
        await wait_until(lambda: heard.missing, 60, "the missing partition reported")
        assert heard.missing[0].day == dt.datetime.now(dt.UTC).date()
        assert await partitioned.fetchval("SELECT count(*) FROM ingestor_rejects") == 0
        assert await partitioned.fetchval("SELECT count(*) FROM user_logins") == 0
        # Then once a DBA adds the partition it suggests, the drain loads every message
        await partitioned.execute(heard.missing[0].statement())
        await asyncio.wait_for(service, 60)
    finally:
        service.cancel()
    assert await partitioned.fetchval("SELECT count(*) FROM user_logins") == len(sent)
    assert await partitioned.fetchval("SELECT count(*) FROM ingestor_rejects") == 0
    assert await queue_is_empty(sqs_queue)


# --- pg_partman ------------------------------------------------------------------------------


async def test_a_table_pg_partman_manages_loads_and_its_partitions_are_left_to_pg_partman(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    # Given pg_partman managing user_logins by month (`make partman` installs it for the
    # machine's PostgreSQL; the embedded one has no extensions)
    available = "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_partman'"
    if not await db.fetchval(available):
        assert not os.environ.get("INGESTOR_TEST_REQUIRE_PARTMAN"), "pg_partman is missing"
        pytest.skip("pg_partman is not installed on this server (make partman)")
    await db.execute("DROP TABLE user_logins; CREATE SCHEMA partman")
    await db.execute("CREATE EXTENSION pg_partman SCHEMA partman")
    await db.execute(
        f"CREATE TABLE user_logins ({ANALYSTS_COLUMNS}) PARTITION BY RANGE (create_date)"
    )
    await db.execute(
        "SELECT partman.create_parent('public.user_logins', 'create_date', 'native', 'monthly',"
        " p_start_partition := '2023-10-01')"
    )
    # When migrate runs: message_id and the unique index reach pg_partman's partitions
    await migrate(db)
    assert await schema_problems(db) == []
    loader = Loader(pool)
    burst = [
        message("m-1", "2023-10-31T23:59:59"),
        message("m-2", "2023-11-30T23:59:59.999"),
        message("m-3", "2023-12-01T00:00:00"),
        message("m-4", "2039-05-02T10:00:00"),
    ]
    await loader.load(burst)
    await loader.load([message("m-2", "2023-11-30T23:59:59.999", receives=2)])
    # Then each message is one row in pg_partman's partition of its month, a date past its
    # partitions in its DEFAULT partition, and ingestor added none of its own
    parts = ["user_logins_p2023_10", "user_logins_p2023_11", "user_logins_p2023_12"]
    assert [part for _, part, _ in await where(db)] == [*parts, "user_logins_default"]
    assert loader.heard.missing == []
    # And without the DEFAULT partition, a date with none waits for pg_partman to add it
    # (ingestor never adds one to a table pg_partman manages, even as its owner)
    await db.execute("DELETE FROM user_logins WHERE message_id = 'm-4'")
    await db.execute("DROP TABLE user_logins_default")
    later = [message("m-5", "2039-06-02T10:00:00")]
    with pytest.raises(PartitionMissing, match="pg_partman manages user_logins"):
        await loader.load(later)
    await db.execute(
        "SELECT partman.create_partition_time('public.user_logins',"
        " ARRAY['2039-06-01'::timestamptz])"
    )
    result, refused = await loader.load(later)
    assert (result.inserted, refused) == (1, [])
    assert ("m-5", "user_logins_p2039_06", dt.date(2039, 6, 2)) in await where(db)
    # and pg_partman's maintenance keeps giving new partitions the unique index
    await db.execute("SELECT partman.run_maintenance('public.user_logins')")
    unindexed = await db.fetchval(
        "SELECT count(*) FROM pg_partition_tree('user_logins') t WHERE t.isleaf AND NOT EXISTS"
        " (SELECT 1 FROM pg_index i WHERE i.indrelid = t.relid AND i.indisunique)"
    )
    assert unindexed == 0
