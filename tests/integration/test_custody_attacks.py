"""PII custody against the real PostgreSQL (and SQS), at the writer: erased values that
come back in every shape a message can take, a forget racing the writers, shared values
in one batch, hostile bodies through the real writer, a sealed body someone replaced."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg
import orjson
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_box_seal

from ingestor.custody.audit import Request
from ingestor.custody.erasure import forget
from ingestor.custody.keys import generate_key_pair
from ingestor.custody.ledger import ERASURE_LOCK, ErasureLedger
from ingestor.custody.replay import Replay, replay
from ingestor.custody.vault import Opener, Sealer, VaultingMasker
from ingestor.models import Envelope
from ingestor.observe.hooks import Stats
from ingestor.pipeline.service import run_service
from ingestor.settings import Settings
from ingestor.sink.isolation import Batch, split_outcomes, vault_entries, write_isolating
from ingestor.sink.postgres import PostgresSink, create_pool
from ingestor.sink.queries import query
from ingestor.source.sqs import SqsQueue
from ingestor.transform.masking import HmacMasker
from ingestor.transform.transformer import Transformer
from tests.conftest import TEST_KEY
from tests.fakes import SENT_MS
from tests.integration.helpers import find_plaintext, scanned_columns
from tests.unit.test_redaction import hostile_bodies

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

KEY = TEST_KEY.encode()
MASKER = HmacMasker(KEY)
USER, OTHER = "u-ledger-1", "u-ledger-2"
IP, DEVICE = "203.0.113.151", "000-00-0151"
DSR = Request.of("DSR-100", "dpo")


def login(user: str, **fields: Any) -> str:
    return orjson.dumps({"user_id": user, "device_type": "ios", **fields}).decode()


class Loader:
    """The service's write path (transform, ledger, sink, isolation) on one pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.private, public = generate_key_pair()
        self.masker = VaultingMasker(KEY, Sealer(public), 10_000)
        self.transformer = Transformer(self.masker)
        self.sink = PostgresSink(pool, ErasureLedger(self.masker))

    async def load(self, bodies: Sequence[str], first: int = 0) -> None:
        envelopes = [Envelope(f"m{first + i:04}", "", b, SENT_MS) for i, b in enumerate(bodies)]
        processed = [self.transformer.process(e) for e in envelopes]
        rows, rejects = split_outcomes(processed)
        entries = vault_entries(processed)
        await write_isolating(
            self.sink, rows, rejects, Batch(processed, self.transformer.digest, entries)
        )
        self.masker.remember([e.token for e in entries])


@pytest_asyncio.fixture
async def loader(database: str) -> AsyncIterator[Loader]:
    pool = await create_pool(database, 2)
    yield Loader(pool)
    await pool.close()


async def vaulted(db: asyncpg.Connection) -> set[str]:
    return {r["token"] for r in await db.fetch("SELECT token FROM pii_vault")}


TOKENS = {MASKER.mask_ip(IP), MASKER.mask_device_id(DEVICE)}


async def test_a_reject_of_an_erased_user_comes_back_erased_in_every_shape(
    loader: Loader, db: asyncpg.Connection
) -> None:
    # Given the user's row and reject loaded, then the user erased
    await loader.load([login(USER, ip=IP, device_id=DEVICE), login(USER, ip=IP, locale="x" * 40)])
    erased = await forget(db, KEY, DSR, user_id=USER)
    assert (erased.tokens, erased.rows, erased.rejects) == (2, 1, 1)
    before = await db.fetchrow("SELECT * FROM ingestor_rejects WHERE message_id = 'm0001'")
    # When the same messages come back (a service that still remembers the values as
    # vaulted forgets that), and new ones of the same user carry the values: a reject, and
    # a row the database refuses
    await db.execute(
        "ALTER TABLE user_logins ADD CONSTRAINT no_kiosk CHECK (device_type <> 'kiosk')"
    )
    loader.masker.forget_all()
    await loader.load([login(USER, ip=IP, device_id=DEVICE), login(USER, ip=IP, locale="x" * 40)])
    await loader.load(
        [
            login(USER, ip=IP, device_id=DEVICE, app_version="v9"),
            login(USER, ip=IP, device_type="kiosk"),
        ],
        first=2,
    )
    # Then the erased reject is as forget left it
    again = await db.fetchrow("SELECT * FROM ingestor_rejects WHERE message_id = 'm0001'")
    assert tuple(again) == tuple(before)
    # And the new reject and the refused row hold tombstones and no sealed body
    new = await db.fetch(
        "SELECT reason_code, body, pii_tokens, sealed_body FROM ingestor_rejects"
        " WHERE message_id IN ('m0002', 'm0003') ORDER BY message_id"
    )
    assert [r["reason_code"] for r in new] == ["invalid_app_version", "db_23514"]
    for reject in new:
        assert reject["pii_tokens"]
        assert all(t.startswith("erased:") for t in reject["pii_tokens"])
        assert reject["sealed_body"] is None
    # And nothing holds the values or their tokens: not the vault, not any table
    assert await vaulted(db) == set()
    assert await find_plaintext(db, {IP, DEVICE, *TOKENS}) == []


