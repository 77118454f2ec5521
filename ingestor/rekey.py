"""`ingestor rekey`: rotate the HMAC key.

Every token is recomputed from the vault's plaintext (opened with the private key) under
the new key, and rewritten in `user_logins`, the rejects and the vault, one transaction per
batch of vault rows. Vault rows carry the id of the key their token was made with, so a
batch is done exactly when its rows carry the new id: an interrupted run resumes where it
stopped, and a second run finds nothing to do. Run it with the service stopped (or
drained): rows loaded meanwhile under the old key would keep their old tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ingestor.audit import Request, record
from ingestor.keys import mask_key_id
from ingestor.masking import HmacMasker
from ingestor.queries import query
from ingestor.tokens import replace_tokens
from ingestor.vault import Opener

log = logging.getLogger("ingestor")


@dataclass(frozen=True, slots=True)
class Rekeyed:
    values: int
    rows: int
    rejects: int
    unvaulted_rows: int  # rows whose tokens have no vault entry: left as they were


async def rekey(
    connection: Any,
    opener: Opener,
    new_key: bytes,
    request: Request,
    *,
    batch_size: int = 10_000,
    on_batch: Callable[[int], None] = lambda done: None,
) -> Rekeyed:
    new_id = mask_key_id(new_key)
    masker = HmacMasker(new_key)
    await record(connection, request, "rekey", [], f"start: to {new_id}")
    values = rows = rejects = 0
    while batch := await _next_batch(connection, opener, masker, new_id, batch_size):
        values += batch[0]
        rows += batch[1]
        rejects += batch[2]
        on_batch(values)
    await _redigest_rejects(connection, opener, masker)
    unvaulted = int(await connection.fetchval(query("unvaulted_rows")))
    detail = f"done: to {new_id}, {values} values, {rows} rows, {rejects} rejects"
    await record(connection, request, "rekey", [], detail)
    return Rekeyed(values, rows, rejects, unvaulted)


async def _next_batch(
    connection: Any, opener: Opener, masker: HmacMasker, new_id: str, size: int
) -> tuple[int, int, int] | None:
    """Rekey one batch in one transaction; None when nothing is left."""
    async with connection.transaction():
        vault = await connection.fetch(query("vault_to_rekey"), new_id, size)
        if not vault:
            return None
        mapping = {row["token"]: _new_token(row, opener, masker) for row in vault}
        rows, rejects = await replace_tokens(connection, mapping, _keep_body)
        await connection.execute(query("move_vault_rows"), new_id)
    return len(vault), rows, rejects


def _new_token(row: Any, opener: Opener, masker: HmacMasker) -> str:
    plaintext = opener.open(row["sealed"], row["key_id"]).decode("utf-8", "surrogatepass")
    if row["field"] == "ip":
        return masker.mask_ip(plaintext)
    return masker.mask_device_id(plaintext)


def _keep_body(sealed: bytes | None, key_id: str | None) -> tuple[bytes | None, None]:
    return sealed, None  # digests are redone from the sealed bodies at the end


async def _redigest_rejects(connection: Any, opener: Opener, masker: HmacMasker) -> int:
    """Every reject's keyed body digest, recomputed under the new key from its sealed
    original (deterministic: running it again changes nothing). Returns how many."""
    rows = await connection.fetch(query("sealed_rejects"))
    updates = [
        (row["message_id"], masker.digest_body(opener.open(row["sealed_body"], row["key_id"])))
        for row in rows
    ]
    await connection.executemany(query("set_reject_digest"), updates)
    return len(updates)
