"""Helpers for tests against the real servers: expected rows, and a scan for plaintext PII."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import asyncpg
import orjson

from ingestor.source.sqs import SqsQueue
from ingestor.table import canonical_ip
from ingestor.transform.masking import HmacMasker

PII_FIELDS = ("ip", "device_id")
IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")
DEVICE_ID = re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")
# Addresses of the service's own endpoints (where it listens, the local emulator): not PII.
OWN_ADDRESSES = frozenset({"0.0.0.0", "127.0.0.1"})


def plaintext_pii(bodies: list[str]) -> set[str]:
    """Every ip/device_id value in the bodies, as sent and canonicalised."""
    values: set[str] = set()
    for body in bodies:
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            continue
        for field in PII_FIELDS if isinstance(event, dict) else ():
            value = event.get(field)
            if isinstance(value, str) and len(value) >= 3:
                values.add(value)
                with contextlib.suppress(ValueError):
                    values.add(canonical_ip(value))
    return values


async def scanned_columns(connection: asyncpg.Connection) -> list[asyncpg.Record]:
    """What `find_plaintext` reads: every column of every table and view of the public
    schema (the custody tables, the erasure ledger and the audit trail's side table and
    view included)."""
    return await connection.fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
    )


async def find_plaintext(connection: asyncpg.Connection, values: set[str]) -> list[str]:
    """Every (table.column) of the public schema that holds one of `values`: every column,
    bytea searched as raw bytes (a value written there as UTF-8), everything else (arrays,
    JSON, numbers) as its text."""
    found: list[str] = []
    for column in await scanned_columns(connection):
        table, name = column["table_name"], column["column_name"]
        if column["data_type"] == "bytea":
            cells = await connection.fetch(f'SELECT "{name}" AS v FROM "{table}"')
            data = b"\n".join(bytes(r["v"]) for r in cells if r["v"] is not None)
            found.extend(f"{table}.{name}" for value in values if value.encode() in data)
            continue
        texts = await connection.fetch(f'SELECT "{name}"::text AS v FROM "{table}"')
        text = "\n".join(r["v"] for r in texts if r["v"] is not None)
        found.extend(f"{table}.{name}" for value in values if value in text)
    return found


def expected_row(event: dict[str, Any], masker: HmacMasker) -> tuple[Any, ...]:
    """The user_logins row an event should give, written out by hand from the rules."""
    ip, device = event.get("ip"), event.get("device_id")
    version = event.get("app_version")
    number = None
    if version is not None:
        groups = [int(g) for g in version.split(".")] + [0, 0]
        number = groups[0] * 1_000_000 + groups[1] * 1_000 + groups[2]
    return (
        event["user_id"],
        event.get("device_type"),
        None if ip is None else masker.mask_ip(canonical_ip(ip)),
        None if device is None else masker.mask_device_id(device),
        event.get("locale"),
        number,
    )


async def queue_is_empty(queue: SqsQueue) -> bool:
    attributes = await queue._client.get_queue_attributes(
        QueueUrl=queue.url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    counts = attributes["Attributes"]
    return (
        int(counts["ApproximateNumberOfMessages"]) == 0
        and int(counts["ApproximateNumberOfMessagesNotVisible"]) == 0
    )


def pii_in_logs(text: str, key: str) -> list[str]:
    """What in log text looks like PII or is the key: any IPv4 address (but the service's
    own endpoints), any ddd-dd-dddd device id. Empty when the logs are clean."""
    found = [address for address in IPV4.findall(text) if address not in OWN_ADDRESSES]
    found += DEVICE_ID.findall(text)
    return found + (["the HMAC key"] if key in text else [])
