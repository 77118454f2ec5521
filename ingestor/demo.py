"""`python -m ingestor demo`: the whole path on embedded servers, with a readable summary.

It seeds synthetic events (with junk, repeats and odd values), simulates a consumer that
crashed after committing some messages but before deleting them (so SQS redelivers them),
drains the queue with the real service code, and prints what landed where.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from ingestor.audit import Request
from ingestor.cli import faster_depth_sampling, run_async
from ingestor.embedded import embedded_postgres, embedded_sqs
from ingestor.hooks import HookChain, Stats
from ingestor.keys import generate_key_pair, public_key_of
from ingestor.ledger import ErasureLedger
from ingestor.logs import configure
from ingestor.models import Envelope
from ingestor.postgres import PostgresSink, connect
from ingestor.progress import live_progress
from ingestor.queries import query
from ingestor.reveal import reveal
from ingestor.service import build_masker, open_pool, open_queue, run_migrations, run_service
from ingestor.settings import DEMO_HMAC_KEY, Settings
from ingestor.sqs import create_queue, sqs_client
from ingestor.synthetic import SyntheticEvent, generate
from ingestor.transform import Transformer
from ingestor.vault import Checker, Opener
from ingestor.writer import split_outcomes, vault_entries

CRASHED_MESSAGES = 100


@dataclass(frozen=True)
class DemoRun:
    events: Sequence[SyntheticEvent]
    seed_seconds: float
    redelivered: int
    drain_seconds: float
    stats: Stats
    remaining: int
    table: dict[str, Any]
    vault: VaultCheck | None


@dataclass(frozen=True)
class VaultCheck:
    """What the demo shows of the vault: its size, and one audited reveal."""

    values: int
    key_id: str
    token: str
    reveal_ok: bool


def run_demo(settings: Settings) -> int:
    events = generate(settings.demo_events, settings.demo_seed)
    configure("WARNING", "text")  # the summary is the output; only problems are logged
    # The emulator accepts any credentials; real ones from the environment are left alone.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "demo")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "demo")
    print("ingestor demo: starting embedded PostgreSQL and SQS servers ...", flush=True)
    started = time.perf_counter()
    with embedded_postgres() as dsn, embedded_sqs() as endpoint:
        print(f"  servers up in {time.perf_counter() - started:.1f} s", flush=True)
        private_key, public_key = generate_key_pair()  # throwaway: lives only in this process
        demo_settings = settings.model_copy(
            update={
                "vault_public_key": settings.vault_public_key
                or base64.b64encode(public_key).decode(),
                "database_url": SecretStr(dsn),
                "sqs_endpoint_url": endpoint,
                "hmac_key": settings.hmac_key or SecretStr(DEMO_HMAC_KEY),
                "drain": True,
                "drain_wait_seconds": 1,
                "aws_region": "us-east-1",
                # A demo should not take a port unless asked to.
                "metrics_port": (
                    settings.metrics_port if "metrics_port" in settings.model_fields_set else 0
                ),
            }
        )
        report = run_async(_demo(demo_settings, events, private_key))
    print(render(report))
    return 0


async def _demo(
    settings: Settings, events: Sequence[SyntheticEvent], private_key: bytes
) -> DemoRun:
    started = time.perf_counter()
    settings = await _seed(settings, [event.body for event in events])
    seed_seconds = time.perf_counter() - started
    await run_migrations(settings)
    redelivered = await crash_after_commit(settings, CRASHED_MESSAGES)
    stats = Stats()
    live = live_progress(sys.stderr)
    if live is not None:
        settings = faster_depth_sampling(settings)
    started = time.perf_counter()
    await run_service(settings, asyncio.Event(), HookChain(stats, *([live] if live else [])))
    drain_seconds = time.perf_counter() - started
    async with open_queue(settings) as queue:
        remaining = await queue.depth()
    table = await _table_facts(settings)
    vault = await _vault_check(settings, private_key, table["sample"])
    return DemoRun(events, seed_seconds, redelivered, drain_seconds, stats, remaining, table, vault)


async def _seed(settings: Settings, bodies: list[str]) -> Settings:
    async with sqs_client(settings.region, settings.sqs_endpoint_url) as client:
        url = await create_queue(client, "login-queue", {"VisibilityTimeout": "60"})
        settings = settings.model_copy(update={"queue_url": url})
    async with open_queue(settings) as queue:
        await queue.send(bodies)
    return settings


async def crash_after_commit(settings: Settings, count: int) -> int:
    """Receive about `count` messages, commit them, and "crash" before deleting: their
    visibility is set to 0, as if their timeout had run out, so SQS delivers them again."""
    masker = build_masker(settings)
    transformer = Transformer(masker)
    async with open_queue(settings) as queue, open_pool(settings) as pool:
        received: list[Envelope] = []
        while len(received) < count:
            batch = await queue.receive(1, 60)
            if not batch:
                break
            received.extend(batch)
        processed = [transformer.process(e) for e in received]
        rows, rejects = split_outcomes(processed)
        sink = PostgresSink(pool, ErasureLedger(masker))
        await sink.write(rows, rejects, vault_entries(processed))
        await queue.change_visibility([e.receipt_handle for e in received], 0)
    return len(received)


async def _table_facts(settings: Settings) -> dict[str, Any]:
    connection = await connect(settings.dsn)
    try:
        facts: dict[str, Any] = dict(await connection.fetchrow(query("demo_facts")) or {})
        facts["sample"] = await connection.fetch(query("demo_sample"), 5)
    finally:
        await connection.close()
    return facts


async def _vault_check(
    settings: Settings, private_key: bytes, sample: Sequence[Any]
) -> VaultCheck | None:
    """Reveal one sample row's ip with the private key (as a custodian would, audited),
    and check that masking the value gives the token back. The value is not printed."""
    token = next((row["masked_ip"] for row in sample if row["masked_ip"]), None)
    opener = Opener(private_key)
    if token is None or settings.vault_key != public_key_of(private_key):
        return None
    connection = await connect(settings.dsn)
    try:
        request = Request("demo", "make run: showing an audited recovery")
        checker = Checker(settings.key_bytes)
        revealed = (await reveal(connection, opener, checker, [token], request))[0]
        values = int(await connection.fetchval(query("demo_vault_size")))
    finally:
        await connection.close()
    # reveal shows a value only when it masks back to its token
    return VaultCheck(values, opener.key_id, token, revealed.problem is None)


def render(run: DemoRun) -> str:
    stats, table = run.stats, run.table
    junk = sum(1 for e in run.events if not e.valid)
    repeats = sum(1 for e in run.events if e.kind == "repeat")
    rate = stats.received / run.drain_seconds if run.drain_seconds else 0.0
    lines = [
        f"  seeded {len(run.events):,} events in {run.seed_seconds:.1f} s: "
        f"{len(run.events) - junk:,} valid ({repeats:,} of them the same event sent again "
        f"as a new message), {junk:,} junk",
        f"  simulated a consumer that crashed after committing {run.redelivered:,} messages "
        "but before deleting them: SQS delivers those again",
        "",
        "Summary",
        f"  received      {stats.received:>8,} messages in {run.drain_seconds:.1f} s "
        f"({rate:,.0f} msg/s)",
        f"  loaded        {stats.loaded:>8,} rows ({stats.inserted:,} new, "
        f"{stats.replaced:,} duplicates replaced: redelivered messages overwrote their row)",
        f"  rejected      {stats.rejected:>8,} messages, by reason:",
        *(f"      {code:<24} {n:>6,}" for code, n in stats.reasons.most_common()),
        f"  queue now     {run.remaining:>8,} messages waiting",
        f"  user_logins   {table['rows']:>8,} rows, one per message; "
        f"{table['ips']:,} masked ips are {table['distinct_ips']:,} distinct tokens, "
        f"{table['devices']:,} masked device ids are {table['distinct_devices']:,} "
        "(equal values give equal tokens)",
        f"  rejects       {table['rejects']:>8,} rows in ingestor_rejects",
        *_vault_lines(run.vault),
        "",
        "Five rows of user_logins:",
        *(_row(dict(r)) for r in table["sample"]),
    ]
    return "\n".join(lines)


def _vault_lines(vault: VaultCheck | None) -> list[str]:
    if vault is None:
        return []
    verdict = "it masks back to the same token" if vault.reveal_ok else "MISMATCH"
    return [
        f"  pii_vault     {vault.values:>8,} distinct values sealed to {vault.key_id} "
        "(the service holds only the public key)",
        f"  reveal        ip token {vault.token[:16]}… opened with the private key, audited "
        f"in pii_reveal_audit: {verdict}",
    ]


def _row(row: dict[str, Any]) -> str:
    ip = (row["masked_ip"] or "-")[:16]
    device = (row["masked_device_id"] or "-")[:16]
    return (
        f"  {row['user_id']}  {row['device_type'] or '-':<8} ip {ip}…  device {device}…  "
        f"{row['locale'] or '-':<4} v{row['app_version']}  {row['create_date']}"
    )
