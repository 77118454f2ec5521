"""`ingestor rekey`: rotate the HMAC key.

Every token is recomputed from the vault's plaintext (opened with the private key) under
the new key and rewritten everywhere, in four phases, each a series of short
transactions whose progress is recorded in `ingestor_rekey_state`:

1. map: the vault is read in pages; each entry is opened and checked against its token
   under the current key (an entry that does not make its token is left where it is,
   and its rows keep their tokens: a forged value must not become their new token), and
   its new token, with the value sealed again bound to it, goes to `ingestor_rekey_map`
   (one pass over the vault);
2. rows: `user_logins` is rewritten in ranges of blocks through that map (one pass over
   the table, however large the vault);
3. rejects: bodies, token lists and keyed digests, in pages; then the audit trail;
4. vault: its rows move to their new tokens, page by page, leaving the map empty.

An interrupted run resumes at the phase and position it had reached; a run after a
finished one finds nothing under another key and changes nothing. Run it with the
service stopped (or drained): rows loaded meanwhile under the old key would keep their
old tokens. One rotation runs at a time (an advisory lock).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ingestor.custody.audit import Request, record
from ingestor.custody.tombstones import remapped
from ingestor.custody.vault import Checker, EntryRefused, Opener, framed
from ingestor.errors import PermanentError
from ingestor.sink.generated import LOGINS, Statements, statements
from ingestor.sink.queries import query
from ingestor.table import USER_LOGINS, Table
from ingestor.terminal import printable
from ingestor.transform.masking import HmacMasker, mask_key_id
from ingestor.transform.rejects import user_id_text
from ingestor.transform.unwrap import event_in

log = logging.getLogger("ingestor")
BLOCKS_PER_RANGE = 2_000  # about 16 MB of user_logins per transaction
REKEY_LOCK = "ingestor/rekey"  # the advisory lock's name: one rotation, and no forget beside it


class RekeyRefused(PermanentError):
    """The rotation cannot start (or resume) as asked."""


@dataclass(frozen=True, slots=True)
class Rekeyed:
    values: int
    rows: int
    rejects: int
    unvaulted_rows: int  # rows whose tokens have no vault entry: left as they were
    refused_entries: int = 0  # vault entries that did not match their tokens: left as they were
    older_erasures: int = 0  # ledger entries under an earlier key: they no longer match


@dataclass(frozen=True, slots=True)
class Rotation:
    """One rotation's tools: the opener of the vault, the checker of its entries under the
    current key, the new key's masker and id."""

    opener: Opener
    checker: Checker
    masker: HmacMasker  # the new key's, over the table's PII fields
    new_id: str
    batch_size: int
    sql: Statements = LOGINS  # the table's generated statements


async def rekey(
    connection: Any,
    opener: Opener,
    checker: Checker,
    new_key: bytes,
    request: Request,
    *,
    batch_size: int = 10_000,
    accept_unvaulted: bool = False,
    on_batch: Callable[[int], None] = lambda done: None,
    table: Table = USER_LOGINS,
) -> Rekeyed:
    """Rotate to `new_key` every token of `table`'s PII fields, wherever it stands."""
    masker = HmacMasker(new_key, table)
    rotation = Rotation(
        opener, checker, masker, mask_key_id(new_key), batch_size, statements(table)
    )
    if not await connection.fetchval(query("rekey_lock"), REKEY_LOCK):
        raise RekeyRefused("another rekey is running on this database")
    phase, position = await _start_or_resume(connection, rotation, request, accept_unvaulted)
    values = rows = rejects = 0
    if phase == "map":
        values = await _map_phase(connection, rotation, position, on_batch)
        phase, position = "rows", "0"
        if not await connection.fetchval(query("rekey_map_size")):
            phase = "vault"  # nothing under another key: nothing to rewrite
    if phase == "rows":
        rows = await _rows_phase(connection, rotation, int(position or 0))
        phase, position = "rejects", ""
    if phase == "rejects":
        rejects = await _rejects_phase(connection, rotation, position)
    await _vault_phase(connection, rotation)
    unvaulted = int(await connection.fetchval(rotation.sql.unvaulted_rows))
    refused = int(await connection.fetchval(query("rekey_refused_entries"), rotation.new_id))
    older = int(await connection.fetchval(query("erasures_under_other_keys"), rotation.new_id))
    detail = f"done: to {rotation.new_id}, {values} values, {rows} rows, {rejects} rejects"
    await record(connection, request, "rekey", [], detail + f", {refused} entries refused")
    return Rekeyed(values, rows, rejects, unvaulted, refused, older)


async def _start_or_resume(
    connection: Any, rotation: Rotation, request: Request, accept_unvaulted: bool
) -> tuple[str, str]:
    """(phase, position) to go on from: a rotation already under way to this key resumes;
    one to another key must be finished first. A service still loading would keep
    writing tokens under the old key: it must be stopped first (a copy started during the
    rotation waits for it to end)."""
    if running := int(await connection.fetchval(query("service_connections"))):
        raise RekeyRefused(
            f"{running} connections of a running ingestor service are open on this database: "
            "stop every copy of the service before rotating the key (they would go on "
            "loading tokens under the old key); a copy started during the rotation waits"
        )
    state = await connection.fetchrow(query("rekey_state"))
    if state is not None:
        if state["mask_key_id"] != rotation.new_id:
            raise RekeyRefused(
                f"a rotation to {printable(state['mask_key_id'])} is unfinished: run rekey "
                "with that key again to finish it first"
            )
        log.info("resuming the rotation at its %s phase", state["phase"])
        return str(state["phase"]), str(state["position"])
    unvaulted = int(await connection.fetchval(rotation.sql.unvaulted_rows))
    if unvaulted and not accept_unvaulted:
        raise RekeyRefused(
            f"{unvaulted} rows hold tokens with no vault entry (loaded while the vault was "
            "off): they would keep tokens under the old key. Pass --accept-unvaulted to "
            "rotate anyway"
        )
    async with connection.transaction():
        await connection.execute(query("rekey_start"))
        await connection.execute(query("rekey_begin"), rotation.new_id)
        await record(connection, request, "rekey", [], f"start: to {rotation.new_id}")
    return "map", ""


