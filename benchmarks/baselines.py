"""Two baselines to set ingestor's throughput against, each returning
`{"messages": n, "seconds": s, "rate": n / s, "cpu_seconds": c}`:

- `bare_sqs`: the limit of the SQS path: ingestor's own aiobotocore client, concurrent
  receive + delete_message_batch loops, no parsing, no database. Project venv.
- `seed_approach`: what a newcomer writes: boto3 one message at a time, json.loads,
  sha256, a one-row pandas DataFrame `to_sql` through SQLAlchemy, delete one at a time.
  boto3 clashes with aiobotocore's botocore pin, so it runs in its own venv
  (benchmarks/.tools/venv-seed, built by tools.sh) as a script:

      benchmarks/.tools/venv-seed/bin/python benchmarks/baselines.py \\
          seed ENDPOINT QUEUE_URL DATABASE_URL EXPECTED      # prints one JSON line
      .venv/bin/python -m benchmarks.baselines bare ENDPOINT QUEUE_URL RECEIVERS EXPECTED

Both clocks run as `run_ingestor.py`'s does: from the first receive that returned
messages to the last successful delete; `cpu_seconds` is this process's CPU time (user +
system) over the same span. Only the standard library is imported at module level, so the
file imports in both venvs: aiobotocore (via ingestor) only in `bare_sqs`, boto3, pandas
and SQLAlchemy only in `seed_approach`.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import os
import sys
import time
from typing import Any


def _default_credentials() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


class _Clock:
    """First receive to last delete, in wall time and in this process's CPU time."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.cpu_first = 0.0
        self.last = 0.0
        self.cpu_last = 0.0
        self.count = 0
        self.progress = time.monotonic()

    def received(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()
            self.cpu_first = time.process_time()

    def deleted(self, count: int) -> None:
        self.count += count
        self.last = time.perf_counter()
        self.cpu_last = time.process_time()
        self.progress = time.monotonic()

    def result(self) -> dict[str, float]:
        seconds = self.last - (self.first if self.first is not None else self.last)
        return {
            "messages": self.count,
            "seconds": seconds,
            "rate": self.count / seconds if seconds > 0 else 0.0,
            "cpu_seconds": self.cpu_last - self.cpu_first,
        }


async def bare_sqs(
    endpoint: str, queue_url: str, receivers: int, expected: int, idle_timeout: float = 30.0
) -> dict[str, float]:
    """`receivers` tasks, each looping receive_message (10, 1 s long poll) then
    delete_message_batch of what it got, until `expected` messages are deleted in all.
    Raises TimeoutError if nothing is deleted for `idle_timeout` seconds."""
    from ingestor.source.sqs import sqs_client  # noqa: PLC0415 - aiobotocore: project venv only

    _default_credentials()
    clock = _Clock()

    # As ingestor sizes its pool: one connection per receiver, and a little slack.
    async with sqs_client(_region(), endpoint, receivers + 2) as client:

        async def receiver() -> None:
            while clock.count < expected:
                response = await client.receive_message(
                    QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                )
                messages = response.get("Messages")
                if not messages:
                    if time.monotonic() - clock.progress > idle_timeout:
                        raise TimeoutError(
                            f"bare_sqs: {clock.count} of {expected} deleted, then nothing "
                            f"for {idle_timeout:.0f} s"
                        )
                    continue
                clock.received()
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ]
                result = await client.delete_message_batch(QueueUrl=queue_url, Entries=entries)
                if result.get("Failed"):
                    raise RuntimeError(f"bare_sqs: delete failed: {result['Failed'][:3]}")
                clock.deleted(len(result.get("Successful", ())))

        # Receivers still in a long poll when the count is reached finish it (<= 1 s,
        # outside the clock); a failing one cancels the others.
        async with asyncio.TaskGroup() as group:
            for _ in range(receivers):
                group.create_task(receiver())
    return clock.result()


def sqlalchemy_url(database_url: str) -> str:
    """postgresql://... (Unix-socket form `postgresql://u:@/db?host=/dir` included) as
    SQLAlchemy's psycopg2 URL; it passes `host` in the query string on to libpq."""
    scheme, sep, rest = database_url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres", "postgresql+psycopg2"):
        raise ValueError(f"not a postgresql:// URL: {scheme}://...")
    return f"postgresql+psycopg2://{rest}"


def _sha256(value: Any) -> str | None:
    return None if value is None else hashlib.sha256(str(value).encode()).hexdigest()


def seed_approach(
    endpoint: str, queue_url: str, database_url: str, expected: int
) -> dict[str, float]:
    """The naive loop: one message per receive, one row per `to_sql`, one delete per
    message, until `expected` messages were handled (junk is skipped and deleted too)."""
    import boto3  # noqa: PLC0415 - seed venv only
    import pandas as pd  # noqa: PLC0415
    from sqlalchemy import create_engine  # noqa: PLC0415

    _default_credentials()
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=_region())
    engine = create_engine(sqlalchemy_url(database_url))
    clock = _Clock()
    try:
        while clock.count < expected:
            response = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=1
            )
            messages = response.get("Messages", [])
            if not messages:
                if time.monotonic() - clock.progress > 30:
                    raise TimeoutError(f"seed: {clock.count} of {expected}, then nothing")
                continue
            clock.received()
            message = messages[0]
            try:
                data = json.loads(message["Body"])
            except ValueError:
                data = None
            if isinstance(data, dict) and data.get("user_id"):
                version = data.get("app_version")
                row = {
                    "user_id": data.get("user_id"),
                    "device_type": data.get("device_type"),
                    "masked_ip": _sha256(data.get("ip")),
                    "masked_device_id": _sha256(data.get("device_id")),
                    "locale": data.get("locale"),
                    "app_version": None if version is None else str(version),
                    "create_date": datetime.date.today(),
                }
                pd.DataFrame([row]).to_sql(
                    "user_logins_seed", engine, if_exists="append", index=False
                )
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            clock.deleted(1)
    finally:
        engine.dispose()
    return clock.result()


def main(argv: list[str]) -> int:
    usage = (
        "usage: baselines.py seed ENDPOINT QUEUE_URL DATABASE_URL EXPECTED\n"
        "       baselines.py bare ENDPOINT QUEUE_URL RECEIVERS EXPECTED"
    )
    if len(argv) != 5 or argv[0] not in ("seed", "bare"):
        print(usage, file=sys.stderr)
        return 2
    command, endpoint, queue_url, third, expected = argv
    if command == "seed":
        result = seed_approach(endpoint, queue_url, third, int(expected))
    else:
        result = asyncio.run(bare_sqs(endpoint, queue_url, int(third), int(expected)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
