"""Creating and checking the tables: `ingestor migrate`, also run at start-up.

Migrations run in one transaction under an advisory lock, so several copies starting at
once apply each migration exactly once. They only create what is missing and add
columns and indexes; they never drop or retype an existing column. A user_logins
range-partitioned by create_date gets its idempotency index on (message_id, create_date)
(`partitions.py`), and `check` names the partitions it lacks that the service cannot add.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace
from typing import Any

from ingestor.errors import DatabaseError
from ingestor.models import PartitionBy
from ingestor.settings import env_name
from ingestor.sink.generated import statements
from ingestor.sink.partitions import (
    Layout,
    Partition,
    Span,
    add_months,
    add_partition,
    month_start,
    read_layout,
    span_for,
    waiting,
)
from ingestor.sink.postgres import mapped_errors
from ingestor.sink.queries import MIGRATION_LOCK, migrations, query
from ingestor.table import USER_LOGINS

log = logging.getLogger("ingestor")

MONTHS_AHEAD = 3  # months after this one a table `migrate --partition-by month` makes has


# What `check` expects of the tables: column -> type, as format_type() prints it (the
# loaded table's from its registry).
EXPECTED_COLUMNS: dict[str, dict[str, str]] = {
    USER_LOGINS.name: USER_LOGINS.types(),
    "ingestor_rejects": {
        "message_id": "character varying(128)",
        "reason": "text",
        "pii_tokens": "character varying(256)[]",
        "sealed_body": "bytea",
        "user_digest": "character varying(64)",
    },
    "pii_vault": {"token": "character varying(256)", "sealed": "bytea"},
    "pii_reveal_audit": {
        "actor": "text",
        "claimed_actor": "text",
        "tokens": "character varying(256)[]",
        "hash": "character varying(64)",
    },
    "pii_audit_tokens": {"audit_id": "bigint", "token": "character varying(256)"},
    "ingestor_masking_key": {"mask_key_id": "character varying(32)"},
}


# Dropped after its migration ran: migrate does not run a migration twice.
MISSING_FUNCTION = (
    "function ingestor_app_version_text(integer) is missing (analysts' queries use it): "
    "run the SQL of migration 0009_app_version_text again (it creates only that function)"
)


async def migrate(connection: Any, partition_by: PartitionBy = "none") -> list[str]:
    """Apply the migrations not yet applied; return their names. When none is pending it
    runs no DDL and takes no lock, so a user with only DML grants can start the service
    once a privileged user has run `ingestor migrate`.

    A user_logins range-partitioned by create_date gets message_id and its unique index
    on (message_id, create_date) first (migration 0001's would not hold the partition
    key), also when the table was partitioned after 0001 ran. With `partition_by` "month"
    and no user_logins yet, it is created partitioned by month, with partitions from last
    month to `MONTHS_AHEAD` ahead; an existing table is left as it is, and a log line
    says so."""
    async with mapped_errors():
        pending = await _pending_migrations(connection)
        layout = await read_layout(connection, USER_LOGINS.name, USER_LOGINS.date)
        _refuse_unsupported(layout)
        if not pending and not await _partition_work(connection, layout, partition_by):
            _say_unchanged(layout, partition_by)
            return []
    applied: list[str] = []
    async with mapped_errors(), connection.transaction():
        await connection.execute(query("lock_migrations"), MIGRATION_LOCK)
        created = await _partitioned_table(connection, partition_by)
        await connection.execute(query("migrations_table"))
        done = {r["name"] for r in await connection.fetch(query("applied_migrations"))}
        for name, sql in migrations():
            if name not in done:
                await connection.execute(sql)  # a migration file's text
                await connection.execute(query("record_migration"), name)
                applied.append(name)
    for name in applied:
        log.info("applied migration %s", name, extra={"event": "migration", "migration": name})
    if created is not None:
        _say_created(created)
    else:
        _say_unchanged(layout, partition_by)
    return applied


async def _partition_work(connection: Any, layout: Layout, partition_by: PartitionBy) -> bool:
    """Whether a partitioned table is to be created, or one lacks its unique index."""
    if layout.kind == "missing":
        return partition_by != "none"
    return layout.partitioned and not await _idempotency_index(connection, layout)


async def _partitioned_table(connection: Any, partition_by: PartitionBy) -> Layout | None:
    """Under the migrations' lock: create the partitioned table if asked and missing; give
    a partitioned table its key. The new table's layout, or None when none was made."""
    layout = await read_layout(connection, USER_LOGINS.name, USER_LOGINS.date)
    created = None
    if layout.kind == "missing" and partition_by == "month":
        await connection.execute(statements().create_partitioned)
        created = await _first_months(connection)
    if created is not None or (
        layout.partitioned and not await _idempotency_index(connection, layout)
    ):
        await connection.execute(query("partitioned_key"))  # a DBA's own one is kept
    return created