async def _advance(connection: Any, rotation: Rotation, phase: str, position: str) -> None:
    await connection.execute(query("rekey_advance"), rotation.new_id, phase, position)


async def _map_phase(
    connection: Any, rotation: Rotation, after: str, on_batch: Callable[[int], None]
) -> int:
    """Phase 1: the new token of every vault value not yet under the new key, and the value
    sealed again for it; entries that do not match their tokens are left out."""
    done = 0
    while page := await connection.fetch(
        query("rekey_vault_page"), rotation.new_id, after, rotation.batch_size
    ):
        mapped = [item for row in page if (item := _mapped(row, rotation)) is not None]
        after = page[-1]["token"]
        async with connection.transaction():
            if mapped:
                await connection.execute(query("rekey_map_insert"), *zip(*mapped, strict=True))
            await _advance(connection, rotation, "map", after)
        done += len(mapped)
        on_batch(done)
    await _advance(connection, rotation, "rows", "0")
    return done


async def _rows_phase(connection: Any, rotation: Rotation, start: int) -> int:
    """Phase 2: user_logins, one range of blocks per transaction."""
    end = int(await connection.fetchval(query("rekey_blocks")))
    changed = 0
    for first in range(start, end + 1, BLOCKS_PER_RANGE):
        last = first + BLOCKS_PER_RANGE
        async with connection.transaction():
            status = await connection.execute(rotation.sql.rekey_rows, first, last)
            await _advance(connection, rotation, "rows", str(last))
        changed += int(status.split()[-1])
    await _advance(connection, rotation, "rejects", "")
    return changed


async def _rejects_phase(connection: Any, rotation: Rotation, after: str) -> int:
    """Phase 3: rejects (bodies, token lists, digests) in pages, then the audit trail."""
    changed = 0
    while page := await connection.fetch(query("rekey_rejects_page"), after, rotation.batch_size):
        tokens = list({token for reject in page for token in reject["pii_tokens"]})
        mapping = dict(await connection.fetch(query("rekey_map_lookup"), tokens))
        updates = [_rewritten(reject, mapping, rotation) for reject in page]
        after = page[-1]["message_id"]
        async with connection.transaction():
            await connection.executemany(query("rekey_reject_update"), updates)
            await _advance(connection, rotation, "rejects", after)
        changed += len(updates)
    async with connection.transaction():
        await connection.execute(query("rekey_audit"))
        await _advance(connection, rotation, "vault", "")
    return changed


async def _vault_phase(connection: Any, rotation: Rotation) -> None:
    """Phase 4: vault rows to their new tokens, emptying the map; then the state goes."""
    while await connection.fetchval(
        query("rekey_vault_move"), rotation.new_id, rotation.batch_size
    ):
        pass
    await connection.execute(query("rekey_finish"), rotation.new_id)


def _mapped(row: Any, rotation: Rotation) -> tuple[str, str, bytes] | None:
    """(old token, new token, the value sealed for the new token); None for an entry that
    does not match its token (it stays where it is, and is counted at the end)."""
    try:
        value = rotation.opener.open_entry(row, rotation.checker)
    except EntryRefused as refused:
        log.warning("vault entry left under its old token: %s", refused)
        return None
    field = row["field"]  # one the checker knows: its token was remade under its domain
    new = rotation.masker.masking(field)(value)
    sealed = rotation.opener.sealer(row["key_id"]).seal(
        framed(field, new, value.encode("utf-8", "surrogatepass"))
    )
    return row["token"], new, sealed


def _rewritten(reject: Any, mapping: dict[str, str], rotation: Rotation) -> tuple[Any, ...]:
    """A reject with its tokens mapped and its keyed digests redone under the new key."""
    body, tokens = remapped(reject["body"], reject["pii_tokens"], mapping)
    original = (
        None
        if reject["sealed_body"] is None
        else rotation.opener.open(reject["sealed_body"], reject["key_id"])
    )
    digest = _digest(reject, body, original, rotation)
    return reject["message_id"], body, tokens, digest, _user_digest(body, original, rotation)


def _digest(
    reject: Any, body: str | None, original: bytes | None, rotation: Rotation
) -> str | None:
    """What the writer would digest under the new key: the original body (sealed), or a
    refused row's masked body; None keeps the digest there is (nothing to redo it from)."""
    if original is not None:
        return rotation.masker.digest_body(original)
    if reject["body_kind"] == "row" and body is not None:
        return rotation.masker.digest_body(body.encode())
    return None


def _user_digest(body: str | None, original: bytes | None, rotation: Rotation) -> str | None:
    """The user's digest under the new key, from the original body (the event inside it,
    when it came in an SNS or EventBridge envelope) or else the kept one (which keeps a
    valid user_id as sent); None when neither names a user, or when the digest cannot be
    redone (an old-key digest would tie the reject to nobody)."""
    for text in (original, body):
        try:
            event = orjson.loads(text) if text is not None else None
        except orjson.JSONDecodeError:
            continue
        event = event_in(event) if isinstance(event, dict) else None
        user_id = user_id_text(event.get("user_id")) if event is not None else None
        if user_id is not None:
            return rotation.masker.digest_user(user_id)
    return None
