"""Stages in isolation: the transform stage against a bare parse-and-hash loop (raw
bodies, and the same events in SNS notifications, taken out by INGESTOR_ENVELOPE=auto),
and the writer (COPY into staging + merge into the indexed user_logins) against a bare COPY into
an unindexed, unlogged table; and the writer once users have been erased (it then checks
the rows of users in an erased user's bucket against the erasure ledger)."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import random
import time
import uuid
from collections.abc import Awaitable

import asyncpg
import orjson

from benchmarks.measure import Figure, repeat, repeat_async
from ingestor.custody.keys import generate_key_pair
from ingestor.custody.ledger import ErasureLedger
from ingestor.custody.vault import Sealer, VaultingMasker
from ingestor.demo.synthetic import generate, sns_wrapped
from ingestor.models import LOGIN_COLUMNS, Envelope, LoginRow, Wrapping
from ingestor.sink.postgres import PostgresSink, close_pool, create_pool
from ingestor.sink.queries import query
from ingestor.sink.schema import migrate
from ingestor.transform.masking import HmacMasker
from ingestor.transform.transformer import Transformer

KEY = b"benchmark-key-0123456789abcdef0123456789"
SENT_MS = 1_700_000_000_000
VAULT_PUBLIC_KEY = generate_key_pair()[1]


def envelopes(count: int) -> list[Envelope]:
    events = generate(count, seed=99)
    return [Envelope(f"m{i}", f"h{i}", e.body, SENT_MS) for i, e in enumerate(events)]


def sns_envelopes(count: int) -> list[Envelope]:
    """The messages of `envelopes`, each an SNS notification around its event."""
    rng, published = random.Random(98), dt.datetime(2023, 11, 14, tzinfo=dt.UTC)
    events = [sns_wrapped(e, rng, published) for e in generate(count, seed=99)]
    return [Envelope(f"m{i}", f"h{i}", e.body, SENT_MS) for i, e in enumerate(events)]


def transform_rate(batch: list[Envelope], wrapping: Wrapping = "auto") -> float:
    return transform_run(batch, wrapping)[0]


def transform_run(batch: list[Envelope], wrapping: Wrapping = "auto") -> tuple[float, float]:
    """(records/s, CPU seconds per 10,000 records) of one pass on one core."""
    process = Transformer(HmacMasker(KEY), wrapping).process
    started, cpu = time.perf_counter(), time.process_time()
    for envelope in batch:
        process(envelope)
    cpu = time.process_time() - cpu
    return len(batch) / (time.perf_counter() - started), cpu / len(batch) * 10_000


def vault_transform_rate(batch: list[Envelope], batch_size: int = 2_000) -> float:
    """The transform with the vault on, from a cold start: each new value is sealed (about
    50 µs), and the masker learns after each batch of `batch_size` (as after a commit)
    which values are vaulted, as in the service."""
    masker = VaultingMasker(KEY, Sealer(VAULT_PUBLIC_KEY), 200_000)
    process = Transformer(masker).process
    started = time.perf_counter()
    for start in range(0, len(batch), batch_size):
        done = [process(envelope) for envelope in batch[start : start + batch_size]]
        masker.remember([entry.token for item in done for entry in item.vault])
    return len(batch) / (time.perf_counter() - started)


def bare_parse_and_hash_rate(batch: list[Envelope]) -> float:
    """The floor of the job: parse the JSON and HMAC the two fields, nothing else."""
    loads, digest = orjson.loads, hmac.digest
    started = time.perf_counter()
    for envelope in batch:
        try:
            event = loads(envelope.body)
            digest(KEY, str(event.get("ip")).encode(), hashlib.sha256)
            digest(KEY, str(event.get("device_id")).encode(), hashlib.sha256)
        except Exception:
            continue
    return len(batch) / (time.perf_counter() - started)


def transform_figures(count: int, times: int) -> list[Figure]:
    """records/s of the stage (raw bodies, default settings), with envelopes, with the
    vault, and of the bare loop; then the stage's CPU seconds per 10,000 records (the same
    runs as its first figure)."""
    batch, wrapped = envelopes(count), sns_envelopes(count)
    runs = [transform_run(batch) for _ in range(times)]
    return [
        Figure("transform stage", "records/s", [rate for rate, _ in runs]),
        repeat(
            "transform stage, every body an SNS notification (INGESTOR_ENVELOPE=auto)",
            "records/s",
            times,
            lambda: transform_rate(wrapped),
        ),
        repeat(
            "transform stage, INGESTOR_ENVELOPE=none",
            "records/s",
            times,
            lambda: transform_rate(batch, "none"),
        ),
        repeat(
            "transform stage, vault on",
            "records/s",
            times,
            lambda: vault_transform_rate(batch),
        ),
        repeat(
            "bare orjson.loads + hmac.digest",
            "records/s",
            times,
            lambda: bare_parse_and_hash_rate(batch),
        ),
        Figure("transform stage, CPU per 10,000", "CPU ms", [cpu * 1000 for _, cpu in runs]),
    ]


def login_rows(count: int) -> list[LoginRow]:
    process = Transformer(HmacMasker(KEY)).process
    rows = []
    for envelope in envelopes(count):
        outcome = process(envelope).outcome
        if isinstance(outcome, LoginRow):
            rows.append(outcome._replace(message_id=str(uuid.uuid4())))
    return rows


async def writer_figures(
    dsn: str, batch_sizes: list[int], rows_per_run: int, times: int
) -> list[Figure]:
    connection = await asyncpg.connect(dsn)
    await migrate(connection)
    await connection.execute("CREATE UNLOGGED TABLE IF NOT EXISTS bench_bare (LIKE user_logins)")
    pool = await create_pool(dsn, 2)
    sink = PostgresSink(pool, ErasureLedger(HmacMasker(KEY)))
    figures = []
    try:
        for size in batch_sizes:
            runs = [await merged_run(sink, login_rows(rows_per_run), size) for _ in range(times)]
            merged = Figure(f"writer, batches of {size:,}", "rows/s", [r for r, _ in runs])
            cpu = [c * 1000 for _, c in runs]
            bare = await repeat_async(
                f"bare COPY, batches of {size:,}",
                "rows/s",
                times,
                lambda size=size: bare_rate(connection, login_rows(rows_per_run), size),
            )
            figures += [merged, bare, Figure(f"{merged.name}, CPU per 10,000", "CPU ms", cpu)]
    finally:
        await close_pool(pool)
        await connection.close()
    return figures


async def erased_writer_figure(dsn: str, erased_users: int, rows: int, times: int) -> Figure:
    """The writer, batches of 2,000, with `erased_users` users in the erasure ledger: the
    rows whose user shares a bucket with one of them (about erased_users / 65,536 of a
    batch) are checked by keyed digest. The ledger is emptied afterwards."""
    masker = HmacMasker(KEY)
    users = [f"erased-user-{i}" for i in range(erased_users)]
    digests = [masker.digest_erased(masker.digest_user(user), "t" * 64) for user in users]
    stones = [f"erased:{i:032x}" for i in range(erased_users)]
    connection = await asyncpg.connect(dsn)
    await connection.execute(query("erasure_record"), digests, stones, users, masker.key_id)
    pool = await create_pool(dsn, 2)
    sink = PostgresSink(pool, ErasureLedger(masker))
    try:
        return await repeat_async(
            f"writer, batches of 2,000, {erased_users:,} users erased",
            "rows/s",
            times,
            lambda: first(merged_run(sink, login_rows(rows), 2_000)),
        )
    finally:
        await close_pool(pool)
        await connection.execute("TRUNCATE ingestor_erasures, ingestor_erased_buckets")
        await connection.close()


async def merged_run(sink: PostgresSink, rows: list[LoginRow], size: int) -> tuple[float, float]:
    """(rows/s, CPU seconds of this process per 10,000 rows): the writer's own cost on the
    client side (encoding, the sink's code, the driver), not the server's."""
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(rows), size):
        await sink.write(rows[i : i + size], [])
    cpu = time.process_time() - cpu
    return len(rows) / (time.perf_counter() - started), cpu / len(rows) * 10_000


async def first(pair: Awaitable[tuple[float, float]]) -> float:
    return (await pair)[0]


async def bare_rate(connection: asyncpg.Connection, rows: list[LoginRow], size: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(rows), size):
        await connection.copy_records_to_table(
            "bench_bare", records=rows[i : i + size], columns=LOGIN_COLUMNS
        )
    return len(rows) / (time.perf_counter() - started)


def main() -> None:
    """`python -m benchmarks.stages [records] [runs]`: the transform's figures alone."""
    parser = argparse.ArgumentParser(description="the transform stage's figures alone")
    parser.add_argument("records", type=int, nargs="?", default=50_000)
    parser.add_argument("runs", type=int, nargs="?", default=3)
    args = parser.parse_args()
    count, times = args.records, args.runs
    for figure in transform_figures(count, times):
        runs = ", ".join(f"{run:,.0f}" for run in figure.runs)
        print(f"{figure.name}: {figure.median:,.0f} {figure.unit} (runs {runs})")


if __name__ == "__main__":
    main()
