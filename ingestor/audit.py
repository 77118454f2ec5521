"""The audit trail of PII access: who revealed, erased, rotated or replayed what, when and
why. Every such command writes its row in the same transaction as its work."""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingestor.queries import query


@dataclass(frozen=True, slots=True)
class Request:
    """Who asks, and why (required: an access without a reason is not allowed)."""

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
        query("insert_audit"), request.actor, action, list(tokens), request.reason, detail
    )
    at: dt.datetime = row["at"]
    return at
