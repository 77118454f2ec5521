"""Events in SNS and EventBridge envelopes through the real path: SQS emulator -> pipeline
-> PostgreSQL. One row per event whatever copies SNS delivers, dated by the envelope,
every SQS message deleted; malformed envelopes rejected without plaintext; the real
messages of the exercise wrapped both ways; and a replay that unwraps what was stored
raw."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import orjson
import pytest
import pytest_asyncio

from ingestor.custody.audit import Request
from ingestor.custody.keys import generate_key_pair
from ingestor.custody.ledger import ErasureLedger
from ingestor.custody.rekey import rekey
from ingestor.custody.replay import Replay, replay
from ingestor.custody.vault import Checker, Opener, Sealer, VaultingMasker
from ingestor.observe.hooks import Stats
from ingestor.pipeline.service import run_service
from ingestor.settings import Settings
from ingestor.sink.postgres import PostgresSink, create_pool
from ingestor.source.sqs import SqsQueue
from ingestor.transform.masking import HmacMasker
from ingestor.transform.transformer import Transformer
from tests.conftest import TEST_KEY
from tests.envelopes import eventbridge, replaced, sns
from tests.integration.helpers import expected_row, find_plaintext, queue_is_empty

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

ROW = "user_id, device_type, masked_ip, masked_device_id, locale, app_version"
IP, DEVICE = "203.0.113.201", "000-00-0201"  # values of this test's own
EVENT = {"user_id": "u-env-1", "app_version": "2.3.0", "ip": IP, "device_id": DEVICE}
CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"


async def drain(settings: Settings) -> Stats:
    stats = Stats()
    await asyncio.wait_for(run_service(settings, asyncio.Event(), stats), 90)
    return stats


async def rows_by_key(db: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    rows = await db.fetch(f"SELECT message_id, {ROW}, create_date FROM user_logins")
    return {r["message_id"]: r for r in rows}


async def test_one_event_raw_twice_by_sns_and_by_eventbridge(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, db: asyncpg.Connection
) -> None:
    # Given one event sent raw, published to SNS and delivered twice (two SQS messages,
    # one SNS MessageId), and put to EventBridge; both envelopes dated the day before
    sns_id, eb_id = str(uuid.uuid4()), str(uuid.uuid4())
    raw = orjson.dumps(EVENT).decode()
    by_sns = sns(EVENT, sns_id, "2023-11-13T23:59:59.999Z")
    (raw_id,) = await sqs_queue.send([raw])
    first, second = await sqs_queue.send([by_sns]) + await sqs_queue.send([by_sns])
    assert first != second
    await sqs_queue.send([eventbridge(EVENT, eb_id, "2023-11-13T00:00:00Z")])
    settings = make_settings()
    # When the service drains the queue
    stats = await drain(settings)
    # Then there are three rows: the raw message's, the SNS event's once, EventBridge's
    assert stats.received == 4
    rows = await rows_by_key(db)
    assert set(rows) == {raw_id, f"sns:{sns_id}", f"eventbridge:{eb_id}"}
    wanted = expected_row(EVENT, HmacMasker(settings.key_bytes))
    assert {tuple(r)[1:7] for r in rows.values()} == {wanted}
    # Dated by SentTimestamp when raw, by the envelope's time when wrapped
    assert rows[raw_id]["create_date"] == dt.datetime.now(dt.UTC).date()
    assert rows[f"sns:{sns_id}"]["create_date"] == dt.date(2023, 11, 13)
    assert rows[f"eventbridge:{eb_id}"]["create_date"] == dt.date(2023, 11, 13)
    # And both SQS messages of the SNS event were deleted
    assert await queue_is_empty(sqs_queue)
    # When SNS delivers it once more, after the row was committed
    await sqs_queue.send([by_sns])
    again = await drain(settings)
    # Then it replaces its row, and is deleted too
    assert (again.received, again.inserted, again.replaced) == (1, 0, 1)
    assert set(await rows_by_key(db)) == set(rows)
    assert await queue_is_empty(sqs_queue)


async def test_malformed_envelopes_are_rejected_with_their_reasons_and_no_plaintext(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, db: asyncpg.Connection
) -> None:
    good = sns(EVENT, str(uuid.uuid4()), Subject=f"login from {IP}")
    bodies = {
        "envelope_invalid_id": replaced(good, MessageId="x" * 300),
        "envelope_invalid_time": replaced(good, MessageId=str(uuid.uuid4()), Timestamp="soon"),
        "envelope_event_not_json": replaced(
            good, MessageId=str(uuid.uuid4()), Message=f"ip={IP}&device={DEVICE}"
        ),
        "envelope_event_not_object": eventbridge([EVENT]),
        "envelope_no_event": eventbridge(None),
        "invalid_app_version": sns(
            {**EVENT, "app_version": "v2", "note": DEVICE},
            MessageAttributes={"ip": {"Type": "String", "Value": IP}},
        ),
    }
    await sqs_queue.send(list(bodies.values()))
    stats = await drain(make_settings())
    rejects = await db.fetch("SELECT message_id, reason_code, body FROM ingestor_rejects")
    assert sorted(r["reason_code"] for r in rejects) == sorted(bodies)
    assert stats.rejected == len(bodies)
    assert await db.fetchval("SELECT count(*) FROM user_logins") == 0
    # Keyed by the envelope's id, but for the one whose id is unusable
    keys = {r["reason_code"]: r["message_id"] for r in rejects}
    assert keys["envelope_invalid_time"].startswith("sns:")
    assert keys["envelope_no_event"].startswith("eventbridge:")
    assert ":" not in keys["envelope_invalid_id"]
    # Nothing of the ip or the device id in plaintext, anywhere
    assert await find_plaintext(db, {IP, DEVICE}) == []
    assert await queue_is_empty(sqs_queue)


def corpus() -> list[str]:
    return [
        line for path in sorted(CORPUS.glob("*.jsonl")) for line in path.read_text().splitlines()
    ]


async def test_the_real_messages_wrapped_by_sns_twice_and_by_eventbridge(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, db: asyncpg.Connection
) -> None:
    # Given the exercise's messages, each published to SNS and delivered twice, and each
    # put to EventBridge
    lines = corpus()
    by_sns = [sns(line) for line in lines]
    by_eventbridge = [eventbridge(orjson.loads(line)) for line in lines]
    sent = await sqs_queue.send(by_sns + by_eventbridge + by_sns)
    assert len(sent) == 3 * len(lines) == 303
    settings = make_settings(batch_size=50)
    # When the service drains the queue
    stats = await drain(settings)
    # Then each event is a row per envelope, whatever the copies, and the junk message a
    # reject per envelope
    events = [orjson.loads(line) for line in lines]
    valid = [event for event in events if "user_id" in event]
    assert (len(valid), stats.received) == (100, 303)
    masker = HmacMasker(settings.key_bytes)
    rows = await db.fetch(f"SELECT message_id, {ROW} FROM user_logins")
    assert len(rows) == 200
    for prefix in ("sns:", "eventbridge:"):
        loaded = sorted(tuple(r)[1:] for r in rows if r["message_id"].startswith(prefix))
        assert loaded == sorted(expected_row(event, masker) for event in valid)
    rejects = await db.fetch("SELECT message_id, reason_code FROM ingestor_rejects")
    assert sorted(r["reason_code"] for r in rejects) == ["missing_user_id"] * 2
    # And every SQS message was deleted, and no plaintext is anywhere
    assert await queue_is_empty(sqs_queue)
    values = {event[f] for event in valid for f in ("ip", "device_id")}
    assert await find_plaintext(db, values) == []


@pytest_asyncio.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database, 2)
    yield pool
    await pool.close()


async def test_replay_unwraps_what_was_rejected_raw_and_keeps_it_once(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
) -> None:
    # Given SNS notifications loaded with INGESTOR_ENVELOPE=none and the vault on: each
    # is a raw body without user_id, rejected under its SQS MessageId
    private, public = generate_key_pair()
    sns_ids = [str(uuid.uuid4()) for _ in range(3)]
    bodies = [sns({**EVENT, "user_id": f"u-{i}"}, sns_id) for i, sns_id in enumerate(sns_ids)]
    sent = await sqs_queue.send(bodies)
    settings = make_settings(envelope="none", vault_public_key=base64.b64encode(public).decode())
    await drain(settings)
    stored = await db.fetch("SELECT message_id, reason_code FROM ingestor_rejects")
    assert {(r["message_id"], r["reason_code"]) for r in stored} == {
        (message_id, "missing_user_id") for message_id in sent
    }
    # When they are replayed with envelopes recognised
    masker = VaultingMasker(TEST_KEY.encode(), Sealer(public), 1_000)
    sink = PostgresSink(pool, ErasureLedger(masker))
    tools = Replay(Opener(private), Transformer(masker, "auto"), sink)
    result = await replay(db, tools, Request.of("TICKET-9", "alice"), None)
    # Then each loads under its SNS key, and its old reject is gone: once, in one table
    assert (result.inserted, result.rejected) == (3, 0)
    assert set(await rows_by_key(db)) == {f"sns:{sns_id}" for sns_id in sns_ids}
    assert await db.fetchval("SELECT count(*) FROM ingestor_rejects") == 0
    # And a second replay finds nothing to do
    again = await replay(db, tools, Request.of("TICKET-9", "alice"), None)
    assert (again.inserted, again.replaced, again.rejected) == (0, 0, 0)


async def test_rekey_keeps_the_user_of_a_rejected_envelope(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, db: asyncpg.Connection
) -> None:
    # Given an SNS notification whose event has a user_id the rules refuse (a number):
    # the kept body describes it, the digest is of its JSON text
    private, public = generate_key_pair()
    await sqs_queue.send([sns({"user_id": 12345, "ip": IP}, str(uuid.uuid4()))])
    await drain(make_settings(vault_public_key=base64.b64encode(public).decode()))
    stored = await db.fetchrow("SELECT reason_code, user_digest FROM ingestor_rejects")
    assert stored["reason_code"] == "invalid_user_id"
    assert stored["user_digest"] == HmacMasker(TEST_KEY.encode()).digest_user("12345")
    # When the masking key is rotated
    new_key = b"the-new-hmac-key-after-rotation-0123456789"
    request = Request.of("TICKET-10", "alice")
    await rekey(db, Opener(private), Checker(TEST_KEY.encode()), new_key, request)
    # Then the reject is still the user's, under the new key (found in the event inside the
    # sealed notification), so forget --user-id still reaches it
    digest = await db.fetchval("SELECT user_digest FROM ingestor_rejects")
    assert digest == HmacMasker(new_key).digest_user("12345")
