"""`ingestor forget`: erase values for a data-subject request.

- `forget --user-id U` erases every value in U's rows and rejects, for U: U's rows get
  tombstones of their own (one per value, so U's counts still add up), U's rejects keep
  nothing of their body (found by the keyed digest of their user_id, or, for rejects
  stored before they had one, by the user_id in their body), and a value's vault row goes
  only when no other user's row or reject holds its token: an address two users share
  stays revealable for the other.
- `forget TOKEN...` erases a value everywhere, whoever's rows and rejects hold it: one
  tombstone per token, and its vault row goes.

A tombstone is random: whoever holds the HMAC key could otherwise confirm a guess against
it (an IPv4 address is 2^32 guesses). For the same reason a reject that held the token
loses its sealed original body and its keyed digest, and the audit trail's earlier rows
name the tombstone (their side table is rewritten) when the value is gone everywhere.
Every erased (user, token) pair is entered in the erasure ledger (`ledger.py`), so that
a later load of the value for that user lands with the tombstone.

One transaction, with its audit row, alone against the writers (they wait for it), and
refused while a key rotation runs or is unfinished: an erasure in the middle of one could
leave a value revealable under the new key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from ingestor.custody import keyrecord
from ingestor.custody.audit import Request, record
from ingestor.custody.ledger import ERASURE_LOCK
from ingestor.custody.rekey import REKEY_LOCK
from ingestor.custody.tombstones import is_tombstone, remapped, tombstone
from ingestor.custody.vault import VaultingMasker
from ingestor.errors import PermanentError
from ingestor.sink.generated import Statements, statements
from ingestor.sink.queries import query
from ingestor.table import USER_LOGINS, Table
from ingestor.terminal import printable
from ingestor.transform.masking import HmacMasker
from ingestor.transform.rejects import user_id_text

log = logging.getLogger("ingestor")


class ErasureRefused(PermanentError):
    """forget cannot run now, or not with this key."""


@dataclass(frozen=True, slots=True)
class Erased:
    tokens: int  # values erased
    vault_rows: int
    rows: int
    rejects: int
    unvaulted: int = 0  # of the values erased everywhere, those that had no vault row
    shared: int = 0  # values erased for the user that other users still hold: kept
    not_found: tuple[str, ...] = ()  # tokens given that nothing held


@dataclass(frozen=True, slots=True)
class Holder:
    """A user who holds a token: the ledger's entry for the pair."""

    user_digest: str
    user_id: str | None  # None when only the digest is known (a reject's user)
    token: str


async def forget(
    connection: Any,
    hmac_key: bytes,
    request: Request,
    *,
    tokens: Sequence[str] = (),
    user_id: str | None = None,
    table: Table = USER_LOGINS,
) -> Erased:
    """Erase the user's values (`user_id`) or values everywhere (`tokens`), audited, in
    one transaction; in `table`, every PII column is searched and rewritten."""
    masker = HmacMasker(hmac_key, table)
    sql = statements(table)
    async with connection.transaction():
        await _alone(connection, masker.key_id)
        await connection.execute(query("token_map"))
        if user_id is not None:
            return await _forget_user(connection, masker, sql, request, user_id)
        return await _forget_tokens(connection, masker, sql, request, tokens)


async def _alone(connection: Any, key_id: str) -> None:
    """No rotation runs or is unfinished, the key is the tables', and the writers wait."""
    if not await connection.fetchval(query("rekey_lock_xact"), REKEY_LOCK):
        raise ErasureRefused("a key rotation (rekey) is running: forget when it has finished")
    state = await connection.fetchrow(query("rekey_state"))
    if state is not None:
        raise ErasureRefused(
            f"a key rotation to {printable(state['mask_key_id'])} is unfinished: run rekey "
            "again to finish it, then forget"
        )
    await keyrecord.verify(connection, key_id)  # the key the tables' tokens are made with
    await connection.execute(query("erasure_lock"), ERASURE_LOCK)


async def _forget_user(
    connection: Any, masker: HmacMasker, sql: Statements, request: Request, user_id: str
) -> Erased:
    user = masker.digest_user(user_id)
    row_tokens = [r["token"] for r in await connection.fetch(sql.user_tokens, user_id)]
    rejects = await _user_rejects(connection, user_id, user)
    found = _live([*row_tokens, *(t for reject in rejects for t in reject["pii_tokens"])])
    mapping = await _mapped(connection, found)
    status = await connection.execute(sql.replace_tokens, user_id)
    await connection.executemany(
        query("erase_reject"),
        [
            (r["message_id"], remapped(None, r["pii_tokens"], mapping)[1], tombstone())
            for r in rejects
        ],
    )
    await _enter(connection, masker, mapping, [Holder(user, user_id, t) for t in found])
    in_use = {r["token"] for r in await connection.fetch(sql.tokens_in_use, found)}
    gone = [token for token in found if token not in in_use]
    vaulted = await _erase_everywhere(connection, gone)
    await record(connection, request, "forget", list(mapping.values()), f"user {user[:16]}")
    return Erased(
        tokens=len(found),
        vault_rows=len(vaulted),
        rows=int(status.split()[-1]),
        rejects=len(rejects),
        unvaulted=len(gone) - len(vaulted),
        shared=len(in_use),
    )


