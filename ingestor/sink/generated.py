"""The SQL that names user_logins' loaded or PII columns, generated from the table's
registry (`ingestor/table.py`) instead of kept in `sql/*.sql`.

Generated rather than kept in files checked against the registry: a later issue makes
the merge's conflict target `(create_date, message_id)` on a partitioned table, so the
target is a parameter here; and a PII column added to the registry reaches every
statement that must treat it as PII (keep its tombstone on a redelivery, be found,
erased and rekeyed) with nothing else to edit. `statements(table)` builds them once per
(table, conflict target); `LOGINS` are user_logins', built at import. What is
interpolated is the registry's own names (checked to be plain identifiers when it is
declared), never input.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ingestor.table import TOMBSTONE_PREFIX, USER_LOGINS, Table

STAGING_TABLE = "ingestor_staging"
_ERASED = f"'{TOMBSTONE_PREFIX}%'"  # LIKE pattern of a tombstone


@dataclass(frozen=True, slots=True)
class Statements:
    """One table's generated SQL; each field's docstring is in `statements`."""

    staging: str
    merge: str
    tombstone_staged: str
    user_tokens: str
    token_holders: str
    tokens_in_use: str
    replace_tokens: str
    rekey_rows: str
    unvaulted_rows: str
    create_partitioned: str


@cache
def statements(table: Table = USER_LOGINS, conflict: tuple[str, ...] | None = None) -> Statements:
    """The table's statements; the merge's conflict target is `conflict`, else its key.

    - staging: per connection, the COPY target, with exactly the columns ingestor loads,
      typed as in the table (a value the target refuses is refused here too); its other
      columns (an id, a loaded_at) keep their own defaults. Emptied at every commit.
    - merge: see `_merge`.
    - tombstone_staged: staged rows whose user's value was erased take that value's
      tombstone before the merge ($1 message ids, then one array per PII column).
    - user_tokens: every token standing in user $1's rows, tombstones excluded.
    - token_holders: whose rows hold a token of ingestor_token_map: (user_id, token).
    - tokens_in_use: which of the tokens $1 a row or a reject still holds.
    - replace_tokens: every token of ingestor_token_map in the table takes its new value,
      all PII columns in one statement (one pass); with a user id ($1), that user's rows
      only: a value two users share is erased for the one who asked.
    - rekey_rows: rewrite the tokens of the rows in blocks [$1, $2) (a TID range scan)
      through ingestor_rekey_map: one pass over the table for the whole rotation. A row
      rewritten moves to a later block, where its new tokens match nothing in the map.
    - unvaulted_rows: rows holding a token with no vault entry (loaded before the vault
      was on): rekey cannot recompute them. Tombstones are not counted.
    - create_partitioned: the table range-partitioned by its date, when there is none
      yet (`migrate --partition-by`): its columns as migration 0001 makes them, the key
      last.
    """
    return Statements(
        staging=_staging(table),
        merge=_merge(table, conflict or (table.key,)),
        tombstone_staged=_tombstone_staged(table),
        user_tokens=_user_tokens(table),
        token_holders=_token_holders(table),
        tokens_in_use=_tokens_in_use(table),
        replace_tokens=_replace_tokens(table),
        rekey_rows=_rekey_rows(table),
        unvaulted_rows=_unvaulted_rows(table),
        create_partitioned=_create_partitioned(table),
    )


def _create_partitioned(table: Table) -> str:
    ordered = [c for c in table.columns if c.name != table.key]
    ordered += [c for c in table.columns if c.name == table.key]
    columns = ",\n".join(f"    {c.name} {c.type}" for c in ordered)
    return (
        f"CREATE TABLE IF NOT EXISTS {table.name}(\n{columns}\n) PARTITION BY RANGE ({table.date})"
    )


def _staging(table: Table) -> str:
    return (
        f"CREATE TEMP TABLE IF NOT EXISTS {STAGING_TABLE} ON COMMIT DELETE ROWS AS\n"
        f"SELECT {', '.join(table.column_names)}\n"
        f"FROM {table.name}\n"
        "WITH NO DATA"
    )


def _merge(table: Table, target: tuple[str, ...]) -> str:
    """Upsert the staged batch on `target`, returning the counts inserted and replaced.

    ORDER BY the key takes row locks in key order, so concurrent writers (or consumers)
    merging overlapping batches cannot deadlock. xmax = 0 on the returned row means it was
    inserted, not updated (on a table that is not partitioned). A message that was
    rejected in an earlier delivery (a constraint since dropped) leaves the rejects table:
    every message is in one table, once. A tombstone in a PII column of the row a
    redelivery replaces stays: that value was erased (forget), whatever the redelivered
    message carries."""
    columns = ", ".join(table.column_names)
    updates = ",\n        ".join(
        _kept_tombstone(name) if name in table.pii_columns else f"{name} = EXCLUDED.{name}"
        for name in table.column_names
        if name not in target
    )
    merged = f"""merged AS (
    INSERT INTO {table.name} AS t ({columns})
    SELECT {columns}
    FROM {STAGING_TABLE}
    ORDER BY {table.key}
    ON CONFLICT ({", ".join(target)}) DO UPDATE SET
        {updates}
    RETURNING {"(t.xmax = 0) AS inserted" if target == (table.key,) else "1"}
),
unrejected AS (
    DELETE FROM ingestor_rejects r
    USING {STAGING_TABLE} s
    WHERE r.message_id = s.{table.key}
)"""
    if target == (table.key,):
        return f"""WITH {merged}
