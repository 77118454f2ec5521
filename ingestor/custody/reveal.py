"""`ingestor reveal`: open vaulted values for tokens, with the private key, audited.

The audit row is committed before anything is opened: a reveal that fails half-way is
still on record, and no value is shown without its row. A value is shown only if it makes
its token under the masking key (`Checker`): an entry someone re-sealed is reported.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingestor.custody.audit import Request, record
from ingestor.custody.tombstones import is_tombstone
from ingestor.custody.vault import Checker, EntryRefused, Opener
from ingestor.sink.queries import query

UNKNOWN = (
    "not in the vault: an unknown token, a value loaded while the vault was off, or an "
    "erased value (forget replaced it with a tombstone wherever it stood)"
)


@dataclass(frozen=True, slots=True)
class Revealed:
    token: str
    field: str | None = None
    value: str | None = None
    problem: str | None = None  # why there is no value


async def reveal(
    connection: Any, opener: Opener, checker: Checker, tokens: Sequence[str], request: Request
) -> list[Revealed]:
    """One `Revealed` per token, in the order asked."""
    wanted = list(dict.fromkeys(tokens))
    async with connection.transaction():
        found = {r["token"]: r for r in await connection.fetch(query("vault_lookup"), wanted)}
        # Unknown tokens are not recorded: one may be the token of an erased value, and
        # writing it back would let the HMAC key's holders test guesses against it again.
        recorded = [t for t in wanted if t in found or is_tombstone(t)]
        detail = f"{len(found)} of {len(wanted)} in the vault"
        await record(connection, request, "reveal", recorded, detail)
    erased = await _erased(connection, [t for t in wanted if is_tombstone(t)])
    return [
        _opened(token, found.get(token), erased.get(token), opener, checker) for token in wanted
    ]


async def _erased(connection: Any, tokens: list[str]) -> dict[str, dt.datetime]:
    if not tokens:
        return {}
    rows = await connection.fetch(query("erased_tokens"), tokens)
    return {row["token"]: row["at"] for row in rows}


def _opened(
    token: str, row: Any, erased_at: dt.datetime | None, opener: Opener, checker: Checker
) -> Revealed:
    if row is None:
        if erased_at is not None:
            when = f"{erased_at:%Y-%m-%d %H:%M} UTC"
            return Revealed(token, problem=f"the tombstone of a value erased on {when} (forget)")
        return Revealed(token, problem=UNKNOWN)
    try:
        return Revealed(token, row["field"], opener.open_entry(row, checker))
    except EntryRefused as refused:
        return Revealed(token, problem=str(refused))