async def _forget_tokens(
    connection: Any, masker: HmacMasker, sql: Statements, request: Request, tokens: Sequence[str]
) -> Erased:
    wanted = _live(tokens)
    mapping = await _mapped(connection, wanted)
    holders = await connection.fetch(sql.token_holders)
    rejects = await connection.fetch(query("rejects_with_tokens"))
    await _enter(connection, masker, mapping, _holders(masker, holders, rejects, mapping))
    status = await connection.execute(sql.replace_tokens, None)
    if rejects:
        await connection.executemany(
            query("rewrite_reject"), [_erased(reject, mapping) for reject in rejects]
        )
    vaulted = await _erase_everywhere(connection, wanted)
    held = {r["token"] for r in holders} | {t for r in rejects for t in r["pii_tokens"]}
    found = [token for token in wanted if token in held or token in vaulted]
    await record(connection, request, "forget", [mapping[token] for token in found])
    return Erased(
        tokens=len(found),
        vault_rows=len(vaulted),
        rows=int(status.split()[-1]),
        rejects=len(rejects),
        unvaulted=len([token for token in found if token not in vaulted]),
        # tombstones (erased already) and tokens nothing held
        not_found=tuple(token for token in dict.fromkeys(tokens) if token not in found),
    )


def _live(tokens: Iterable[str]) -> list[str]:
    return [token for token in dict.fromkeys(tokens) if not is_tombstone(token)]


async def _mapped(connection: Any, tokens: Sequence[str]) -> dict[str, str]:
    """A tombstone for each token, in the transaction's token map."""
    mapping = {token: tombstone() for token in tokens}
    await connection.copy_records_to_table(
        "ingestor_token_map", records=list(mapping.items()), columns=("old", "new")
    )
    return mapping


async def _user_rejects(connection: Any, user_id: str, user: str) -> list[Any]:
    written = orjson.dumps(user_id).decode()[1:-1]  # the id as it stands in a JSON body
    return [
        reject
        for reject in await connection.fetch(query("user_rejects"), user, written)
        if reject["user_digest"] == user or _body_user(reject["body"]) == user_id
    ]


def _body_user(body: str | None) -> str | None:
    """The user_id a kept body names, as `forget --user-id` is given it."""
    try:
        event = orjson.loads(body) if body is not None else None
    except orjson.JSONDecodeError:
        return None
    return user_id_text(event.get("user_id")) if isinstance(event, dict) else None


def _holders(
    masker: HmacMasker, rows: Sequence[Any], rejects: Sequence[Any], mapping: dict[str, str]
) -> list[Holder]:
    """Everyone whose rows or rejects hold an erased token."""
    found = [Holder(masker.digest_user(r["user_id"]), r["user_id"], r["token"]) for r in rows]
    for reject in rejects:
        if reject["user_digest"] is not None:
            user_id = _body_user(reject["body"])
            found.extend(
                Holder(reject["user_digest"], user_id, token)
                for token in reject["pii_tokens"]
                if token in mapping
            )
    return found


async def _enter(
    connection: Any, masker: HmacMasker, mapping: dict[str, str], holders: Sequence[Holder]
) -> None:
    """Enter each (user, token) pair in the erasure ledger with the token's tombstone."""
    if not holders:
        return
    await connection.execute(
        query("erasure_record"),
        [masker.digest_erased(h.user_digest, h.token) for h in holders],
        [mapping[h.token] for h in holders],
        [h.user_id for h in holders],
        masker.key_id,
    )


async def _erase_everywhere(connection: Any, tokens: Sequence[str]) -> set[str]:
    """Values no row or reject holds any more: their vault rows go, and the audit trail's
    earlier rows name their tombstones. Returns the tokens whose vault row was deleted."""
    await connection.execute(query("keep_in_token_map"), list(tokens))
    await connection.execute(query("replace_audit_tokens"))
    return {r["token"] for r in await connection.fetch(query("delete_vault"), list(tokens))}


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