SELECT count(*) FILTER (WHERE inserted) AS inserted,
       count(*) FILTER (WHERE NOT inserted) AS replaced
FROM merged"""
    # A partitioned table cannot return xmax ("cannot retrieve a system column in this
    # context"): the rows replaced are those the statement's snapshot already holds (a
    # copy committing the same message meanwhile is counted as inserted; only the counts
    # can differ, never the rows). Looked up row by row (LATERAL ... LIMIT 1: one index
    # probe in the one partition of its date), never by a join the planner would hash
    # over every partition.
    held = " AND ".join(f"u.{name} = s.{name}" for name in target)
    return f"""WITH {merged},
held AS (
    SELECT count(*) AS n
    FROM {STAGING_TABLE} s
    CROSS JOIN LATERAL (SELECT 1 FROM {table.name} u WHERE {held} LIMIT 1) found
)
SELECT (SELECT count(*) FROM merged) - held.n AS inserted, held.n AS replaced
FROM held"""


def _kept_tombstone(column: str) -> str:
    return (
        f"{column} = CASE WHEN t.{column} LIKE {_ERASED} THEN t.{column}\n"
        f"            ELSE EXCLUDED.{column} END"
    )


def _tombstone_staged(table: Table) -> str:
    arrays = ", ".join(f"${i}::varchar[]" for i in range(1, len(table.pii) + 2))
    sets = ",\n    ".join(f"{c} = coalesce(h.{c}, s.{c})" for c in table.pii_columns)
    return (
        f"UPDATE {STAGING_TABLE} s\n"
        f"SET {sets}\n"
        f"FROM unnest({arrays}) AS h({', '.join((table.key, *table.pii_columns))})\n"
        f"WHERE s.{table.key} = h.{table.key}"
    )


def _user_tokens(table: Table) -> str:
    union = "\n    UNION ALL\n    ".join(
        f"SELECT {c} AS token FROM {table.name} WHERE user_id = $1" for c in table.pii_columns
    )
    return (
        f"SELECT DISTINCT token FROM (\n    {union}\n) t\n"
        f"WHERE token IS NOT NULL AND token NOT LIKE {_ERASED}"
    )


def _token_holders(table: Table) -> str:
    values = ", ".join(f"(u.{c})" for c in table.pii_columns)
    return (
        "SELECT DISTINCT u.user_id, t.token\n"
        f"FROM {table.name} u,\n"
        f"     LATERAL (VALUES {values}) AS t(token)\n"
        f"WHERE {_any_in(table, 'ingestor_token_map')}\n"
        "  AND t.token IN (SELECT old FROM ingestor_token_map)"
    )


def _tokens_in_use(table: Table) -> str:
    rows = "\n    UNION ALL\n    ".join(
        f"SELECT {c} AS token FROM {table.name} WHERE {c} = ANY($1::varchar[])"
        for c in table.pii_columns
    )
    return (
        f"SELECT DISTINCT token FROM (\n    {rows}\n    UNION ALL\n"
        "    SELECT t.token FROM ingestor_rejects r, unnest(r.pii_tokens) AS t(token)\n"
        "    WHERE r.pii_tokens && $1::varchar[] AND t.token = ANY($1::varchar[])\n"
        ") used"
    )


def _replace_tokens(table: Table) -> str:
    return (
        f"{_remapped(table, 'ingestor_token_map')}\n"
        "WHERE ($1::varchar IS NULL OR u.user_id = $1)\n"
        f"  AND {_any_in(table, 'ingestor_token_map')}"
    )


def _rekey_rows(table: Table) -> str:
    return (
        f"{_remapped(table, 'ingestor_rekey_map')}\n"
        "WHERE u.ctid >= format('(%s,0)', $1::bigint)::tid\n"
        "  AND u.ctid < format('(%s,0)', $2::bigint)::tid\n"
        f"  AND {_any_in(table, 'ingestor_rekey_map')}"
    )


def _remapped(table: Table, mapping: str) -> str:
    """UPDATE setting each PII column to its token's new value in `mapping`, if any."""
    sets = ",\n    ".join(
        f"{c} = coalesce((SELECT m.new FROM {mapping} m WHERE m.old = u.{c}), u.{c})"
        for c in table.pii_columns
    )
    return f"UPDATE {table.name} u\nSET {sets}"


def _any_in(table: Table, mapping: str) -> str:
    """Whether a row holds a token of `mapping` in any PII column."""
    held = "\n       OR ".join(f"u.{c} IN (SELECT old FROM {mapping})" for c in table.pii_columns)
    return f"({held})"


def _unvaulted_rows(table: Table) -> str:
    unvaulted = "\n   OR ".join(
        f"(u.{c} IS NOT NULL AND u.{c} NOT LIKE {_ERASED}\n"
        f"       AND NOT EXISTS (SELECT 1 FROM pii_vault v WHERE v.token = u.{c}))"
        for c in table.pii_columns
    )
    return f"SELECT count(*) FROM {table.name} u\nWHERE {unvaulted}"


LOGINS = statements()
