"""Hostile bodies (property-based) and the rule that one poison message never fails its
batch, on the real servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestor.demo.synthetic import generate
from ingestor.models import Envelope, LoginRow, Rejection
from ingestor.observe.hooks import Stats
from ingestor.pipeline.service import run_service
from ingestor.settings import Settings
from ingestor.source.sqs import SqsQueue
from ingestor.transform.masking import HmacMasker
from ingestor.transform.transformer import Transformer
from tests.faults.conftest import check_invariant, record
from tests.integration.helpers import find_plaintext, plaintext_pii

TRANSFORMER = Transformer(HmacMasker(b"h" * 32))
FIELDS = ["user_id", "app_version", "device_type", "ip", "locale", "device_id"]
METACHARACTERS = ["'; DROP TABLE user_logins; --", "$(rm -rf /)", "`id`", "\\x00", "%s%n", "\x00"]

hostile_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),  # beyond 64 bits
    st.floats(),
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=100, max_size=400),  # overlong
    st.sampled_from(METACHARACTERS),
)
hostile_json = st.recursive(
    hostile_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=15,
)
hostile_events = st.dictionaries(st.sampled_from(FIELDS), hostile_json, max_size=6)


def deep(depth: int) -> str:
    return '{"user_id": "u", "x": ' + "[" * depth + "]" * depth + "}"


hostile_bodies = st.one_of(
    st.binary(max_size=300),  # random bytes, invalid UTF-8 included
    st.text(max_size=300),
    hostile_json.map(lambda v: json.dumps(v, allow_nan=True)),
    hostile_events.map(lambda v: json.dumps(v, allow_nan=True)),
    st.integers(min_value=1, max_value=1100).map(deep),  # past orjson's depth limits
    st.just('{"user_id": "u", "pad": "' + "x" * 262_000 + '"}'),  # 256 KiB
    st.just('{"user_id": "u\\u0000v"}'),
    st.just('{"user_id": "u", "app_version": 1e999}'),
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_bodies)
def test_a_hostile_body_is_loaded_or_rejected_with_a_reason_never_raised(
    body: str | bytes,
) -> None:
    outcome = TRANSFORMER.process(Envelope("m", "h", body, 1_700_000_000_000)).outcome
    assert isinstance(outcome, LoginRow | Rejection)
    if isinstance(outcome, Rejection):
        assert outcome.reason
        assert outcome.reason_code != "internal_error"
        assert len(outcome.reason_code) <= 64
    else:
        assert outcome.user_id
        assert "\x00" not in outcome.user_id


@pytest.mark.faults
async def test_one_poison_message_in_a_batch_does_not_stop_the_good_ones(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, db: asyncpg.Connection
) -> None:
    # Given one batch's worth of good events with hostile bodies among them, and a column
    # a DBA narrowed so that one valid-looking event is refused by the database itself
    good = [e.body for e in generate(190, seed=51, junk_rate=0, repeat_rate=0)]
    hostile = [
        "\t not json \u2603",
        deep(2000),
        '{"user_id": "' + "u" * 5000 + '"}',
        "[]",
        '{"user_id": "x", "ip": "1.2.3.4\'; DROP TABLE user_logins; --"}',
        '{"user_id": "x", "device_type": "a-very-long-device-type-name"}',
    ]
    await db.execute("ALTER TABLE user_logins ALTER COLUMN device_type TYPE varchar(20)")
    sent = await sqs_queue.send(good + hostile)
    # When one drain with one batch loads them
    stats = Stats()
    await asyncio.wait_for(
        run_service(make_settings(batch_size=1000, flush_interval=2), asyncio.Event(), stats), 60
    )
    # Then every good event is a row, the poison are rejects with reasons
    assert stats.inserted == 190
    assert stats.reasons["db_22001"] == 1
    assert stats.rejected == len(hostile)
    await check_invariant(db, sqs_queue, sent)
    assert await find_plaintext(db, plaintext_pii(good + hostile)) == []
    record("hostile bodies + a DB-refused row in one batch", 1, len(sent), "same batch")
