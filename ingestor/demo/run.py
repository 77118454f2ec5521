"""`python -m ingestor demo`: the whole path on embedded servers, with a readable summary.

It seeds synthetic events (with junk, repeats and odd values, a tenth of them published
through SNS, one of those delivered twice), simulates a consumer that crashed after
committing some messages but before deleting them (so SQS redelivers them), drains the
queue with the real service code, and prints what landed where.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from ingestor.cli.runtime import faster_depth_sampling, run_async
from ingestor.custody.audit import Request
from ingestor.custody.keys import generate_key_pair, public_key_of
from ingestor.custody.ledger import ErasureLedger
from ingestor.custody.reveal import reveal
from ingestor.custody.vault import Checker, Opener
from ingestor.demo.embedded import embedded_postgres, embedded_sqs
from ingestor.demo.synthetic import SyntheticEvent, generate
from ingestor.models import Envelope
from ingestor.observe.hooks import HookChain, Stats
from ingestor.observe.logs import configure
from ingestor.observe.progress import live_progress
from ingestor.pipeline.assembly import build_masker, open_pool, open_queue, run_migrations
from ingestor.pipeline.service import run_service
from ingestor.settings import DEMO_HMAC_KEY, Settings
from ingestor.sink.isolation import split_outcomes, vault_entries
from ingestor.sink.postgres import PostgresSink, connect
from ingestor.sink.queries import query
from ingestor.source.acks import Acknowledger
from ingestor.source.sqs import SqsQueue, create_queue, sqs_client
from ingestor.transform.rules import app_version_text
from ingestor.transform.transformer import Transformer

CRASHED_MESSAGES = 100
SNS_RATE = 0.1  # of the demo's events, published through SNS


@dataclass(frozen=True)
class Crashed:
    """What the simulated crash left behind: messages committed (as rows or as rejects)
    and not deleted, which SQS delivers again. Two copies of one SNS notification are
    two messages and one row or reject."""

    rows: int
    rejects: int
    messages: int


@dataclass(frozen=True)
class DemoRun:
    events: Sequence[SyntheticEvent]
    crashed: Crashed
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
    events = generate(settings.demo_events, settings.demo_seed, sns_rate=SNS_RATE)
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
    settings = await _seed(
        settings, [event.body for event in events], first=_published_twice(events)
    )
    print(seeded_line(events, time.perf_counter() - started), flush=True)
    await run_migrations(settings)
    crashed = await crash_after_commit(settings, CRASHED_MESSAGES)
    print(crashed_line(crashed), flush=True)
    print("  draining the queue with the service ...", flush=True)
    stats = Stats()
    live = live_progress(sys.stderr, summary=False)  # the summary below is the one
    if live is not None:
        settings = faster_depth_sampling(settings)
    started = time.perf_counter()
    await run_service(settings, asyncio.Event(), HookChain(stats, *([live] if live else [])))
    drain_seconds = time.perf_counter() - started
    async with open_queue(settings) as queue:
        remaining = (await queue.depths()).visible
    table = await _table_facts(settings)
    vault = await _vault_check(settings, private_key, table["sample"])
    return DemoRun(events, crashed, drain_seconds, stats, remaining, table, vault)


async def _seed(settings: Settings, bodies: list[str], first: int = 0) -> Settings:
    """Send `bodies`, the `first` of them before the rest: the SNS notification delivered
    twice goes to the head of the queue, so that both copies are received together (by the
    crashed consumer, and then again in one batch) and its one row is replaced once."""
    async with sqs_client(settings.region, settings.sqs_endpoint_url) as client:
        url = await create_queue(client, "login-queue", {"VisibilityTimeout": "60"})
        queue = SqsQueue(client, url)
        await queue.send(bodies[:first])
        await queue.send(bodies[first:])
    return settings.model_copy(update={"queue_url": url})


def _published_twice(events: Sequence[SyntheticEvent]) -> int:
    """How many leading events hold the notification delivered twice (0: none)."""
    return 2 if len(events) > 1 and events[0].sns_id and events[0] == events[1] else 0


async def crash_after_commit(settings: Settings, count: int) -> Crashed:
    """Receive about `count` messages, commit them, and "crash" before deleting: their
    visibility is set to 0, as if their timeout had run out, so SQS delivers them again."""
    masker = build_masker(settings)
    transformer = Transformer(masker, settings.envelope)
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
        await Acknowledger(queue).change_visibility([e.receipt_handle for e in received], 0)
    return Crashed(len(rows), len(rejects), len(received))


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


def seeded_line(events: Sequence[SyntheticEvent], seconds: float) -> str:
    junk = sum(1 for e in events if not e.valid)
    repeats = sum(1 for e in events if e.kind == "repeat")
    wrapped = sum(1 for e in events if e.sns_id)
    return (
        f"  seeded {len(events):,} events in {seconds:.1f} s: {len(events) - junk:,} valid "
        f"({repeats:,} of them the same event sent again as a new message), {junk:,} junk; "
        f"{wrapped:,} in all as SNS notifications"
    )


def crashed_line(crashed: Crashed) -> str:
    copies = crashed.messages - crashed.rows - crashed.rejects
    also = f", and {copies:,} second copy of an SNS notification" if copies else ""
    return (
        f"  simulated a consumer that crashed after committing {crashed.messages:,} messages "
        f"({crashed.rows:,} rows, {crashed.rejects:,} rejects{also}) but before deleting "
        "them: SQS delivers those again"
    )


def render(run: DemoRun) -> str:
    stats, table = run.stats, run.table
    rate = stats.received / run.drain_seconds if run.drain_seconds else 0.0
    lines = [
        "",
        "Summary",
        f"  received      {stats.received:>8,} messages in {run.drain_seconds:.1f} s "
        f"({rate:,.0f} msg/s)",
        f"  loaded        {stats.loaded:>8,} rows: {stats.inserted:,} new and "
        f"{stats.replaced:,} replaced",
        f"  rejected      {stats.rejected:>8,} messages, by reason:",
        *(f"      {code:<26} {n:>6,}" for code, n in stats.reasons.most_common()),
        f"  queue now     {run.remaining:>8,} messages waiting",
        f"  user_logins   {table['rows']:>8,} rows, one per message (per SNS MessageId for a "
        "notification); "
        f"{table['ips']:,} masked ips are {table['distinct_ips']:,} distinct tokens, "
        f"{table['devices']:,} masked device ids are {table['distinct_devices']:,} "
        "(equal values give equal tokens)",
        f"  rejects       {table['rejects']:>8,} rows in ingestor_rejects",
        *_vault_lines(run.vault),
        "",
        *_wrapped(duplicates_sentence(run)),
        "",
        *_wrapped(envelopes_sentence(run)),
        "",
        "Five rows of user_logins (NULL is blank; app_version as its text and its number):",
        *(_row(dict(r)) for r in table["sample"]),
    ]
    return "\n".join(lines)


def duplicates_sentence(run: DemoRun) -> str:
    """Redeliveries, events sent twice and replaced rows, tied together in words a person
    can check against the lines above."""
    repeats = sum(1 for e in run.events if e.kind == "repeat")
    crashed, stats = run.crashed, run.stats
    return (
        f"Duplicates: the {crashed.messages:,} redelivered messages came back with the same "
        f"MessageIds, so each replaced what the crashed consumer had committed: its "
        f"{crashed.rows:,} rows are the {stats.replaced:,} replaced above and its "
        f"{crashed.rejects:,} rejects were stored again, once each. The {repeats:,} events "
        "sent again as new messages have MessageIds of their own: each is a row of its own "
        "(the table keeps one row per message; analysts count those)."
    )


def envelopes_sentence(run: DemoRun) -> str:
    """The SNS notifications: how many, how they were keyed and dated, and the one
    delivered twice, in numbers a person can check against the table."""
    wrapped = [e.sns_id for e in run.events if e.sns_id]
    if not wrapped:
        return ""
    twice = len(wrapped) - len(set(wrapped))
    return (
        f"Envelopes: {len(wrapped):,} messages were SNS notifications around the event; "
        "INGESTOR_ENVELOPE=auto took each event out, keyed it by its SNS MessageId "
        "(sns:<MessageId>) and dated it by the notification's Timestamp. "
        f"{twice:,} notification was delivered twice, as two SQS messages with one SNS "
        f"MessageId: those {len(wrapped):,} messages are {run.table['sns_keys']:,} rows and "
        "rejects, and every copy was deleted."
    )


def _wrapped(text: str, width: int = 88) -> list[str]:
    return textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="  ")


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
    ip = f"{row['masked_ip'][:16]}…" if row["masked_ip"] else ""
    device = f"{row['masked_device_id'][:16]}…" if row["masked_device_id"] else ""
    number = row["app_version"]
    version = "" if number is None else f"{app_version_text(number)} ({number})"
    return (
        f"  {row['user_id']}  {row['device_type'] or '':<8} ip {ip:<17}  device {device:<17}  "
        f"{row['locale'] or '':<4} {version:<20} {row['create_date']}"
    )
