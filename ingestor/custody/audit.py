"""The audit trail of PII access: who revealed, erased, rotated or replayed what, when and
why. Every such command writes its row in the same transaction as its work.

The database keeps the trail honest (migration 0005): it records its own session user as
the actor (what the command was told, --actor or the OS user, goes beside it as the
claimed actor), it refuses UPDATE, DELETE and TRUNCATE, and it chains each row to the
previous one by a hash. `verify` recomputes the chain here, independently of the
database's function, so a role that can switch the guards off (the tables' owner) still
cannot rewrite a row unnoticed, short of recomputing every hash after it: anchor the head
that `verify` prints somewhere that role cannot write.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingestor.errors import PermanentError
from ingestor.sink.queries import query
from ingestor.terminal import printable


@dataclass(frozen=True, slots=True)
class Request:
    """Who asks (as they say), and why (required: an access without a reason is not
    allowed). The database adds who they are to it: its session user."""

    actor: str
    reason: str

    @classmethod
    def of(cls, reason: str, actor: str | None = None) -> Request:
        if not reason.strip():
            raise ValueError("a reason is required (e.g. the ticket of the request)")
        return cls(actor or default_actor(), reason.strip())


def default_actor() -> str:
    """The OS user running the command."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container with an arbitrary uid)
        return "unknown"


async def record(
    connection: Any, request: Request, action: str, tokens: Sequence[str], detail: str = ""
) -> dt.datetime:
    """Write the audit row; returns its time."""
    row = await connection.fetchrow(
        query("insert_audit"),
        printable(request.actor),
        action,
        list(tokens),
        request.reason,
        detail,
    )
    at: dt.datetime = row["at"]
    return at


class AuditChainBroken(PermanentError):
    """A row of the audit trail is not what was chained: changed, removed or inserted."""


@dataclass(frozen=True, slots=True)
class Chain:
    rows: int
    head: str  # the last row's hash: keep it elsewhere to detect a rewrite of the tail


def chain_hash(row: Any, prev: str) -> str:
    """The hash of an audit row chained to `prev`: sha256 over its fields, each written as
    <length>:<text>, in the order of the database's pii_audit_hash."""
    at = row["at"].astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    fields = (
        prev,
        str(row["seq"]),
        at,
        row["actor"],
        row["claimed_actor"] or "",
        row["action"],
        row["reason"],
        row["detail"] or "",
        str(row["token_count"]),
    )
    text = "".join(f"{len(field)}:{field}" for field in fields)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def verify(connection: Any, page: int = 1_000) -> Chain:
    """Walk the chain from its first row; AuditChainBroken at the first row that does
    not follow from the one before it."""
    seq, prev, count = 0, "", 0
    while rows := await connection.fetch(query("audit_chain_page"), seq, page):
        for row in rows:
            _check(row, seq + 1, prev)
            seq, prev, count = row["seq"], row["hash"], count + 1
    return Chain(count, prev)


def _check(row: Any, expected_seq: int, prev: str) -> None:
    where = f"audit chain broken at seq {row['seq']} (id {row['id']})"
    if row["seq"] != expected_seq:
        raise AuditChainBroken(f"{where}: rows {expected_seq} to {row['seq'] - 1} are missing")
    if row["prev_hash"] != prev:
        raise AuditChainBroken(f"{where}: it does not name the previous row's hash")
    if chain_hash(row, prev) != row["hash"]:
        raise AuditChainBroken(f"{where}: its fields were changed after it was written")
