"""The service's logs as a log shipper sees them: JSON lines, one per state change, a
periodic progress line, and never an address, a device id or the key."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable

import aiohttp
import orjson
import pytest

from ingestor.demo.embedded import free_port
from ingestor.demo.synthetic import generate
from ingestor.settings import Settings
from ingestor.source.sqs import SqsQueue
from tests.conftest import TEST_KEY, service_env
from tests.integration.helpers import pii_in_logs, plaintext_pii

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


async def wait_until_ready(port: int, within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            assert time.monotonic() < deadline, "the service never became ready"
            await asyncio.sleep(0.1)


async def read_until_done(stream: asyncio.StreamReader, count: int) -> bytes:
    """Log lines up to a progress line that counts `count` messages done."""
    lines = []
    while line := await stream.readline():
        lines.append(line)
        event = orjson.loads(line)
        if event["event"] == "progress" and event["loaded"] + event["rejected"] == count:
            break
    return b"".join(lines)


async def test_json_logs_one_line_per_state_change_with_progress_and_no_pii(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue
) -> None:
    # Given the service, with JSON logs, progress every 0.3 s and its metrics port
    bodies = [e.body for e in generate(1000, seed=23, junk_rate=0.1)]
    port = free_port()
    env = service_env(make_settings())
    env.update(
        INGESTOR_DRAIN="false",
        INGESTOR_RECEIVE_WAIT_SECONDS="1",
        INGESTOR_LOG_FORMAT="json",
        INGESTOR_PROGRESS_INTERVAL="0.3",
        INGESTOR_METRICS_HOST="127.0.0.1",
        INGESTOR_METRICS_PORT=str(port),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingestor", "run", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        await wait_until_ready(port)
        # When it loads events full of addresses and device ids, and is then stopped
        await sqs_queue.send(bodies)
        assert process.stderr is not None
        # (until a progress line counts every message as loaded or rejected)
        seen = await asyncio.wait_for(read_until_done(process.stderr, len(bodies)), 60)
        process.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(process.communicate(), 30)
        stderr = seen + rest
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    text = stderr.decode()
    lines = [orjson.loads(line) for line in text.splitlines()]
    # Then every line is a JSON object with a level, a message and an event
    assert lines
    assert all({"ts", "level", "message", "event"} <= line.keys() for line in lines)
    events = [line["event"] for line in lines]
    states = [line["state"] for line in lines if line["event"] == "state"]
    # And one line per state change, in order, and the stop and the summary
    assert states == ["starting", "running", "draining", "stopped"]
    for event in ("start", "http_listening", "stop_requested", "summary"):
        assert events.count(event) == 1, event
    # And progress lines with counts that reach what was sent
    progress = [line for line in lines if line["event"] == "progress"]
    assert progress
    assert progress[-1]["received"] == len(bodies)
    assert progress[-1]["loaded"] + progress[-1]["rejected"] == len(bodies)
    assert {"rate", "lag_seconds", "deleted", "queue_visible"} <= progress[-1].keys()
    # And no line holds an address or a device id of the events, or the key
    assert [value for value in plaintext_pii(bodies) if value in text] == []
    assert pii_in_logs(text, TEST_KEY) == []
