"""`ingestor forget`: erase values for a data-subject request.

For each token: its vault row is deleted (the value can never be revealed again) and every
occurrence is replaced with a random tombstone, in `user_logins` and in the rejects, in one
transaction with its audit row. A tombstone rather than the token, because whoever holds
the HMAC key could otherwise confirm a guess (an IPv4 address is 2^32 guesses). Rejects
that held the token also lose their sealed original body, which contains the value, and
their keyed body digest, which would confirm a guess of it.
New events carrying the same value later are masked (and vaulted) as usual.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from ingestor.audit import Request, record
from ingestor.queries import query
from ingestor.tokens import is_tombstone, remapped, tombstone
from ingestor.vault import VaultingMasker

log = logging.getLogger("ingestor")


@dataclass(frozen=True, slots=True)
class Erased:
    tokens: int
    vault_rows: int
    rows: int
    rejects: int


async def user_tokens(connection: Any, user_id: str) -> list[str]:
    """Every token in the user's rows and rejects (tombstones excluded)."""
    tokens = [row["token"] for row in await connection.fetch(query("user_tokens"), user_id)]
    written = orjson.dumps(user_id).decode()[1:-1]  # the id as it stands in a JSON body
    for reject in await connection.fetch(query("user_rejects"), written):
        if _user_id_text(orjson.loads(reject["body"]).get("user_id")) == user_id:
            tokens.extend(t for t in reject["pii_tokens"] if not is_tombstone(t))
    return list(dict.fromkeys(tokens))


def _user_id_text(value: Any) -> str | None:
    """The body's user_id as text, as `->>` gives it: a string, or a number's JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return orjson.dumps(value).decode()
    return None


async def forget(
    connection: Any, tokens: Sequence[str], request: Request, detail: str = ""
) -> Erased:
    """Erase `tokens` everywhere, audited, in one transaction."""
    wanted = [t for t in dict.fromkeys(tokens) if not is_tombstone(t)]
    mapping = {token: tombstone() for token in wanted}
    async with connection.transaction():
        status = await connection.execute(query("delete_vault"), wanted)
        rows, rejects = await _replace_everywhere(connection, mapping)
        # The audit row names the tombstones, never the erased tokens (see above).
        await record(connection, request, "forget", list(mapping.values()), detail)
    return Erased(len(wanted), int(status.split()[-1]), rows, rejects)


async def _replace_everywhere(connection: Any, mapping: dict[str, str]) -> tuple[int, int]:
    """Each erased token becomes its tombstone in user_logins, the audit trail and the
    rejects; (rows changed, rejects changed)."""
    await connection.execute(query("token_map"))
    await connection.copy_records_to_table(
        "ingestor_token_map", records=list(mapping.items()), columns=("old", "new")
    )
    status = await connection.execute(query("replace_login_tokens"))
    await connection.execute(query("replace_audit_tokens"))
    rejects = await connection.fetch(query("rejects_with_tokens"))
    if rejects:
        await connection.executemany(
            query("rewrite_reject"), [_erased(reject, mapping) for reject in rejects]
        )
    return int(status.split()[-1]), len(rejects)


def _erased(reject: Any, mapping: dict[str, str]) -> tuple[Any, ...]:
    """The reject's update. Its sealed original holds the erased value, and so does the
    keyed digest of the original (or of a refused row's body with the token in it): whoever
    holds the HMAC key could test a guess against it. A random tombstone replaces it too."""
    body, tokens = remapped(reject["body"], reject["pii_tokens"], mapping)
    return reject["message_id"], body, tokens, None, tombstone()


ERASURE_POLL_SECONDS = 30.0


async def follow_erasures(
    pool: Any, masker: VaultingMasker, interval: float = ERASURE_POLL_SECONDS
) -> None:
    """Run beside the service: every `interval` seconds, count the erasures on record;
    when the count grows, the masker forgets everything it remembers as vaulted, so a
    value seen again after its erasure is vaulted again. (The audit trail names only
    tombstones, not which tokens were erased: the memory is simply refilled.) Counting,
    not reading rows after an id, sees a forget that commits out of id order. A failed
    look is logged once and tried again at the next tick: loading does not depend on it."""
    seen: int | None = None
    failing = False
    while True:
        try:
            count = int(await pool.fetchval(query("count_erasures")))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
            if not failing:
                log.warning(
                    "cannot read erasures from pii_reveal_audit (%s); a value erased meanwhile "
                    "and seen again may be loaded without a vault entry until this works",
                    type(error).__name__,
                    extra={"event": "erasures_unreadable"},
                )
            failing = True
        else:
            failing = False
            if seen is not None and count != seen:
                masker.forget_all()
            seen = count
        await asyncio.sleep(interval)
