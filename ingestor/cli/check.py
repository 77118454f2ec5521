"""`ingestor check`: are the settings, the queue and the database (schema included) usable?"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ingestor.custody import keyrecord
from ingestor.errors import ConfigError, IngestorError, QueueError, QueueGone
from ingestor.pipeline.assembly import not_found, open_queue
from ingestor.settings import Settings, env_name
from ingestor.sink.partitions import read_layout
from ingestor.sink.postgres import connect, mapped_errors
from ingestor.sink.schema import schema_problems
from ingestor.table import USER_LOGINS


async def check_queue(settings: Settings) -> list[str]:
    async with open_queue(settings) as queue:
        try:
            attributes = await queue.attributes()
        except QueueGone:
            raise not_found(queue, settings) from None
        except IngestorError as error:
            if (hint := settings.endpoint_hint()) is None:
                raise
            raise QueueError(f"{error}; {hint}") from None
    depth = attributes.depth
    if settings.visibility_timeout:
        visibility = f"{settings.visibility_timeout} s (from {env_name('visibility_timeout')})"
    else:
        visibility = f"{attributes.visibility_timeout} s (the queue's own VisibilityTimeout)"
    return [
        f"ok   queue answers ({depth.visible} messages waiting, {depth.in_flight} in flight)",
        f"ok   visibility timeout {visibility}",
    ]


async def check_database(settings: Settings) -> list[str]:
    connection = await connect(settings.dsn)
    try:
        async with mapped_errors():
            problems = await schema_problems(connection)
            if problems:
                return [f"FAIL database: {problem}" for problem in problems]
            key = await keyrecord.check(connection, settings.key_bytes)
            layout = await read_layout(connection, USER_LOGINS.name, USER_LOGINS.date)
    finally:
        await connection.close()
    lines = ["ok   database answers and its schema is up to date", f"ok   {key}"]
    if layout.partitioned:
        lines.append(f"ok   {layout.table} is {layout.describe()}; {layout.policy()}")
    return lines


async def run_checks(settings: Settings) -> tuple[int, list[str]]:
    """All checks, each reported; (exit code, report lines): 0 all passed, 2 a setting is
    wrong (the masking key is not the tables'), else 1."""
    settings.require("queue_url", "database_url", "hmac_key")
    settings.require_production_key()
    lines = ["ok   settings"]
    checks: list[tuple[str, Callable[[Settings], Awaitable[list[str]]]]] = [
        ("queue", check_queue),
        ("database", check_database),
    ]
    code = 0
    for name, check in checks:
        try:
            lines.extend(await check(settings))
        except ConfigError as error:
            lines.append(f"FAIL {name}: {error}")
            code = 2
        except IngestorError as error:
            lines.append(f"FAIL {name}: {error}")
    failed = any(line.startswith("FAIL") for line in lines)
    return code or int(failed), lines
