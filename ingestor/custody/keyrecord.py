"""The record of the masking key the tables' tokens are made with (`ingestor_masking_key`).

Tokens are HMACs under INGESTOR_HMAC_KEY: loaded under another key, equal values would no
longer give equal tokens, and analysts' joins and counts would split silently. So the
first service to start records its key's public id (`hk-…`); a copy started with another
key stops with exit 2 naming both, and one started while `ingestor rekey` rotates the key
waits for the rotation to end. `rekey` moves the record when it finishes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ingestor.errors import ConfigError
from ingestor.settings import env_name
from ingestor.sink.queries import query
from ingestor.terminal import printable
from ingestor.transform.masking import mask_key_id

log = logging.getLogger("ingestor")
ROTATION_POLL_SECONDS = 5.0


def mismatch(ours: str, recorded: str) -> ConfigError:
    return ConfigError(
        env_name("hmac_key"),
        f"is {ours} but user_logins was loaded with {printable(recorded)}: set the right "
        "key, or rotate with `ingestor rekey`",
    )


async def claim(connection: Any, key: bytes, poll: float = ROTATION_POLL_SECONDS) -> str:
    """Record `key` if no key is recorded yet; raise `ConfigError` if another is. Waits
    while a rotation is under way. Returns the key's id."""
    ours = mask_key_id(key)
    await _wait_for_rotation(connection, ours, poll)
    await connection.execute(query("masking_key_claim"), ours)
    recorded = await connection.fetchrow(query("masking_key"))
    if recorded["mask_key_id"] != ours:
        raise mismatch(ours, recorded["mask_key_id"])
    return ours


async def _wait_for_rotation(connection: Any, ours: str, poll: float) -> None:
    told = False
    while (state := await connection.fetchrow(query("rekey_state"))) is not None:
        if not told:
            log.warning(
                "a rotation of the masking key to %s is under way (`ingestor rekey`): "
                "waiting for it to finish before loading with %s",
                printable(state["mask_key_id"]),
                ours,
                extra={"event": "rotation_wait", "to": state["mask_key_id"]},
            )
            told = True
        await asyncio.sleep(poll)


async def verify(connection: Any, key_id: str, *also: str) -> None:
    """Raise `ConfigError` if a key is recorded and it is neither `key_id` nor one of
    `also` (rekey may run again once its rotation has moved the record)."""
    recorded = await connection.fetchrow(query("masking_key"))
    if recorded is not None and recorded["mask_key_id"] not in (key_id, *also):
        raise mismatch(key_id, recorded["mask_key_id"])


async def check(connection: Any, key: bytes) -> str:
    """`check`'s line on the key, without recording anything; raises on a mismatch."""
    ours = mask_key_id(key)
    state = await connection.fetchrow(query("rekey_state"))
    if state is not None:  # this key must be the one rotated to, or the one rotated from
        await verify(connection, ours, state["mask_key_id"])
        target = printable(state["mask_key_id"])
        return f"masking key {ours}: a rotation to {target} is under way (rekey)"
    recorded = await connection.fetchrow(query("masking_key"))
    if recorded is None:
        return f"masking key {ours} (none recorded yet: the first run records it)"
    if recorded["mask_key_id"] != ours:
        raise mismatch(ours, recorded["mask_key_id"])
    return f"masking key {ours}, the one user_logins was loaded with"
