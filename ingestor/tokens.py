"""Replacing tokens wherever they stand: user_logins, the rejects' redacted bodies and
their token lists, and the audit trail. Erasure maps a token to a random tombstone; key
rotation maps it to the token under the new key. Runs inside the caller's transaction."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any

from ingestor.queries import query

TOMBSTONE_PREFIX = "erased:"

# For a reject being rewritten: (its sealed body, key id) -> (sealed body to keep, digest to
# set or None to keep the current one).
RejectBodyPolicy = Callable[[bytes | None, str | None], tuple[bytes | None, str | None]]


def tombstone() -> str:
    """A random token: unlinkable to the value, so a key holder cannot test a guess."""
    return TOMBSTONE_PREFIX + secrets.token_hex(16)


def is_tombstone(token: str) -> bool:
    return token.startswith(TOMBSTONE_PREFIX)


async def replace_tokens(
    connection: Any, mapping: Mapping[str, str], body_policy: RejectBodyPolicy
) -> tuple[int, int]:
    """Replace every mapped token; (rows changed, rejects changed)."""
    await connection.execute(query("token_map"))
    await connection.copy_records_to_table(
        "ingestor_token_map", records=list(mapping.items()), columns=("old", "new")
    )
    status = await connection.execute(query("replace_login_tokens"))
    rows = int(status.split()[-1])
    await connection.execute(query("replace_audit_tokens"))
    rejects = await connection.fetch(query("rejects_with_tokens"))
    updates = [_rewritten(reject, mapping, body_policy) for reject in rejects]
    if updates:
        await connection.executemany(query("rewrite_reject"), updates)
    return rows, len(updates)


def _rewritten(
    reject: Any, mapping: Mapping[str, str], body_policy: RejectBodyPolicy
) -> tuple[Any, ...]:
    body: str | None = reject["body"]
    tokens = [mapping.get(token, token) for token in reject["pii_tokens"]]
    for old in reject["pii_tokens"]:
        if body is not None and old in mapping:
            body = body.replace(old, mapping[old])
    sealed, digest = body_policy(reject["sealed_body"], reject["key_id"])
    return reject["message_id"], body, tokens, sealed, digest
