"""The audit trail against a custodian who wants to rewrite it: append-only for every
role, the database user recorded whatever the client says, and a hash chain that
`verify` recomputes independently."""

from __future__ import annotations

import asyncpg
import pytest

from ingestor.custody.audit import AuditChainBroken, Request, chain_hash, record, verify
from ingestor.sink.queries import migrations, query
from ingestor.sink.schema import migrate

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

ALICE = Request.of("T-1", "alice")


async def fill(db: asyncpg.Connection, rows: int) -> None:
    for i in range(rows):
        await record(db, ALICE, "reveal", [f"{i:064x}"], f"row {i}")


async def test_rows_chain_and_name_the_session_user_whatever_the_insert_says(
    db: asyncpg.Connection,
) -> None:
    # Given rows written by the commands, and one by a custodian's own INSERT that names
    # someone else, a time in the past and a hash of its own choosing
    await fill(db, 3)
    await db.execute(
        "INSERT INTO pii_reveal_audit (actor, at, action, tokens, reason, seq, hash, prev_hash)"
        " VALUES ('the-intern', '2001-01-01', 'reveal', ARRAY['t1', 't2'], 'x', 99, 'h', 'p')"
    )
    # Then every row is chained in order, with the session user and the time of its
    # transaction, and its tokens in the side table
    rows = await db.fetch("SELECT * FROM pii_reveal_audit ORDER BY seq")
    me = await db.fetchval("SELECT session_user")
    assert [r["seq"] for r in rows] == [1, 2, 3, 4]
    assert {r["actor"] for r in rows} == {me}
    assert rows[3]["at"].year > 2001
    assert [r["tokens"] for r in rows] == [[]] * 4
    assert [r["token_count"] for r in rows] == [1, 1, 1, 2]
    prev = ""
    for row in rows:
        assert row["prev_hash"] == prev
        assert row["hash"] == chain_hash(row, prev)  # the database and Python agree
        prev = row["hash"]
    trail = await db.fetch("SELECT claimed_actor, tokens FROM pii_audit_trail ORDER BY seq")
    assert [tuple(r) for r in trail][2:] == [("alice", [f"{2:064x}"]), (None, ["t1", "t2"])]
    chain = await verify(db, page=2)
    assert (chain.rows, chain.head) == (4, prev)


@pytest.mark.parametrize(
    ("tamper", "found"),
    [
        ("UPDATE pii_reveal_audit SET reason = 'routine' WHERE seq = 3", "fields were changed"),
        ("UPDATE pii_reveal_audit SET actor = 'someone' WHERE seq = 2", "fields were changed"),
        ("UPDATE pii_reveal_audit SET token_count = 0 WHERE seq = 4", "fields were changed"),
        ("DELETE FROM pii_reveal_audit WHERE seq = 3", "rows 3 to 3 are missing"),
        ("UPDATE pii_reveal_audit SET seq = seq + 10 WHERE seq = 5", "rows 5 to 14 are missing"),
        (
            "UPDATE pii_reveal_audit SET at = at - interval '1 day', hash = 'x' WHERE seq = 2",
            "fields were changed",
        ),
    ],
)
async def test_a_rewrite_by_a_role_that_can_switch_the_guards_off_is_detected(
    db: asyncpg.Connection, tamper: str, found: str
) -> None:
    await fill(db, 5)
    assert (await verify(db)).rows == 5
    # The guards hold, even for the table's owner
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await db.execute(tamper)
    # When the owner switches them off for the rewrite
    await db.execute("ALTER TABLE pii_reveal_audit DISABLE TRIGGER USER")
    await db.execute(tamper)
    await db.execute("ALTER TABLE pii_reveal_audit ENABLE TRIGGER USER")
    # Then verify reports where
    with pytest.raises(AuditChainBroken, match=found):
        await verify(db)


async def test_a_row_rehashed_in_place_breaks_the_link_to_the_next(
    db: asyncpg.Connection,
) -> None:
    await fill(db, 4)
    row = await db.fetchrow("SELECT * FROM pii_reveal_audit WHERE seq = 2")
    forged = dict(row) | {"reason": "routine"}
    await db.execute("ALTER TABLE pii_reveal_audit DISABLE TRIGGER USER")
    await db.execute(
        "UPDATE pii_reveal_audit SET reason = 'routine', hash = $1 WHERE seq = 2",
        chain_hash(forged, row["prev_hash"]),
    )
    await db.execute("ALTER TABLE pii_reveal_audit ENABLE TRIGGER USER")
    with pytest.raises(AuditChainBroken, match=r"seq 3 .*previous row's hash"):
        await verify(db)


async def test_rows_written_before_the_chain_are_chained_by_the_migration(
    empty_database: str,
) -> None:
    # Given an audit trail written by the previous release (actor as the command said,
    # tokens in the row)
    db = await asyncpg.connect(empty_database)
    try:
        await db.execute(query("migrations_table"))
        for name, sql in migrations():
            if name <= "0004":
                await db.execute(sql)
                await db.execute(query("record_migration"), name)
        await db.execute(
            "INSERT INTO pii_reveal_audit (actor, action, tokens, reason)"
            " VALUES ('bob', 'reveal', ARRAY['a', 'b'], 'T-1'), ('carol', 'forget', '{}', 'T-2')"
        )
        # When it is migrated
        await migrate(db)
        # Then its rows keep what they said, name their tokens in the side table, and chain
        trail = await db.fetch(
            "SELECT seq, actor, claimed_actor, tokens, token_count FROM pii_audit_trail"
            " ORDER BY seq"
        )
        assert [tuple(r) for r in trail] == [
            (1, "bob", "bob", ["a", "b"], 2),
            (2, "carol", "carol", [], 0),
        ]
        assert (await verify(db)).rows == 2
        # And the next row written chains on
        await record(db, ALICE, "reveal", [])
        assert (await verify(db)).rows == 3
    finally:
        await db.close()
