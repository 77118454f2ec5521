"""The CLI as a user runs it: `python -m ingestor ...` in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import asyncpg
import pytest

from ingestor.demo.run import crash_after_commit
from ingestor.demo.synthetic import generate
from ingestor.settings import Settings
from ingestor.source.sqs import SqsQueue
from tests.conftest import TEST_KEY, service_env
from tests.integration.helpers import find_plaintext, plaintext_pii, queue_is_empty

pytestmark = pytest.mark.e2e


def ingestor(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingestor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGESTOR_")}
    env.update(extra)
    return env


def test_demo_runs_on_embedded_servers_and_prints_its_summary() -> None:
    result = ingestor("demo", "--events", "1500", env=clean_env())
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # What happened before the drain is said before it, the summary after
    assert out.index("seeded 1,500 events") < out.index("crashed") < out.index("Summary")
    for line in ("received", "loaded", "rejected", "msg/s", "queue now            0 messages"):
        assert line in out
    # The duplicates sentence can be checked against the counts above it
    words = " ".join(out.split())
    replaced = re.search(r"rows: [\d,]+ new and ([\d,]+) replaced", words)
    tied = re.search(r"its ([\d,]+) rows are the ([\d,]+) replaced above", words)
    assert replaced is not None
    assert tied is not None
    assert tied[1] == tied[2] == replaced[1]
    # The SNS notifications: counted as seeded, and the one delivered twice is one row
    seeded = re.search(r"([\d,]+) in all as SNS notifications", words)
    wrapped = re.search(r"those ([\d,]+) messages are ([\d,]+) rows and rejects", words)
    assert seeded is not None
    assert wrapped is not None
    assert seeded[1] == wrapped[1]
    assert int(wrapped[2].replace(",", "")) == int(wrapped[1].replace(",", "")) - 1
    assert "1 notification was delivered twice, as two SQS messages with one SNS" in words
    # Rows show versions as their text and their number
    assert "Five rows of user_logins" in out
    assert re.search(r" \d+\.\d+\.\d+ \(\d+\) ", out)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("INGESTOR_HMAC_KEY", "short-key"),
        ("INGESTOR_DATABASE_URL", "mysql://localhost/db"),
        ("INGESTOR_RECEIVERS", "-1"),
    ],
)
def test_check_with_a_bad_setting_exits_2_naming_the_variable(variable: str, value: str) -> None:
    env = clean_env(
        INGESTOR_QUEUE_URL="http://127.0.0.1:9/000000000000/q",
        INGESTOR_DATABASE_URL="postgresql://postgres@127.0.0.1:9/postgres",
        INGESTOR_HMAC_KEY=TEST_KEY,
    )
    env[variable] = value
    result = ingestor("check", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert variable in lines[0]
    assert value not in lines[0] or variable != "INGESTOR_HMAC_KEY"


def test_run_without_a_key_exits_2() -> None:
    env = clean_env(
        INGESTOR_QUEUE_URL="http://127.0.0.1:9/000000000000/q",
        INGESTOR_DATABASE_URL="postgresql://postgres@127.0.0.1:9/postgres",
    )
    result = ingestor("run", "--drain", env=env)
    assert result.returncode == 2
    assert "INGESTOR_HMAC_KEY: is required" in result.stderr


def test_a_metrics_port_in_use_stops_start_up_with_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env(
            INGESTOR_QUEUE_URL="http://127.0.0.1:9/000000000000/q",
            INGESTOR_DATABASE_URL="postgresql://postgres@127.0.0.1:9/postgres",
            INGESTOR_HMAC_KEY=TEST_KEY,
            INGESTOR_METRICS_HOST="127.0.0.1",
            INGESTOR_METRICS_PORT=str(port),
        )
        result = ingestor("run", env=env, timeout=30)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"ingestor: configuration error: INGESTOR_METRICS_PORT: cannot listen on port {port}: "
        "Address already in use"
    )


def test_help_names_the_variables() -> None:
    assert "INGESTOR_DRAIN" in ingestor("run", "--help").stdout
    assert "INGESTOR_DEMO_EVENTS" in ingestor("demo", "--help").stdout


@pytest.mark.postgres
async def test_run_drain_acceptance_2000_valid_50_invalid_100_redelivered(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, db: asyncpg.Connection
) -> None:
    # Given 2,000 valid and 50 invalid messages, 100 of which an earlier consumer committed
    # and did not delete (so SQS delivers them again)
    valid = [e.body for e in generate(2000, seed=5, junk_rate=0, repeat_rate=0)]
    junk = [f'{{"foo": "oops_wrong_msg_type", "bar": "{i}"}}' for i in range(50)]
    await sqs_queue.send(valid + junk)
    settings = make_settings()
    assert (await crash_after_commit(settings, 100)).messages == 100
    # When `run --drain` runs as a user would run it
    result = await asyncio.to_thread(ingestor, "run", "--drain", env=service_env(settings))
    # Then it exits 0 with 2,000 rows, 50 rejects and an empty queue
    assert result.returncode == 0, result.stderr
    assert await db.fetchval("SELECT count(*) FROM user_logins") == 2000
    assert await db.fetchval("SELECT count(DISTINCT message_id) FROM user_logins") == 2000
    assert await db.fetchval("SELECT count(*) FROM ingestor_rejects") == 50
    assert await queue_is_empty(sqs_queue)
    # And neither the database nor the logs hold a plaintext ip or device id
    pii = plaintext_pii(valid)
    assert await find_plaintext(db, pii) == []
    assert [value for value in pii if value in result.stderr + result.stdout] == []


@pytest.mark.postgres
async def test_check_passes_on_a_migrated_database(
    make_settings: Callable[..., Settings],
) -> None:
    result = await asyncio.to_thread(ingestor, "check", env=service_env(make_settings()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout


@pytest.mark.postgres
async def test_sigterm_stops_the_service_cleanly(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, db: asyncpg.Connection
) -> None:
    # Given the service running (not draining) on a queue with 300 events
    await sqs_queue.send([e.body for e in generate(300, seed=9, junk_rate=0, repeat_rate=0)])
    env = service_env(make_settings())
    env["INGESTOR_DRAIN"] = "false"
    env["INGESTOR_RECEIVE_WAIT_SECONDS"] = "20"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingestor", "run", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while await db.fetchval("SELECT count(*) FROM user_logins") < 300:
            assert time.monotonic() < deadline, "the service did not load the events"
            await asyncio.sleep(0.2)
        # When it gets SIGTERM while its receivers are in a 20 s long poll
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    # Then it exits 0 at once, having deleted what it committed
    assert code == 0
    assert time.monotonic() - started < 10
    assert await queue_is_empty(sqs_queue)
    assert process.stderr is not None
    assert b"SIGTERM received" in await process.stderr.read()


async def test_a_drain_on_a_terminal_prints_one_summary_and_json_logs_carry_every_count(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue
) -> None:
    await sqs_queue.send([e.body for e in generate(300, seed=6)])
    env = service_env(make_settings())
    # On a terminal: the live line, then one summary (not the live one and a log line)
    leader, follower = pty.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ingestor", "run", "--drain", env=env, stderr=follower
        )
        assert await asyncio.wait_for(process.wait(), 120) == 0
        shown = await asyncio.to_thread(read_all, leader)
    finally:
        os.close(follower)
        os.close(leader)
    summaries = [line for line in shown.splitlines() if "done" in line and "received" in line]
    assert len(summaries) == 1, shown
    # Not on a terminal: one JSON summary line with every count as a field
    await sqs_queue.send([e.body for e in generate(300, seed=7)])
    result = await asyncio.to_thread(ingestor, "run", "--drain", env=env)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    (summary,) = [line for line in lines if line["event"] == "summary"]
    assert summary["received"] == 300
    assert summary["loaded"] + summary["rejected"] == 300
    for count in ("inserted", "replaced", "rejected_by_reason", "deleted", "delete_failures",
                  "released", "batches"):  # fmt: skip
        assert count in summary


def read_all(descriptor: int) -> str:
    """What a terminal showed, once the program writing to it has exited."""
    chunks = []
    os.set_blocking(descriptor, False)
    while True:
        try:
            chunk = os.read(descriptor, 65_536)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")