async def test_a_value_erased_for_one_user_is_vaulted_for_another_in_the_same_batch(
    loader: Loader, db: asyncpg.Connection
) -> None:
    await loader.load([login(USER, ip=IP, device_id=DEVICE)])
    await forget(db, KEY, DSR, user_id=USER)
    loader.masker.forget_all()
    # When one batch holds the erased user's event again and another user's with the ip
    await loader.load([login(USER, ip=IP, device_id=DEVICE), login(OTHER, ip=IP)], first=1)
    # Then the erased user's new row has the tombstones, the other's the token, vaulted
    rows = dict(await db.fetch("SELECT message_id, masked_ip FROM user_logins"))
    assert rows["m0001"] == rows["m0000"]
    assert rows["m0001"].startswith("erased:")
    assert rows["m0002"] == MASKER.mask_ip(IP)
    assert await vaulted(db) == {MASKER.mask_ip(IP)}


async def test_forget_waits_for_a_batch_in_flight_and_the_next_batch_waits_for_it(
    loader: Loader, db: asyncpg.Connection, database: str
) -> None:
    await loader.load([login(USER, ip=IP)])
    # Given a writer's transaction under way (it holds the erasure lock shared)
    writer = await asyncpg.connect(database)
    other = await asyncpg.connect(database)
    try:
        transaction = writer.transaction()
        await transaction.start()
        await writer.execute("SELECT pg_advisory_xact_lock_shared($1)", ERASURE_LOCK)
        # When a forget starts
        erasing = asyncio.create_task(forget(other, KEY, DSR, user_id=USER))
        # Then it waits for the lock
        await wait_until(lambda: waiting_for_erasure_lock(db), "forget is not waiting")
        assert not erasing.done()
        # And goes on once the writer's batch commits
        await transaction.commit()
        erased = await asyncio.wait_for(erasing, 30)
        assert erased.rows == 1
        # Given a forget under way (it holds the lock alone until it commits)
        transaction = other.transaction()
        await transaction.start()
        await other.execute("SELECT pg_advisory_xact_lock($1)", ERASURE_LOCK)
        # When the next batch is written, it waits for the forget
        loading = asyncio.create_task(loader.load([login(USER, ip=IP)], first=1))
        await wait_until(lambda: waiting_for_erasure_lock(db), "the batch is not waiting")
        assert not loading.done()
        # And commits once the forget has, with the erased value's tombstone
        await transaction.commit()
        await asyncio.wait_for(loading, 30)
        ips = await db.fetch("SELECT masked_ip FROM user_logins WHERE user_id = $1", USER)
        assert len(ips) == 2
        assert all(r["masked_ip"].startswith("erased:") for r in ips)
    finally:
        await writer.close()
        await other.close()


async def test_a_batch_that_waited_for_a_forget_sees_what_it_erased(
    loader: Loader, db: asyncpg.Connection, database: str
) -> None:
    # Given a forget under way: it holds the lock and has entered another user's value in
    # the ledger, not yet committed
    forgetting = await asyncpg.connect(database)
    try:
        transaction = forgetting.transaction()
        await transaction.start()
        await forgetting.execute(query("erasure_lock"), ERASURE_LOCK)
        token = MASKER.mask_ip(IP)
        digest = MASKER.digest_erased(MASKER.digest_user(OTHER), token)
        await forgetting.execute(
            query("erasure_record"), [digest], ["erased:" + "0" * 32], [OTHER], MASKER.key_id
        )
        # When a batch with that user's value arrives, it waits
        loading = asyncio.create_task(loader.load([login(OTHER, ip=IP)]))
        await wait_until(lambda: waiting_for_erasure_lock(db), "the batch is not waiting")
        # Then, once the forget commits, the batch sees its entry: the value lands erased
        await transaction.commit()
        await asyncio.wait_for(loading, 30)
    finally:
        await forgetting.close()
    assert await db.fetchval("SELECT masked_ip FROM user_logins") == "erased:" + "0" * 32
    assert await vaulted(db) == set()


async def waiting_for_erasure_lock(db: asyncpg.Connection) -> bool:
    return bool(
        await db.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
    )