async def _first_months(connection: Any) -> Layout:
    layout = await read_layout(connection, USER_LOGINS.name, USER_LOGINS.date)
    first = add_months(month_start(dt.datetime.now(dt.UTC).date()), -1)
    added = []
    for n in range(MONTHS_AHEAD + 2):
        span = Span(add_months(first, n), add_months(first, n + 1), monthly=True)
        name = await add_partition(connection, layout, span)
        added.append(Partition(name, span.lower, span.upper))
    return replace(layout, partitions=tuple(added))


def _say_created(layout: Layout) -> None:
    first, last = layout.partitions[0], layout.partitions[-1]
    log.info(
        "created %s partitioned by month, with partitions from %s to %s; a later month's is "
        "added when a row needs it (when the service's role may: see the README)",
        layout.table,
        first.lower,
        last.upper,
        extra={"event": "partitioned_table"},
    )


def _say_unchanged(layout: Layout, partition_by: PartitionBy) -> None:
    if partition_by == "none" or layout.kind == "missing":
        return
    log.log(
        logging.INFO if layout.partitioned else logging.WARNING,
        "%s exists already (%s): %s=%s changes nothing (it only creates a missing table)",
        layout.table,
        layout.describe(),
        env_name("partition_by"),
        partition_by,
        extra={"event": "partition_by_unchanged"},
    )


def _refuse_unsupported(layout: Layout) -> None:
    if layout.kind == "other":
        raise DatabaseError(layout.unsupported())


async def _idempotency_index(connection: Any, layout: Layout) -> bool:
    key = USER_LOGINS.partitioned_key if layout.partitioned else (USER_LOGINS.key,)
    return bool(await connection.fetchval(query("idempotency_index"), list(key)))


async def schema_problems(connection: Any) -> list[str]:
    """What is missing or different from what the ingestor needs; empty when all is well."""
    problems: list[str] = []
    async with mapped_errors():
        if not await connection.fetchval(query("migrations_table_exists")):
            return ["the database has no ingestor tables yet: run `ingestor migrate`"]
        pending = await _pending_migrations(connection)
        if pending:
            problems.append(f"migrations not applied: {', '.join(pending)} (run: ingestor migrate)")
        for table, expected in EXPECTED_COLUMNS.items():
            rows = await connection.fetch(query("schema_columns"), table)
            problems.extend(_column_problems(table, {r["name"]: r["type"] for r in rows}, expected))
        layout = await read_layout(connection, USER_LOGINS.name, USER_LOGINS.date)
        problems.extend(await _layout_problems(connection, layout, pending))
        if not pending and not await connection.fetchval(query("app_version_function")):
            problems.append(MISSING_FUNCTION)
    return problems


async def _layout_problems(connection: Any, layout: Layout, pending: list[str]) -> list[str]:
    """The unique index the merge needs; on a partitioned table, today's partition and the
    next one's, unless the service may add them."""
    if layout.kind == "other":
        return [layout.unsupported()]
    if layout.kind == "missing":
        return []  # said by the columns' check
    problems = []
    if not pending and not await _idempotency_index(connection, layout):
        key = "(create_date, message_id)" if layout.partitioned else "message_id"
        problems.append(f"user_logins has no unique index on {key} (run: ingestor migrate)")
    if layout.partitioned:
        problems.extend(missing_partitions(layout, dt.datetime.now(dt.UTC).date()))
    return problems


def missing_partitions(layout: Layout, today: dt.date) -> list[str]:
    """Today and the first day after today's partition (or today's interval), when no
    partition holds them and the service's role may not add one."""
    if (problem := layout.creator_problem()) is None:
        return []
    span = span_for(layout, today)
    later = next((p.upper for p in layout.partitions if p.holds(today)), None)
    days = [today, later or (span.upper if span else None)]
    lines = []
    for day in dict.fromkeys(d for d in days if d is not None and not layout.holds(d)):
        fix = waiting(layout, day, problem).statement()
        lines.append(
            f"no partition of {layout.table} holds {day} ({'today' if day == today else 'next'})"
            f" and the service adds none ({problem}): rows of that date would wait"
            + (f"; add it: {fix}" if fix else "")
        )
    return lines


async def _pending_migrations(connection: Any) -> list[str]:
    if not await connection.fetchval(query("migrations_table_exists")):
        return [name for name, _ in migrations()]
    done = {r["name"] for r in await connection.fetch(query("applied_migrations"))}
    return [name for name, _ in migrations() if name not in done]


def _column_problems(table: str, actual: dict[str, str], expected: dict[str, str]) -> list[str]:
    if not actual:
        return [f"table {table} is missing"]
    return [
        f"{table}.{column} is {actual.get(column, 'missing')}, expected {kind}"
        for column, kind in expected.items()
        if actual.get(column) != kind
    ]
