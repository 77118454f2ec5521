"""`ingestor forget`: erase values for a data-subject request.

For each token: its vault row is deleted (the value can never be revealed again) and every
occurrence is replaced with a random tombstone, in `user_logins` and in the rejects, in one
transaction with its audit row. A tombstone rather than the token, because whoever holds
the HMAC key could otherwise confirm a guess (an IPv4 address is 2^32 guesses). Rejects
that held the token also lose their sealed original body, which contains the value.
New events carrying the same value later are masked (and vaulted) as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingestor.audit import Request, record
from ingestor.queries import query
from ingestor.tokens import is_tombstone, replace_tokens, tombstone


@dataclass(frozen=True, slots=True)
class Erased:
    tokens: int
    vault_rows: int
    rows: int
    rejects: int


async def user_tokens(connection: Any, user_id: str) -> list[str]:
    """Every token in the user's rows and rejects."""
    return [row["token"] for row in await connection.fetch(query("user_tokens"), user_id)]


async def forget(
    connection: Any, tokens: Sequence[str], request: Request, detail: str = ""
) -> Erased:
    """Erase `tokens` everywhere, audited, in one transaction."""
    wanted = [t for t in dict.fromkeys(tokens) if not is_tombstone(t)]
    mapping = {token: tombstone() for token in wanted}
    async with connection.transaction():
        status = await connection.execute(query("delete_vault"), wanted)
        rows, rejects = await replace_tokens(connection, mapping, _drop_sealed_body)
        await record(connection, request, "forget", wanted, detail)
    return Erased(len(wanted), int(status.split()[-1]), rows, rejects)


def _drop_sealed_body(sealed: bytes | None, key_id: str | None) -> tuple[None, None]:
    return None, None  # the sealed original holds the erased value