async def wait_until(condition: Callable[[], Any], message: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not await condition():
        assert loop.time() < deadline, message
        await asyncio.sleep(0.01)


async def test_replay_leaves_a_sealed_body_someone_replaced(
    loader: Loader, db: asyncpg.Connection, database: str
) -> None:
    # Given a reject whose sealed body someone with write access replaced with their own,
    # sealed to the (public) vault key: a valid event with values of their choosing
    await loader.load([login(USER, ip=IP, app_version="v1")])
    public = Opener(loader.private).sealer(Opener(loader.private).key_id).public_key
    forged = crypto_box_seal(login(USER, ip="198.51.100.99").encode(), public)
    await db.execute("UPDATE ingestor_rejects SET sealed_body = $1", forged)
    # When the rejects are replayed
    pool = await create_pool(database, 2)
    try:
        tools = Replay(Opener(loader.private), loader.transformer, loader.sink)
        result = await replay(db, tools, DSR, None)
    finally:
        await pool.close()
    # Then the forged body is not loaded: the reject stays as it is
    assert (result.inserted, result.replaced) == (0, 0)
    assert await db.fetchval("SELECT count(*) FROM user_logins") == 0
    assert await db.fetchval("SELECT count(*) FROM ingestor_rejects") == 1


async def test_the_reviews_bodies_reach_no_table_in_plaintext(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, db: asyncpg.Connection
) -> None:
    address = "203.0.113.99"
    bodies = [
        orjson.dumps({"user_id": "", "client_ip": address}).decode(),
        login("u-1", app_version="v1", remote_addr=address),
        login("u-2", app_version="v1", headers={"x_forwarded_for": f"{address}, 10.0.0.1"}),
        login("u-3", app_version="v1", payload=orjson.dumps({"ip": address}).decode()),
        login("u-4", app_version="v1", note=f"my ip is {address}, device 123-45-6789"),
        login("u-5", locale="x" * 40, ip=address, device_id="123-45-6789"),
    ]
    await sqs_queue.send(bodies)
    _, public = generate_key_pair()
    vault = base64.b64encode(public).decode()
    stats = Stats()
    await asyncio.wait_for(
        run_service(make_settings(vault_public_key=vault), asyncio.Event(), stats), 90
    )
    assert stats.rejected == len(bodies)
    assert await find_plaintext(db, {address, "123-45-6789"}) == []


BATCHES = iter(range(1_000_000))  # each example's message ids are its own


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(hostile_bodies(), min_size=1, max_size=8))
async def test_hostile_bodies_through_the_real_writer_leave_no_plaintext(
    loader: Loader, db: asyncpg.Connection, cases: list[tuple[dict[str, Any], list[str]]]
) -> None:
    # Addresses and ids planted under random keys, at random depths, inside strings and
    # key names (the unit test's bodies, at volume there), written as the service writes
    # them, vault on; then every column of every table is scanned
    await loader.load([orjson.dumps(event).decode() for event, _ in cases], 100 * next(BATCHES))
    planted = {value for _, values in cases for value in values}
    assert await find_plaintext(db, planted) == []


async def test_the_plaintext_scan_reads_every_custody_table_and_view(
    db: asyncpg.Connection,
) -> None:
    # Every table and view the migrations make is read by the scan
    made = {
        r["relname"]
        for r in await db.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'p')"
        )
    }
    scanned = {r["table_name"] for r in await scanned_columns(db)}
    assert made <= scanned
    assert {"ingestor_erasures", "ingestor_erased_buckets", "pii_audit_tokens"} <= scanned
    assert "pii_audit_trail" in scanned
    # And it finds a value wherever it is written: the ledger, the audit side table and
    # its view, a claimed actor, the rotation's re-sealed bytes
    await db.execute(
        "INSERT INTO ingestor_erasures (digest, tombstone, mask_key_id) VALUES ('d', $1, 'k')",
        "erased:" + IP,
    )
    await db.execute(
        "INSERT INTO pii_reveal_audit (claimed_actor, action, tokens, reason)"
        " VALUES ($1, 'reveal', ARRAY[$2], 'r')",
        DEVICE,
        IP,
    )
    await db.execute("INSERT INTO ingestor_rekey_map VALUES ('o', 'n', $1)", b"\x00" + IP.encode())
    assert sorted(await find_plaintext(db, {IP, DEVICE})) == [
        "ingestor_erasures.tombstone",
        "ingestor_rekey_map.sealed",
        "pii_audit_tokens.token",
        "pii_audit_trail.claimed_actor",
        "pii_audit_trail.tokens",
        "pii_reveal_audit.claimed_actor",
    ]
