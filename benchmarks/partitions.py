"""The writer into a user_logins range-partitioned by month (24 monthly partitions) against
the plain table, in one run on one embedded PostgreSQL: `PostgresSink.write` in batches of
2,000 whose rows are spread over the 24 months' dates, measured as `stages.writer_figures`
measures the writer (`stages.merged_run`, fresh rows each run); then the same rows again,
every one a redelivery that replaces its row; then batches with one reject in a hundred
(each reject's message looked up in user_logins by message_id alone, to unload a row an
earlier delivery left there). The partitioned table twice: with the unique index migrate
makes, on (message_id, create_date), and with one on (create_date, message_id).

`python -m benchmarks.partitions [rows] [runs]` prints the figures; `partition_figures`
gives them to `bench.py`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import time
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from benchmarks.measure import Figure
from benchmarks.stages import KEY, login_rows, merged_run
from ingestor.custody.ledger import ErasureLedger
from ingestor.demo.embedded import embedded_postgres
from ingestor.models import LoginRow, Rejection
from ingestor.sink.postgres import PostgresSink, close_pool, create_pool
from ingestor.sink.schema import migrate
from ingestor.transform.masking import HmacMasker

MONTHS = 24
FIRST = dt.date(2022, 1, 1)
BATCH = 2_000
ANALYSTS_TABLE = """
CREATE TABLE user_logins(
    user_id varchar(128), device_type varchar(32), masked_ip varchar(256),
    masked_device_id varchar(256), locale varchar(32), app_version integer, create_date date
) PARTITION BY RANGE (create_date)
"""


def month(n: int) -> dt.date:
    year, index = divmod(FIRST.month - 1 + n, 12)
    return dt.date(FIRST.year + year, index + 1, 1)


def spread(rows: list[LoginRow], seed: int) -> list[LoginRow]:
    """The rows, each dated a random day of the 24 months."""
    rng, days = random.Random(seed), (month(MONTHS) - FIRST).days
    return [row._replace(create_date=FIRST + dt.timedelta(rng.randrange(days))) for row in rows]


async def merged_rate(sink: PostgresSink, rows: list[LoginRow], size: int) -> float:
    """rows/s of `stages.merged_run` (its CPU figure is not used here)."""
    rate, _ = await merged_run(sink, rows, size)
    return rate


async def partitioned_database(url: str, date_first: bool = False) -> None:
    """user_logins as a DBA partitions it (24 months), then migrated: its unique index on
    (message_id, create_date); with `date_first`, on (create_date, message_id) instead,
    which migrate keeps (a lookup by message_id alone cannot seek in it)."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(ANALYSTS_TABLE)
        for n in range(MONTHS):
            await connection.execute(
                f"CREATE TABLE user_logins_{month(n):%Y_%m} PARTITION OF user_logins "
                f"FOR VALUES FROM ('{month(n)}') TO ('{month(n + 1)}')"
            )
        if date_first:
            await connection.execute(
                "ALTER TABLE user_logins ADD COLUMN message_id varchar(128);"
                "CREATE UNIQUE INDEX user_logins_date_key ON user_logins (create_date, message_id)"
            )
        await migrate(connection)
    finally:
        await connection.close()


async def plain_database(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await migrate(connection)
    finally:
        await connection.close()


async def replaced_rate(sink: PostgresSink, rows: list[LoginRow], size: int) -> float:
    """Rows written once (not timed), then again: every row a redelivery."""
    await merged_rate(sink, rows, size)
    return await merged_rate(sink, rows, size)


def rejects_of(rows: Sequence[LoginRow]) -> list[Rejection]:
    """A reject for one row in a hundred, under the row's message id (as a redelivery the
    rules now refuse): the sink unloads its row from user_logins by message_id."""
    sent = dt.datetime(2023, 11, 14, tzinfo=dt.UTC)
    reason = "ip is not an address"
    return [
        Rejection(row.message_id, "invalid_ip", reason, None, "row", 0, "d" * 64, sent, 2)
        for row in rows[::100]
    ]


async def with_rejects_rate(sink: PostgresSink, rows: list[LoginRow], size: int) -> float:
    """Batches of `size` rows (as loaded before, not timed) with a reject in a hundred."""
    await merged_rate(sink, rows, size)
    started = time.perf_counter()
    for i in range(0, len(rows), size):
        batch = rows[i : i + size]
        rejects = rejects_of(batch)
        refused = {r.message_id for r in rejects}
        await sink.write([row for row in batch if row.message_id not in refused], rejects)
    return len(rows) / (time.perf_counter() - started)


PLAIN = "plain table"
PARTITIONED = f"{MONTHS} monthly partitions"
DATE_FIRST = f"{MONTHS} monthly partitions, unique index on (create_date, message_id)"
KINDS = (
    (f"writer, batches of {BATCH:,}, rows over {MONTHS} months", merged_rate),
    ("writer, every row a redelivery", replaced_rate),
    ("writer, a reject in a hundred (unloaded by message_id)", with_rejects_rate),
)


async def figures_for(sinks: dict[str, PostgresSink], count: int, times: int) -> list[Figure]:
    """Each kind of write into each table, the tables' figures side by side. The tables
    take turns run by run, so that a machine busier for a while slows them alike."""
    seed = iter(range(10_000))
    for sink in sinks.values():  # warm: the first batch prepares the statements
        await merged_rate(sink, spread(login_rows(BATCH), next(seed)), BATCH)
    figures = []
    for kind, rate in KINDS:
        runs: dict[str, list[float]] = {label: [] for label in sinks}
        for _ in range(times):
            for label, sink in sinks.items():
                rows = spread(login_rows(count), next(seed))
                runs[label].append(await rate(sink, rows, BATCH))
        figures += [Figure(f"{kind}: {label}", "rows/s", runs[label]) for label in sinks]
    return figures


async def partition_figures(admin_url: str, count: int, times: int) -> list[Figure]:
    """The figures, plain and partitioned side by side, each in a database of its own on
    the server of `admin_url` (dropped afterwards)."""
    admin = await asyncpg.connect(admin_url)
    names = {
        PLAIN: "bench_plain",
        PARTITIONED: "bench_partitioned",
        DATE_FIRST: "bench_partitioned_date_first",
    }
    pools = []
    try:
        for name in names.values():
            await admin.execute(f"DROP DATABASE IF EXISTS {name}")
            await admin.execute(f"CREATE DATABASE {name}")
        urls = {label: _with_database(admin_url, name) for label, name in names.items()}
        await plain_database(urls[PLAIN])
        await partitioned_database(urls[PARTITIONED])
        await partitioned_database(urls[DATE_FIRST], date_first=True)
        pools = [await create_pool(url, 2) for url in urls.values()]
        sinks = {
            label: PostgresSink(pool, ErasureLedger(HmacMasker(KEY)))
            for label, pool in zip(urls, pools, strict=True)
        }
        return await figures_for(sinks, count, times)
    finally:
        for pool in pools:
            await close_pool(pool)
        for name in names.values():
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def main() -> None:
    parser = argparse.ArgumentParser(description="the writer: partitioned vs plain user_logins")
    parser.add_argument("rows", type=int, nargs="?", default=100_000)
    parser.add_argument("runs", type=int, nargs="?", default=3)
    args = parser.parse_args()
    with embedded_postgres() as url:
        found = asyncio.run(partition_figures(url, args.rows, args.runs))
    for figure in found:
        runs = ", ".join(f"{run:,.0f}" for run in figure.runs)
        print(f"{figure.name}: {figure.median:,.0f} {figure.unit} (runs {runs})")


if __name__ == "__main__":
    main()
