"""The erasure ledger, as the writer consults it: erased values stay erased.

`forget` records, for each user and each token it erased for them, a keyed digest of
the pair and the tombstone the token became (`ingestor_erasures`, never the token or the
value). In every batch's transaction the writer looks there for the batch's rows and
rejects: a row of that user carrying that token (a redelivered message, a DLQ drained
later, the same event sent again) is written with the tombstone instead, a reject of
theirs loses the value's token and its sealed body, and the value is not vaulted again
for them. A value erased for one user stays live for another user who shares it.

Cheap while there is little to check: the keyed digests are computed only for the rows
whose user falls in a bucket (16 bits of a hash of the user id) that some erased user
falls in, which PostgreSQL finds over the staging table; with nothing ever erased, it
computes nothing per row, and the look is one round trip. Rejects, rare, are checked by
the digest of their user. A shared advisory lock, taken by that look, keeps a `forget`
from committing between it and the batch's commit (forget takes it exclusively).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import orjson

from ingestor.custody.tombstones import is_tombstone, remapped, tombstone
from ingestor.models import LoginRow, Rejection, Settled, VaultEntry
from ingestor.ports import Digests
from ingestor.sink.generated import statements
from ingestor.sink.queries import query
from ingestor.table import USER_LOGINS, Table
from ingestor.transform.rejects import user_id_text

# pg_advisory_xact_lock key: writers take it shared, forget exclusively.
ERASURE_LOCK = 0x696E67657261736B  # "ingerask"
# Where an erased value stands in a batch: ("row", message id, PII column) or
# ("reject", message id, token).
Ref = tuple[str, str, str]


class ErasureLedger:
    """Implements `Settler` for the rows of `table`: each of its PII columns is checked."""

    def __init__(self, digests: Digests, table: Table = USER_LOGINS) -> None:
        self._digests = digests
        self._table = table
        self._sql = statements(table)

    def __repr__(self) -> str:
        return "ErasureLedger()"

    async def settle(
        self,
        connection: Any,
        rows: Sequence[LoginRow],
        rejects: Sequence[Rejection],
        vault: Sequence[VaultEntry],
    ) -> Settled:
        """Within the batch's transaction, after its rows are in the staging table: give
        erased values their tombstones (in staging, and in the rejects returned) and keep
        them out of the vault entries returned."""
        # Also takes the lock that keeps a forget from committing until this batch has.
        candidates = await connection.fetch(query("erasure_candidates"), ERASURE_LOCK)
        rejects = [self._tied(reject) for reject in rejects]
        wanted: dict[str, list[Ref]] = {}
        for digest, ref in [*self._row_refs(candidates), *self._reject_refs(rejects)]:
            wanted.setdefault(digest, []).append(ref)  # one user's value, in several places
        hits = dict(await connection.fetch(query("erasure_hits"), list(wanted))) if wanted else {}
        erased = {ref: stone for digest, stone in hits.items() for ref in wanted[digest]}
        if erased:
            await self._tombstone_rows(connection, erased)
            rejects = [_erased_reject(reject, erased) for reject in rejects]
        return Settled(rejects, _carried(vault, rows, rejects, erased, self._table))

    def _tied(self, reject: Rejection) -> Rejection:
        """A refused row's reject (its body the masked row) tied to its user, like any."""
        if reject.user_digest is not None or reject.body_kind != "row" or reject.body is None:
            return reject
        user_id = user_id_text(orjson.loads(reject.body).get("user_id"))
        digest = None if user_id is None else self._digests.digest_user(user_id)
        return dataclasses.replace(reject, user_digest=digest)

    def _row_refs(self, candidates: Sequence[Any]) -> list[tuple[str, Ref]]:
        """(digest, ("row", message id, column)) for each live token of the candidates."""
        found = []
        for row in candidates:
            user = self._digests.digest_user(row["user_id"])
            for column in self._table.pii_columns:
                token = row[column]
                if token is not None and not is_tombstone(token):
                    digest = self._digests.digest_erased(user, token)
                    found.append((digest, ("row", row["message_id"], column)))
        return found

    def _reject_refs(self, rejects: Sequence[Rejection]) -> list[tuple[str, Ref]]:
        """(digest, ("reject", message id, token)) for each live token of the rejects."""
        return [
            (
                self._digests.digest_erased(reject.user_digest, token),
                ("reject", reject.message_id, token),
            )
            for reject in rejects
            if reject.user_digest is not None
            for token in reject.pii_tokens
            if not is_tombstone(token)
        ]

    async def _tombstone_rows(self, connection: Any, erased: dict[Ref, str]) -> None:
        staged: dict[str, dict[str, str]] = {}
        for (kind, message_id, column), stone in erased.items():
            if kind == "row":
                staged.setdefault(message_id, {})[column] = stone
        if staged:
            ids = list(staged)
            stones = [[staged[i].get(c) for i in ids] for c in self._table.pii_columns]
            await connection.execute(self._sql.tombstone_staged, ids, *stones)


def _erased_reject(reject: Rejection, erased: dict[Ref, str]) -> Rejection:
    """The reject with its erased tokens replaced; its sealed body and keyed digest hold
    the erased value, so they go (a random digest keeps the column's promise of a value)."""
    mapping = {
        token: stone
        for (kind, message_id, token), stone in erased.items()
        if kind == "reject" and message_id == reject.message_id
    }
    if not mapping:
        return reject
    body, tokens = remapped(reject.body, reject.pii_tokens, mapping)
    return dataclasses.replace(
        reject,
        body=body,
        pii_tokens=tuple(tokens),
        sealed_body=None,
        key_id=None,
        body_digest=tombstone(),
    )


def _carried(
    vault: Sequence[VaultEntry],
    rows: Sequence[LoginRow],
    rejects: Sequence[Rejection],
    erased: dict[Ref, str],
    table: Table = USER_LOGINS,
) -> list[VaultEntry]:
    """The vault entries whose values this write's rows and rejects still carry. A batch
    split to isolate a refused row writes each part with every entry of the batch: an
    entry goes in with the part that carries its value, and a value erased in one part
    (for its user) is not vaulted by another. A value erased for one user is vaulted for
    another user's row that carries it."""
    if not vault:
        return []
    gone = {(message_id, column) for kind, message_id, column in erased if kind == "row"}
    live = {token for reject in rejects for token in reject.pii_tokens}
    key = table.column_names.index(table.key)
    for row in rows:
        live.update(token for column, token in table.filled(row) if (row[key], column) not in gone)
    return [entry for entry in vault if entry.token in live]
