"""The PII vault against the real servers: what the service seals, and the custody work
on it (reveal, forget, rekey, replay) with its audit trail."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import pytest
import pytest_asyncio

import ingestor.transform.rules
from ingestor.custody.audit import Request
from ingestor.custody.erasure import follow_erasures, forget
from ingestor.custody.keys import generate_key_pair
from ingestor.custody.ledger import ErasureLedger
from ingestor.custody.rekey import RekeyRefused, rekey
from ingestor.custody.replay import Replay, replay, summary
from ingestor.custody.reveal import reveal
from ingestor.custody.tombstones import TOMBSTONE_PREFIX
from ingestor.custody.vault import Checker, Opener, Sealer, VaultingMasker
from ingestor.demo.synthetic import generate
from ingestor.models import Envelope, WriteResult
from ingestor.observe.hooks import Stats
from ingestor.pipeline.service import run_service
from ingestor.ports import Masker
from ingestor.settings import Settings
from ingestor.sink.isolation import Batch, split_outcomes, vault_entries, write_isolating
from ingestor.sink.postgres import PostgresSink, create_pool
from ingestor.source.sqs import SqsQueue
from ingestor.table import canonical_ip
from ingestor.transform.masking import HmacMasker, mask_key_id
from ingestor.transform.transformer import Transformer
from tests.conftest import TEST_KEY, _create_database, _drop_database, with_database
from tests.fakes import SENT_MS
from tests.integration.helpers import expected_row, find_plaintext, plaintext_pii
from tests.pii import expect_same

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

KEY_A = TEST_KEY.encode()
KEY_B = b"the-new-hmac-key-after-rotation-0123456789"
ROW_COLUMNS = (
    "message_id, user_id, device_type, masked_ip, masked_device_id, locale, app_version,"
    " create_date"
)
# Values of the test's own: `generate` never draws an address with a 0 octet or outside
# 2001:db8::/32, and draws a given device id with odds of 1 in 10^9.
IP_X, IP_Y, IP_Z = "203.0.113.77", "203.0.113.78", "2001:db9::77"
DEVICE_X, DEVICE_Y1, DEVICE_Y2, DEVICE_Y3 = (
    "000-00-0001",
    "000-00-0002",
    "000-00-0003",
    "000-00-0004",
)


@dataclass(frozen=True)
class VaultKeys:
    private: bytes
    public: bytes

    @property
    def public_text(self) -> str:
        return base64.b64encode(self.public).decode()

    @property
    def opener(self) -> Opener:
        return Opener(self.private)

    def masker(self, hmac_key: bytes = KEY_A) -> VaultingMasker:
        return VaultingMasker(hmac_key, Sealer(self.public), 10_000)


@pytest.fixture
def keys() -> VaultKeys:
    return VaultKeys(*generate_key_pair())


REQUEST = Request.of("TICKET-1234", "alice")
CHECK_A = Checker(KEY_A)


def event(user_id: str, **fields: Any) -> str:
    body: dict[str, Any] = {"user_id": user_id, "app_version": "2.3.0", "device_type": "ios"}
    body.update(fields)
    return orjson.dumps(body).decode()


async def drain(settings: Settings) -> Stats:
    stats = Stats()
    await asyncio.wait_for(run_service(settings, asyncio.Event(), stats), 90)
    return stats


async def load(
    make_settings: Callable[..., Settings],
    queue: SqsQueue,
    keys: VaultKeys,
    bodies: list[str],
    **overrides: Any,
) -> tuple[Settings, dict[str, str]]:
    """Send `bodies`, drain them with the vault on; the settings and message id -> body."""
    ids = await queue.send(bodies)
    settings = make_settings(vault_public_key=keys.public_text, batch_size=100, **overrides)
    await drain(settings)
    return settings, dict(zip(ids, bodies, strict=True))


async def tokens_in_tables(db: asyncpg.Connection) -> tuple[set[str], set[str]]:
    rows = await db.fetch(
        "SELECT masked_ip AS t FROM user_logins UNION SELECT masked_device_id FROM user_logins"
    )
    rejects = await db.fetch("SELECT DISTINCT unnest(pii_tokens) AS t FROM ingestor_rejects")
    return {r["t"] for r in rows if r["t"] is not None}, {r["t"] for r in rejects}


async def vault_tokens(db: asyncpg.Connection) -> set[str]:
    return {r["token"] for r in await db.fetch("SELECT token FROM pii_vault")}


def valid_pii(bodies: Sequence[str]) -> tuple[set[str], set[str]]:
    """The canonical ips and the device ids of the valid events among `bodies`."""
    ips, devices = set(), set()
    for body in bodies:
        try:
            fields = ingestor.transform.rules.validate(orjson.loads(body))
        except (orjson.JSONDecodeError, ingestor.transform.rules.Invalid, AttributeError):
            continue
        ips |= {fields.ip} if fields.ip else set()
        devices |= {fields.device_id} if fields.device_id else set()
    return ips, devices


# --- what the service vaults -------------------------------------------------------------


async def test_every_distinct_value_is_vaulted_once(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    keys: VaultKeys,
) -> None:
    # Given a queue of events with repeated values, repeated messages and junk
    bodies = [e.body for e in generate(500, seed=21, junk_rate=0.1, repeat_rate=0.1)]
    # When the service drains it with the vault on
    await load(make_settings, sqs_queue, keys, bodies)
    # Then the vault holds one row per distinct token of the rows and the rejects
    in_rows, in_rejects = await tokens_in_tables(db)
    vaulted = await vault_tokens(db)
    assert await db.fetchval("SELECT count(*) FROM pii_vault") == len(in_rows | in_rejects)
    assert vaulted == in_rows | in_rejects
    assert in_rows <= vaulted
    assert len(in_rejects - in_rows) > 0  # rejects' values (a bad ip) are vaulted too
    # And each row names its keys, and its field matches the column the token stands in
    ids = await db.fetch("SELECT DISTINCT key_id, mask_key_id FROM pii_vault")
    assert [tuple(r) for r in ids] == [(Sealer(keys.public).key_id, mask_key_id(KEY_A))]
    ip_fields = await db.fetch(
        "SELECT DISTINCT v.field FROM pii_vault v JOIN user_logins u ON u.masked_ip = v.token"
    )
    assert [r["field"] for r in ip_fields] == ["ip"]
    # And every reject keeps its original body sealed to the vault key
    assert await db.fetchval("SELECT count(*) FROM ingestor_rejects WHERE sealed_body IS NULL") == 0


async def test_reveal_returns_the_original_values_and_is_audited(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    keys: VaultKeys,
) -> None:
    # Given a run of the service with the vault on
    bodies = [e.body for e in generate(300, seed=22, junk_rate=0.1, repeat_rate=0.1)]
    await load(make_settings, sqs_queue, keys, bodies)
    ip_tokens = [
        r["t"]
        for r in await db.fetch("SELECT DISTINCT masked_ip AS t FROM user_logins ORDER BY 1")
        if r["t"]
    ]
    device_tokens = [
        r["t"]
        for r in await db.fetch("SELECT DISTINCT masked_device_id AS t FROM user_logins ORDER BY 1")
        if r["t"]
    ]
    _, reject_tokens = await tokens_in_tables(db)
    # When every token of the run is revealed (one unknown token among them)
    wanted = [*ip_tokens, *device_tokens, *sorted(reject_tokens), "f" * 64]
    revealed = await reveal(db, keys.opener, CHECK_A, wanted, REQUEST)
    # Then each comes back in order, with its field and its canonical original value
    assert [r.token for r in revealed] == list(dict.fromkeys(wanted))
    by_token = {r.token: r for r in revealed}
    assert by_token["f" * 64].value is None
    assert "not in the vault" in str(by_token["f" * 64].problem)
    known = [r for r in revealed if r.token != "f" * 64]
    assert all(r.problem is None for r in known)
    expected_ips, expected_devices = valid_pii(bodies)
    expect_same({by_token[t].value for t in ip_tokens}, expected_ips, "revealed ips")
    expect_same({by_token[t].value for t in device_tokens}, expected_devices, "revealed ids")
    assert {by_token[t].field for t in ip_tokens} == {"ip"}
    assert {by_token[t].field for t in device_tokens} == {"device_id"}
    # And each value is the one its token was made from
    masker = HmacMasker(KEY_A)
    remade = [
        masker.mask_ip(str(r.value)) if r.field == "ip" else masker.mask_device_id(str(r.value))
        for r in known
    ]
    assert remade == [r.token for r in known]
    everything_sent = plaintext_pii(bodies)
    assert all(r.value in everything_sent for r in known)
    # And the reveal is on record: who (the database user, and whom they claimed to be),
    # why, which tokens
    audit = await db.fetch(
        "SELECT actor, claimed_actor, action, reason, tokens, at FROM pii_audit_trail"
    )
    assert len(audit) == 1
    assert tuple(audit[0])[:4] == (
        await db.fetchval("SELECT session_user"),
        "alice",
        "reveal",
        "TICKET-1234",
    )
    # (the unknown token is counted, not named: it could be an erased value's token)
    assert audit[0]["tokens"] == [t for t in dict.fromkeys(wanted) if t != "f" * 64]


async def test_no_plaintext_anywhere_not_even_in_bytea(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    keys: VaultKeys,
) -> None:
    # Given a run with the vault on, and a reveal (the audit table filled too)
    bodies = [e.body for e in generate(300, seed=23, junk_rate=0.1, repeat_rate=0.1)]
    await load(make_settings, sqs_queue, keys, bodies)
    tokens = [r["token"] for r in await db.fetch("SELECT token FROM pii_vault LIMIT 5")]
    await reveal(db, keys.opener, CHECK_A, tokens, REQUEST)
    # When every table and column is scanned, bytea as raw bytes and arrays as text
    pii = plaintext_pii(bodies)
    assert len(pii) > 100
    # Then no plaintext ip or device id is in any of them
    found = await find_plaintext(db, pii)
    assert found == []


async def test_the_plaintext_scan_sees_bytea_and_arrays(db: asyncpg.Connection) -> None:
    # Given values written where an older scan was blind: raw bytes and an array
    await db.execute("CREATE TABLE leak (b bytea, a varchar[], j jsonb)")
    await db.execute(
        "INSERT INTO leak VALUES ($1, $2, $3)",
        b"\x00\x01" + IP_X.encode() + b"\xff",
        ["x", DEVICE_X],
        orjson.dumps({"k": IP_Y}).decode(),
    )
    # Then the scan finds each of them
    found = await find_plaintext(db, {IP_X, DEVICE_X, IP_Y, "absent-value"})
    assert sorted(found) == ["leak.a", "leak.b", "leak.j"]


# --- forget ------------------------------------------------------------------------------


async def test_forget_by_token_erases_the_value_everywhere(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    keys: VaultKeys,
) -> None:
    # Given three rows and one reject that carry the address IP_X, among other traffic
    crafted = [event(f"user-{i}", ip=IP_X, device_id=f"000-01-000{i}") for i in range(3)]
    crafted.append(event("user-r", ip=IP_X, device_id=DEVICE_X, app_version="1.2.3.4"))
    bodies = [e.body for e in generate(100, seed=24, junk_rate=0.1, repeat_rate=0.1)]
    settings, _ = await load(make_settings, sqs_queue, keys, bodies + crafted)
    masker = HmacMasker(KEY_A)
    token, device_token = masker.mask_ip(IP_X), masker.mask_device_id(DEVICE_X)
    others = await db.fetch(
        f"SELECT {ROW_COLUMNS} FROM user_logins WHERE masked_ip <> $1 ORDER BY 1", token
    )
    assert token in await vault_tokens(db)
    # And a custodian revealed it once (the audit trail names the token)
    (before,) = await reveal(db, keys.opener, CHECK_A, [token], REQUEST)
    assert before.problem is None
    # When that value is forgotten
    erased = await forget(db, KEY_A, Request.of("DSR-42", "dpo"), tokens=[token])
    # Then its vault row is gone and a tombstone stands where its token stood
    assert (erased.tokens, erased.vault_rows, erased.rows, erased.rejects) == (1, 1, 3, 1)
    assert token not in await vault_tokens(db)
    assert await db.fetchval("SELECT count(*) FROM user_logins WHERE masked_ip = $1", token) == 0
    stones = await db.fetch(
        "SELECT DISTINCT masked_ip FROM user_logins WHERE masked_ip LIKE 'erased:%'"
    )
    assert len(stones) == 1
    stone = stones[0]["masked_ip"]
    assert stone.startswith(TOMBSTONE_PREFIX)
    assert await db.fetchval("SELECT count(*) FROM user_logins WHERE masked_ip = $1", stone) == 3
    # And the reject holds the tombstone, in its body and its token list, and no sealed body
    reject = await db.fetchrow(
        "SELECT body, pii_tokens, sealed_body, key_id, body_digest FROM ingestor_rejects"
        " WHERE $1 = ANY(pii_tokens)",
        stone,
    )
    assert reject["pii_tokens"] == [stone, device_token]
    assert token not in reject["body"]
    assert stone in reject["body"]
    assert reject["sealed_body"] is None
    # And the keyed digest of the original body no longer tests a guess of the value
    guessable = masker.digest_body(crafted[-1].encode())
    assert reject["body_digest"] != guessable
    assert reject["body_digest"].startswith(TOMBSTONE_PREFIX)
    # And every other row is as it was
    assert others == await db.fetch(
        f"SELECT {ROW_COLUMNS} FROM user_logins WHERE masked_ip <> $1 ORDER BY 1", stone
    )
    # And a reveal of the token finds nothing, one of its tombstone says when it was
    # erased, and the other value still opens
    first, second, third = await reveal(
        db, keys.opener, CHECK_A, [token, device_token, stone], REQUEST
    )
    assert first.value is None
    assert "not in the vault" in str(first.problem)
    expect_same(second.value, DEVICE_X, "the revealed device id")
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert f"erased on {today}" in str(third.problem)
    # And the erasure is on record, naming the tombstone, not the erased token
    audit = await db.fetchrow(
        "SELECT claimed_actor, reason, tokens FROM pii_audit_trail WHERE action = 'forget'"
    )
    assert tuple(audit) == ("dpo", "DSR-42", [stone])
    # And no audit row names the erased token any more: not the reveal made before the
    # erasure, not the reveal attempted after it
    named = await db.fetchval("SELECT count(*) FROM pii_audit_tokens WHERE token = $1", token)
    assert named == 0
    # And nothing in the database holds the value
    found = await find_plaintext(db, {IP_X})
    assert found == []
    # When the same address arrives again in a new event
    await sqs_queue.send([event("user-new", ip=IP_X)])
    await drain(settings)
    # Then it is loaded with the usual token, and vaulted again
    assert (
        await db.fetchval("SELECT masked_ip FROM user_logins WHERE user_id = 'user-new'") == token
    )
    (again,) = await reveal(db, keys.opener, CHECK_A, [token], REQUEST)
    expect_same(again.value, IP_X, "the value vaulted again")


async def test_forget_by_user_id_erases_every_value_of_the_user(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    keys: VaultKeys,
) -> None:
    # Given a user with two rows and one reject, among other users' traffic (one of whose
    # rejects holds an escaped NUL, which PostgreSQL's jsonb refuses)
    user = "u-dsr-0001"
    mine = [
        event(user, ip=IP_Y, device_id=DEVICE_Y1),
        event(user, ip=IP_Y, device_id=DEVICE_Y2),
        event(user, ip=IP_Z, device_id=DEVICE_Y3, locale="x" * 40),
    ]
    bodies = [e.body for e in generate(100, seed=25, junk_rate=0.1, repeat_rate=0.1)]
    bodies.append('{"user_id": "nul\\u0000here", "ip": "198.51.100.200"}')
    await load(make_settings, sqs_queue, keys, bodies + mine)
    masker = HmacMasker(KEY_A)
    expected = {
        masker.mask_ip(IP_Y),
        masker.mask_ip(canonical_ip(IP_Z)),
        masker.mask_device_id(DEVICE_Y1),
        masker.mask_device_id(DEVICE_Y2),
        masker.mask_device_id(DEVICE_Y3),
    }
    others = await db.fetch(f"SELECT {ROW_COLUMNS} FROM user_logins WHERE user_id <> $1", user)
    # When the user's values are forgotten
    erased = await forget(db, KEY_A, Request.of("DSR-43", "dpo"), user_id=user)
    # Then none of them is in the vault or the tables, and tombstones stand in their place
    assert (erased.tokens, erased.vault_rows, erased.rows, erased.rejects) == (5, 5, 2, 1)
    assert expected.isdisjoint(await vault_tokens(db))
    in_rows, in_rejects = await tokens_in_tables(db)
    assert expected.isdisjoint(in_rows | in_rejects)
    rows = await db.fetch(
        "SELECT masked_ip, masked_device_id FROM user_logins WHERE user_id = $1", user
    )
    assert len(rows) == 2
    assert all(v.startswith(TOMBSTONE_PREFIX) for r in rows for v in r.values())
    # And the user's reject keeps nothing of its body, found by its user's digest
    (reject,) = await db.fetch(
        "SELECT body, body_kind, pii_tokens, sealed_body FROM ingestor_rejects"
        " WHERE user_digest = $1",
        masker.digest_user(user),
    )
    assert (reject["body"], reject["body_kind"], reject["sealed_body"]) == (None, "erased", None)
    assert all(t.startswith(TOMBSTONE_PREFIX) for t in reject["pii_tokens"])
    # And the other users' rows are untouched
    assert others == await db.fetch(
        f"SELECT {ROW_COLUMNS} FROM user_logins WHERE user_id <> $1", user
    )
    # And reveal finds none of the tokens; the audit row names the user
    revealed = await reveal(db, keys.opener, CHECK_A, sorted(expected), REQUEST)
    assert all("not in the vault" in str(r.problem) for r in revealed)
    # (by the user's keyed digest: the trail does not say in plaintext who asked)
    detail = await db.fetchval("SELECT detail FROM pii_reveal_audit WHERE action = 'forget'")
    assert detail == f"user {masker.digest_user(user)[:16]}"
    found = await find_plaintext(db, {IP_Y, canonical_ip(IP_Z), DEVICE_Y1, DEVICE_Y2, DEVICE_Y3})
    assert found == []


async def test_forget_reaches_a_reject_whose_body_nests_too_deep_to_write_back(
    database: str, db: asyncpg.Connection, keys: VaultKeys
) -> None:
    # Given a reject nested too deep to write back as JSON, whose ip was masked and vaulted
    deep = '{"ip": "' + IP_X + '", "a": ' + "[" * 300 + "]" * 300 + "}"
    await write_through_sink(database, [Envelope("m1", "", deep, SENT_MS)], keys.masker())
    token = HmacMasker(KEY_A).mask_ip(IP_X)
    reject = await db.fetchrow("SELECT body, body_kind, pii_tokens FROM ingestor_rejects")
    # (its nested value is described, not written back)
    assert orjson.loads(reject["body"]) == {"ip": token, "a": {"type": "array", "size": 1}}
    # Then its token is listed, as for any reject
    assert reject["pii_tokens"] == [token]
    assert await vault_tokens(db) == {token}
    # When the value is forgotten
    erased = await forget(db, KEY_A, REQUEST, tokens=[token])
    # Then the reject loses its sealed original too: the value is nowhere to be opened
    assert (erased.vault_rows, erased.rejects) == (1, 1)
    assert await db.fetchval("SELECT sealed_body FROM ingestor_rejects") is None


# --- rekey -------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def second_database(postgres_url: str, template_database: str) -> AsyncIterator[str]:
    name = await _create_database(postgres_url, template_database)
    yield with_database(postgres_url, name)
    await _drop_database(postgres_url, name)


def rekey_envelopes() -> list[Envelope]:
    """Mixed traffic with fixed message ids: rows, junk, repeats, a row the database
    refuses (device_type 'kiosk') and a reject holding a device id twice."""
    bodies = [e.body for e in generate(300, seed=26, junk_rate=0.1, repeat_rate=0.1)]
    bodies.insert(7, event("u-kiosk", device_type="kiosk", ip=IP_X, device_id=DEVICE_X))
    bodies.insert(
        9,
        event(
            "u-two", ip=IP_Y, device_id=DEVICE_Y1, nested={"device_id": DEVICE_Y1}, locale="x" * 33
        ),
    )
    return [Envelope(f"m{i:04}", "", body, SENT_MS + i) for i, body in enumerate(bodies)]


NO_KIOSK = "ALTER TABLE user_logins ADD CONSTRAINT no_kiosk CHECK (device_type <> 'kiosk')"


async def write_through_sink(
    url: str, envelopes: list[Envelope], masker: Masker | VaultingMasker
) -> None:
    """Load as the service does: transform, then write batches with isolation."""
    pool = await create_pool(url, 2)
    try:
        sink, transformer = PostgresSink(pool, ErasureLedger(masker)), Transformer(masker)
        for start in range(0, len(envelopes), 50):
            processed = [transformer.process(e) for e in envelopes[start : start + 50]]
            rows, rejects = split_outcomes(processed)
            entries = vault_entries(processed)
            await write_isolating(
                sink, rows, rejects, Batch(processed, transformer.digest, entries)
            )
            if isinstance(masker, VaultingMasker):
                masker.remember([e.token for e in entries])
    finally:
        await pool.close()


async def state(db: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """What rekey must make equal to a fresh load: rows, rejects and vault tokens."""
    rows = await db.fetch(f"SELECT {ROW_COLUMNS} FROM user_logins ORDER BY message_id")
    rejects = await db.fetch(
        "SELECT message_id, reason_code, reason, body, body_kind, pii_tokens, body_digest,"
        " sealed_body IS NOT NULL AS sealed, user_digest FROM ingestor_rejects ORDER BY message_id"
    )
    vault = await db.fetch("SELECT token, field, key_id, mask_key_id FROM pii_vault ORDER BY token")
    return {
        "rows": [tuple(r) for r in rows],
        "rejects": [tuple(r) for r in rejects],
        "vault": [tuple(r) for r in vault],
    }


async def full_state(db: asyncpg.Connection) -> list[list[tuple[Any, ...]]]:
    """Everything in the tables, sealed bytes and times included (audit excepted)."""
    tables = ("user_logins", "ingestor_rejects", "pii_vault")
    return [
        [tuple(r) for r in await db.fetch(f"SELECT * FROM {table} ORDER BY 1, 2")]
        for table in tables
    ]


async def rekey_fixture(
    database: str, second_database: str, db: asyncpg.Connection, keys: VaultKeys
) -> dict[str, list[tuple[Any, ...]]]:
    """`database` loaded under key A; the state of `second_database` loaded from the same
    messages under key B."""
    envelopes = rekey_envelopes()
    fresh = await asyncpg.connect(second_database)
    try:
        for connection in (db, fresh):
            await connection.execute(NO_KIOSK)
        await write_through_sink(database, envelopes, keys.masker(KEY_A))
        await write_through_sink(second_database, envelopes, keys.masker(KEY_B))
        expected = await state(fresh)
    finally:
        await fresh.close()
    assert any(r[1] == "db_23514" for r in expected["rejects"])
    return expected


async def test_rekey_gives_what_a_fresh_load_under_the_new_key_gives(
    database: str, second_database: str, db: asyncpg.Connection, keys: VaultKeys
) -> None:
    # Given the same messages loaded under key A here and under key B in a fresh database
    expected = await rekey_fixture(database, second_database, db, keys)
    before = await state(db)
    assert before["rows"] != expected["rows"]
    # When this one is rekeyed from A to B
    done = await rekey(db, keys.opener, CHECK_A, KEY_B, REQUEST, batch_size=40)
    # Then rows, rejects and vault tokens are what the fresh load under B holds
    after = await state(db)
    assert after["rows"] == expected["rows"]
    assert after["rejects"] == expected["rejects"]
    assert after["vault"] == expected["vault"]
    assert done.values == len(before["vault"])
    assert done.unvaulted_rows == 0
    # And the moved vault rows still open to the values their new tokens are made from
    masker = HmacMasker(KEY_B)
    revealed = await reveal(
        db, keys.opener, Checker(KEY_B), [t[0] for t in after["vault"]], REQUEST
    )
    assert all(
        (masker.mask_ip(str(r.value)) if r.field == "ip" else masker.mask_device_id(str(r.value)))
        == r.token
        for r in revealed
    )
    # When it is run again
    settled = await full_state(db)
    again = await rekey(db, keys.opener, CHECK_A, KEY_B, REQUEST, batch_size=40)
    # Then nothing changes
    assert (again.values, again.rows, again.rejects) == (0, 0, 0)
    assert await full_state(db) == settled
    actions = await db.fetch("SELECT action, detail FROM pii_reveal_audit WHERE action = 'rekey'")
    assert len(actions) == 4  # a start and a done row per run
    assert all(mask_key_id(KEY_B) in r["detail"] for r in actions)


class Interrupted(Exception):
    pass


async def test_an_interrupted_rekey_resumes_to_the_same_state(
    database: str, second_database: str, db: asyncpg.Connection, keys: VaultKeys
) -> None:
    # Given the same messages loaded under key A here and under key B in a fresh database
    expected = await rekey_fixture(database, second_database, db, keys)
    total = await db.fetchval("SELECT count(*) FROM pii_vault")

    def stop_after_first(done: int) -> None:
        raise Interrupted

    # When a rekey stops after its first batch
    with pytest.raises(Interrupted):
        await rekey(
            db, keys.opener, CHECK_A, KEY_B, REQUEST, batch_size=25, on_batch=stop_after_first
        )
    # Then that batch's new tokens are committed to the rotation's map, the rotation is
    # recorded as under way, and no table has changed yet
    assert await db.fetchval("SELECT count(*) FROM ingestor_rekey_map") == 25
    progress = await db.fetchrow("SELECT mask_key_id, phase FROM ingestor_rekey_state")
    assert tuple(progress) == (mask_key_id(KEY_B), "map")
    assert await db.fetchval("SELECT count(*) FROM pii_vault") == total
    assert (
        await db.fetchval(
            "SELECT count(*) FROM pii_vault WHERE mask_key_id = $1", mask_key_id(KEY_B)
        )
        == 0
    )
    # And a rotation to another key is refused until this one is finished
    with pytest.raises(RekeyRefused, match="unfinished"):
        await rekey(db, keys.opener, CHECK_A, KEY_A + b"-other", REQUEST)
    # When it is run again
    done = await rekey(db, keys.opener, CHECK_A, KEY_B, REQUEST, batch_size=25)
    # Then it does the rest, and the result is the uninterrupted one, its work tables empty
    assert done.values == total - 25
    assert await state(db) == expected
    assert await db.fetchval("SELECT count(*) FROM ingestor_rekey_map") == 0
    assert await db.fetchval("SELECT count(*) FROM ingestor_rekey_state") == 0


async def test_rekey_counts_rows_it_cannot_recompute(
    database: str, db: asyncpg.Connection, keys: VaultKeys
) -> None:
    # Given rows loaded before the vault was on, and rows loaded with it
    before = [event(f"old-{i}", ip=f"192.0.2.{i}", device_id=f"000-02-000{i}") for i in range(4)]
    before.append(event("old-none"))  # no PII at all: nothing to recompute
    after = [event(f"new-{i}", ip=f"198.51.100.{i}", device_id=f"000-03-000{i}") for i in range(3)]
    envelopes = [Envelope(f"m{i:03}", "", b, SENT_MS) for i, b in enumerate(before + after)]
    await write_through_sink(database, envelopes[:5], HmacMasker(KEY_A))
    await write_through_sink(database, envelopes[5:], keys.masker(KEY_A))
    old_rows = await db.fetch(f"SELECT {ROW_COLUMNS} FROM user_logins WHERE user_id LIKE 'old-%'")
    # When the key is rotated, it is refused: those rows would keep old-key tokens
    with pytest.raises(RekeyRefused, match="4 rows hold tokens with no vault entry"):
        await rekey(db, keys.opener, CHECK_A, KEY_B, REQUEST)
    # When it is rotated accepting that
    done = await rekey(db, keys.opener, CHECK_A, KEY_B, REQUEST, accept_unvaulted=True)
    # Then the vaulted rows are rekeyed, and the others are counted and left as they were
    assert (done.values, done.rows, done.unvaulted_rows) == (6, 3, 4)
    assert old_rows == await db.fetch(
        f"SELECT {ROW_COLUMNS} FROM user_logins WHERE user_id LIKE 'old-%'"
    )
    masker = HmacMasker(KEY_B)
    new_ips = {
        r["masked_ip"]
        for r in await db.fetch("SELECT masked_ip FROM user_logins WHERE user_id LIKE 'new-%'")
    }
    assert new_ips == {masker.mask_ip(f"198.51.100.{i}") for i in range(3)}


# --- replay ------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database, 2)
    yield pool
    await pool.close()


def replayer(keys: VaultKeys, pool: asyncpg.Pool) -> Replay:
    masker = keys.masker(KEY_A)
    sink = PostgresSink(pool, ErasureLedger(masker))
    return Replay(keys.opener, Transformer(masker), sink, batch_size=7)


async def counts(db: asyncpg.Connection) -> tuple[int, int, int]:
    return (
        await db.fetchval("SELECT count(*) FROM user_logins"),
        await db.fetchval("SELECT count(DISTINCT message_id) FROM user_logins"),
        await db.fetchval("SELECT count(*) FROM ingestor_rejects"),
    )


async def test_replay_loads_rows_the_database_refused_once(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    keys: VaultKeys,
    pool: asyncpg.Pool,
) -> None:
    # Given a constraint that refuses device_type 'kiosk', and five kiosk events in traffic
    await db.execute(NO_KIOSK)
    bodies = [e.body for e in generate(200, seed=27, junk_rate=0.1, repeat_rate=0)]
    kiosks = [
        event(f"kiosk-{i}", device_type="kiosk", ip=IP_X, device_id=DEVICE_X) for i in range(5)
    ]
    for i, body in enumerate(kiosks):
        bodies.insert(5 + 30 * i, body)
    _, sent = await load(make_settings, sqs_queue, keys, bodies)
    refused = await db.fetch(
        "SELECT message_id, body_kind FROM ingestor_rejects WHERE reason_code = 'db_23514'"
    )
    assert len(refused) == 5
    assert {r["body_kind"] for r in refused} == {"row"}
    junk = sum(1 for body in bodies if not _is_valid(body))
    assert (await counts(db))[2] == junk + 5
    listed = {c.reason_code: c for c in await summary(db, None)}
    assert (listed["db_23514"].count, listed["db_23514"].replayable) == (5, 5)
    # When the DBA drops the constraint and the refused rejects are replayed
    await db.execute("ALTER TABLE user_logins DROP CONSTRAINT no_kiosk")
    result = await replay(db, replayer(keys, pool), REQUEST, "db_23514")
    # Then the rows appear, as the service would have written them, and the rejects go
    assert result == WriteResult(5, 0, 0)
    rows = await db.fetch(
        f"SELECT {ROW_COLUMNS} FROM user_logins WHERE device_type = 'kiosk' ORDER BY 1"
    )
    masker = HmacMasker(KEY_A)
    wanted = {
        r["message_id"]: expected_row(orjson.loads(sent[r["message_id"]]), masker) for r in refused
    }
    assert {r["message_id"]: tuple(r)[1:7] for r in rows} == wanted
    loaded = await counts(db)
    assert loaded[0] == loaded[1] == sum(1 for body in bodies if _is_valid(body))
    assert loaded[2] == junk
    # When replay runs again, over every reason
    again = await replay(db, replayer(keys, pool), REQUEST, None)
    # Then nothing more is loaded: the junk stays rejected, the rows stay once each
    assert (again.inserted, again.replaced, again.rejected) == (0, 0, junk)
    assert await counts(db) == loaded
    # And each run is audited when it starts (so a run cut short is on record) and ends
    audit = await db.fetch(
        "SELECT actor, detail FROM pii_audit_trail WHERE action = 'replay' ORDER BY seq"
    )
    assert [r["detail"] for r in audit] == [
        "start: reason db_23514",
        "done: reason db_23514: loaded 5, still rejected 0",
        "start: reason any",
        f"done: reason any: loaded 0, still rejected {junk}",
    ]


async def test_replay_runs_sealed_rejects_through_todays_rules(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    keys: VaultKeys,
    monkeypatch: pytest.MonkeyPatch,
    pool: asyncpg.Pool,
) -> None:
    # Given traffic loaded under a rule too strict: device_type at most 4 characters
    strict_rule = ingestor.transform.rules.TextRule("device_type", 4)
    monkeypatch.setattr(ingestor.transform.rules, "DEVICE_TYPE_RULE", strict_rule)
    bodies = [e.body for e in generate(200, seed=28, junk_rate=0.1, repeat_rate=0.1)]
    _, sent = await load(make_settings, sqs_queue, keys, bodies)
    strict = await db.fetch(
        "SELECT message_id, reason, body, pii_tokens, body_digest, sent_at, receive_count"
        " FROM ingestor_rejects WHERE reason_code = 'invalid_device_type' ORDER BY 1"
    )
    assert len(strict) > 10
    junk = await db.fetch(
        "SELECT message_id, reason_code, reason, body, body_digest FROM ingestor_rejects"
        " WHERE reason_code <> 'invalid_device_type' ORDER BY 1"
    )
    before = await counts(db)
    # When they are replayed under the same rules
    same = await replay(db, replayer(keys, pool), REQUEST, None)
    # Then each stays a reject, with the same reason, body, tokens and digest
    assert (same.inserted, same.replaced, same.rejected) == (0, 0, before[2])
    assert await counts(db) == before
    assert strict == await db.fetch(
        "SELECT message_id, reason, body, pii_tokens, body_digest, sent_at, receive_count"
        " FROM ingestor_rejects WHERE reason_code = 'invalid_device_type' ORDER BY 1"
    )
    assert junk == await db.fetch(
        "SELECT message_id, reason_code, reason, body, body_digest FROM ingestor_rejects"
        " WHERE reason_code <> 'invalid_device_type' ORDER BY 1"
    )
    # When the rule is fixed and they are replayed
    fixed_rule = ingestor.transform.rules.TextRule("device_type", 32)
    monkeypatch.setattr(ingestor.transform.rules, "DEVICE_TYPE_RULE", fixed_rule)
    loadable = [r for r in strict if _is_valid(sent[r["message_id"]])]
    broken = len(strict) - len(loadable)  # these break another rule too (junk on an android)
    assert len(loadable) > 10
    fixed = await replay(db, replayer(keys, pool), REQUEST, "invalid_device_type")
    # Then each that today's rules accept loads, once, as they map it, and leaves the
    # rejects; the others stay rejects, with today's reason and their sealed body
    assert fixed == WriteResult(len(loadable), 0, broken)
    masker = HmacMasker(KEY_A)
    for reject in loadable:
        row = await db.fetchrow(
            f"SELECT {ROW_COLUMNS} FROM user_logins WHERE message_id = $1", reject["message_id"]
        )
        wanted = expected_row(orjson.loads(sent[reject["message_id"]]), masker)
        assert tuple(row)[1:7] == wanted
        assert row["create_date"] == reject["sent_at"].date()
    left = await db.fetch("SELECT reason_code, sealed_body FROM ingestor_rejects")
    assert len(left) == len(junk) + broken
    assert "invalid_device_type" not in {r["reason_code"] for r in left}
    assert all(r["sealed_body"] is not None for r in left)
    after = await counts(db)
    assert after == (before[0] + len(loadable), before[1] + len(loadable), len(left))
    # And every token now in user_logins is in the vault
    in_rows, _ = await tokens_in_tables(db)
    assert in_rows <= await vault_tokens(db)
    # When replay runs again
    again = await replay(db, replayer(keys, pool), REQUEST, None)
    # Then nothing is loaded twice
    assert (again.inserted, again.replaced, again.rejected) == (0, 0, len(left))
    assert await counts(db) == after


def _is_valid(body: str) -> bool:
    try:
        ingestor.transform.rules.validate(orjson.loads(body))
    except (orjson.JSONDecodeError, ingestor.transform.rules.Invalid, AttributeError):
        return False
    return True


async def test_a_running_service_vaults_a_value_again_after_its_erasure(
    database: str, db: asyncpg.Connection, keys: VaultKeys
) -> None:
    # Given a service's masker that committed IP_X to the vault
    masker = keys.masker()
    token = masker.mask_ip(IP_X)
    assert [entry.token for entry in masker.take()] == [token]
    masker.remember([token])
    masker.mask_ip(IP_X)
    assert masker.take() == ()  # known: not sealed again
    pool = CountingPool(await create_pool(database, 2))
    follower = asyncio.create_task(follow_erasures(pool, masker, interval=0.05))
    try:
        # (the follower has read where the audit trail stands)
        for _ in range(200):
            if pool.reads:
                break
            await asyncio.sleep(0.01)
        assert pool.reads, "the follower never read the audit trail"
        # When the value is erased while that service runs
        await forget(db, KEY_A, Request("dpo", "DSR-1"), tokens=[token])
        # Then within the follower's interval, the masker seals it again when seen
        for _ in range(100):
            masker.mask_ip(IP_X)
            if masker.take():
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the masker still treats the erased token as vaulted")
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await pool.pool.close()


class CountingPool:
    """A pool that counts the reads `follow_erasures` makes through it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.reads = 0

    async def fetchval(self, sql: str, *args: object) -> object:
        value = await self.pool.fetchval(sql, *args)
        self.reads += 1
        return value
