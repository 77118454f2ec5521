"""`ingestor reveal`: open vaulted values for tokens, with the private key, audited.

The audit row is committed before anything is opened: a reveal that fails half-way is
still on record, and no value is shown without its row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingestor.audit import Request, record
from ingestor.queries import query
from ingestor.vault import Opener


@dataclass(frozen=True, slots=True)
class Revealed:
    token: str
    field: str | None = None
    value: str | None = None
    problem: str | None = None  # why there is no value


async def reveal(
    connection: Any, opener: Opener, tokens: Sequence[str], request: Request
) -> list[Revealed]:
    """One `Revealed` per token, in the order asked."""
    wanted = list(dict.fromkeys(tokens))
    async with connection.transaction():
        found = {r["token"]: r for r in await connection.fetch(query("vault_lookup"), wanted)}
        detail = f"{len(found)} of {len(wanted)} in the vault"
        await record(connection, request, "reveal", wanted, detail)
    erased = await _erased(connection, [t for t in wanted if t not in found])
    return [_opened(token, found.get(token), erased.get(token), opener) for token in wanted]


async def _erased(connection: Any, tokens: list[str]) -> dict[str, dt.datetime]:
    if not tokens:
        return {}
    rows = await connection.fetch(query("erased_tokens"), tokens)
    return {row["token"]: row["at"] for row in rows}


def _opened(token: str, row: Any, erased_at: dt.datetime | None, opener: Opener) -> Revealed:
    if row is None:
        if erased_at is not None:
            return Revealed(token, problem=f"erased on {erased_at:%Y-%m-%d %H:%M} UTC (forget)")
        return Revealed(token, problem="not in the vault (unknown token, or loaded unvaulted)")
    plaintext = opener.open(row["sealed"], row["key_id"])
    return Revealed(token, row["field"], plaintext.decode("utf-8", "surrogatepass"))
