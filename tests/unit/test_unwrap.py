"""Events wrapped by SNS or EventBridge (INGESTOR_ENVELOPE): the event inside is loaded as
a raw one would be, keyed by the envelope's id and dated by the envelope's time; a
malformed envelope is a reject with its own reason; a reject keeps nothing unsafe of
the envelope or of the event."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestor.demo.synthetic import generate
from ingestor.models import Envelope, LoginRow, Processed, Rejection, Wrapping
from ingestor.sink.isolation import split_outcomes
from ingestor.transform.masking import HmacMasker
from ingestor.transform.transformer import Transformer
from ingestor.transform.unwrap import utc_day
from tests.envelopes import eventbridge, replaced, sns, without
from tests.fakes import SENT_MS
from tests.pii import expect_absent

MASKER = HmacMasker(b"u" * 32)
IP, DEVICE, USER = "199.172.111.135", "593-47-5928", "424cdd21-063a-43a7-b91b-7ca1a833afae"
EVENT = {
    "user_id": USER,
    "app_version": "2.3.0",
    "device_type": "android",
    "ip": IP,
    "locale": "RU",
    "device_id": DEVICE,
}
SNS_ID, EB_ID = "63a3f6b6-d533-4a47-aef9-fcf5cf758c76", "6a7e8feb-b491-4cf7-a9f1-bf3703467718"
CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"


def process(
    body: str | bytes, wrapping: Wrapping = "auto", message_id: str = "m1", sent: int = SENT_MS
) -> Processed:
    return Transformer(MASKER, wrapping).process(
        Envelope(message_id, "h-" + message_id, body, sent)
    )


def row_of(body: str, wrapping: Wrapping = "auto", sent: int = SENT_MS) -> LoginRow:
    outcome = process(body, wrapping, sent=sent).outcome
    assert isinstance(outcome, LoginRow), getattr(outcome, "reason", None)
    return outcome


def reject_of(body: str | bytes, wrapping: Wrapping = "auto") -> Rejection:
    outcome = process(body, wrapping).outcome
    assert isinstance(outcome, Rejection)
    return outcome


def test_the_same_event_raw_in_sns_and_in_eventbridge_gives_the_same_row_but_key_and_date() -> None:
    raw = row_of(orjson.dumps(EVENT).decode())
    by_sns = row_of(sns(EVENT, SNS_ID, "2023-11-13T10:00:00.000Z"))
    by_eventbridge = row_of(eventbridge(EVENT, EB_ID, "2023-11-12T10:00:00Z"))
    # The key: the SQS MessageId of a raw body, the prefixed envelope id of a wrapped one
    assert (raw.message_id, by_sns.message_id, by_eventbridge.message_id) == (
        "m1",
        f"sns:{SNS_ID}",
        f"eventbridge:{EB_ID}",
    )
    # The date: SentTimestamp's for a raw body (2023-11-14), the envelope's time otherwise
    assert (raw.create_date, by_sns.create_date, by_eventbridge.create_date) == (
        dt.date(2023, 11, 14),
        dt.date(2023, 11, 13),
        dt.date(2023, 11, 12),
    )
    # Everything else is the event's, masked as a raw event is
    assert raw[1:-1] == by_sns[1:-1] == by_eventbridge[1:-1]
    assert raw.masked_ip == MASKER.mask_ip(IP)


def test_two_sqs_messages_with_one_sns_message_id_are_one_row_and_both_are_acked() -> None:
    body = sns(EVENT, SNS_ID)
    first = process(body, message_id="sqs-1")
    second = process(body, message_id="sqs-2")
    assert first.message_id == second.message_id == f"sns:{SNS_ID}"
    assert (first.receipt_handle, second.receipt_handle) == ("h-sqs-1", "h-sqs-2")
    rows, rejects = split_outcomes([first, second])
    assert (len(rows), rejects) == (1, [])


@pytest.mark.parametrize(
    ("published", "day"),
    [
        ("2023-11-14T23:59:59.999Z", dt.date(2023, 11, 14)),  # sent after midnight
        ("2023-11-15T00:00:00.000Z", dt.date(2023, 11, 15)),
        ("2023-11-15T00:30:00+01:00", dt.date(2023, 11, 14)),  # an offset: the UTC date
        ("2023-11-14T23:30:00-01:00", dt.date(2023, 11, 15)),
    ],
)
def test_the_envelope_time_gives_the_date_across_midnight_whatever_sqs_says(
    published: str, day: dt.date
) -> None:
    # SQS accepted the message just after midnight, 2023-11-15 00:00:01 UTC
    sent_after_midnight = int(dt.datetime(2023, 11, 15, 0, 0, 1, tzinfo=dt.UTC).timestamp() * 1000)
    assert row_of(sns(EVENT, SNS_ID, published), sent=sent_after_midnight).create_date == day
    seconds = published.replace(".999", "").replace(".000", "")  # EventBridge's form
    assert row_of(eventbridge(EVENT, EB_ID, seconds), sent=sent_after_midnight).create_date == day
    # A raw body keeps SentTimestamp's date
    raw = row_of(orjson.dumps(EVENT).decode(), sent=sent_after_midnight)
    assert raw.create_date == dt.date(2023, 11, 15)


SNS_BODY = sns(EVENT, SNS_ID)
EB_BODY = eventbridge(EVENT, EB_ID)


@pytest.mark.parametrize(
    ("body", "code", "key"),
    [
        # SNS
        (replaced(SNS_BODY, MessageId="not-a-uuid"), "envelope_invalid_id", "m1"),
        (replaced(SNS_BODY, MessageId="a" * 200), "envelope_invalid_id", "m1"),
        (replaced(SNS_BODY, MessageId=""), "envelope_invalid_id", "m1"),
        (replaced(SNS_BODY, Timestamp="yesterday"), "envelope_invalid_time", f"sns:{SNS_ID}"),
        (
            replaced(SNS_BODY, Timestamp="2023-11-14T22:13:20"),
            "envelope_invalid_time",
            f"sns:{SNS_ID}",
        ),
        (
            replaced(SNS_BODY, Timestamp="2023-02-30T00:00:00Z"),
            "envelope_invalid_time",
            f"sns:{SNS_ID}",
        ),
        (
            replaced(SNS_BODY, Message="user_id=u&ip=" + IP),
            "envelope_event_not_json",
            f"sns:{SNS_ID}",
        ),
        (replaced(SNS_BODY, Message="[1, 2]"), "envelope_event_not_object", f"sns:{SNS_ID}"),
        (replaced(SNS_BODY, Message='"text"'), "envelope_event_not_object", f"sns:{SNS_ID}"),
        # EventBridge
        (replaced(EB_BODY, id=42), "envelope_invalid_id", "m1"),
        (replaced(EB_BODY, id=None), "envelope_invalid_id", "m1"),
        (replaced(EB_BODY, time="14/11/2023"), "envelope_invalid_time", f"eventbridge:{EB_ID}"),
        (replaced(EB_BODY, time=1700000000), "envelope_invalid_time", f"eventbridge:{EB_ID}"),
        (replaced(EB_BODY, detail=None), "envelope_no_event", f"eventbridge:{EB_ID}"),
        (replaced(EB_BODY, detail=[EVENT]), "envelope_event_not_object", f"eventbridge:{EB_ID}"),
        (
            replaced(EB_BODY, detail=orjson.dumps(EVENT).decode()),
            "envelope_event_not_object",
            f"eventbridge:{EB_ID}",
        ),
    ],
)
def test_a_malformed_envelope_is_a_reject_with_its_own_reason(
    body: str, code: str, key: str
) -> None:
    rejection = reject_of(body)
    assert (rejection.reason_code, rejection.message_id) == (code, key)
    assert rejection.body_kind == "object"
    assert rejection.reason
    expect_absent([IP, DEVICE], rejection.reason, "the reason")
    expect_absent([IP, DEVICE], rejection.body or "", "the kept body")


@pytest.mark.parametrize(
    ("body", "wrapping", "code"),
    [
        (without(SNS_BODY, "Message"), "sns", "envelope_no_event"),
        (without(SNS_BODY, "MessageId"), "sns", "envelope_invalid_id"),
        (without(SNS_BODY, "Timestamp"), "sns", "envelope_invalid_time"),
        (replaced(SNS_BODY, Message=EVENT), "sns", "envelope_event_not_json"),
        (without(EB_BODY, "detail"), "eventbridge", "envelope_no_event"),
        (without(EB_BODY, "time"), "eventbridge", "envelope_invalid_time"),
        (orjson.dumps(EVENT).decode(), "sns", "not_envelope"),
        (orjson.dumps(EVENT).decode(), "eventbridge", "not_envelope"),
        (EB_BODY, "sns", "not_envelope"),
        (SNS_BODY, "eventbridge", "not_envelope"),
    ],
)
def test_an_expected_envelope_that_is_missing_or_incomplete_is_a_reject(
    body: str, wrapping: Wrapping, code: str
) -> None:
    rejection = reject_of(body, wrapping)
    assert rejection.reason_code == code
    assert "INGESTOR_ENVELOPE" in rejection.reason or code != "not_envelope"


def test_an_expected_envelope_is_unwrapped_as_in_auto() -> None:
    assert row_of(SNS_BODY, "sns") == row_of(SNS_BODY)
    assert row_of(EB_BODY, "eventbridge") == row_of(EB_BODY)


def test_a_raw_event_where_an_envelope_is_expected_keeps_its_fields_masked() -> None:
    rejection = reject_of(orjson.dumps(EVENT).decode(), "sns")
    assert rejection.message_id == "m1"
    assert rejection.body is not None
    kept = orjson.loads(rejection.body)
    assert kept["ip"] == MASKER.mask_ip(IP)
    assert kept["device_id"] == MASKER.mask_device_id(DEVICE)
    assert "#envelope" not in kept
    assert rejection.user_digest == MASKER.digest_user(USER)


def test_none_reads_an_sns_shaped_body_as_the_event_itself() -> None:
    # Then it has no user_id: a reject, under its SQS MessageId
    rejection = reject_of(SNS_BODY, "none")
    assert (rejection.reason_code, rejection.message_id) == ("missing_user_id", "m1")
    assert rejection.body is not None
    assert "#envelope" not in orjson.loads(rejection.body)


@pytest.mark.parametrize(
    "event",
    [
        {**EVENT, "Type": "Notification"},  # a field named Type alone is not an envelope
        {**EVENT, "Type": "Notification", "Message": "hello"},
        {**EVENT, "detail-type": "x", "source": "y"},
        {**EVENT, "detail": {"user_id": "someone-else"}},
    ],
)
def test_auto_takes_only_a_whole_envelope_shape_for_an_envelope(event: dict[str, Any]) -> None:
    row = row_of(orjson.dumps(event).decode())
    assert (row.message_id, row.user_id) == ("m1", USER)


def test_the_event_inside_breaks_the_same_rules_as_a_raw_one() -> None:
    bad = {**EVENT, "app_version": "1.2.3.4"}
    for body in (sns(bad, SNS_ID), eventbridge(bad, EB_ID)):
        rejection = reject_of(body)
        assert rejection.reason_code == "invalid_app_version"
        assert rejection.message_id.endswith(SNS_ID) or rejection.message_id.endswith(EB_ID)
    junk = {"foo": "oops_wrong_msg_type", "bar": "123"}
    assert reject_of(sns(junk, SNS_ID)).reason_code == "missing_user_id"


def test_a_rejected_wrapped_body_keeps_no_plaintext_of_the_event_or_the_envelope() -> None:
    # Given an SNS notification whose event breaks a rule and carries PII where it should
    # and where it should not, and whose own Subject and MessageAttributes carry PII too
    event = {
        "user_id": USER,
        "app_version": "v2",
        "ip": IP,
        "device_id": DEVICE,
        "note": f"from {IP}",
        "nested": {"device_id": DEVICE},
    }
    body = sns(
        event,
        SNS_ID,
        Subject=f"login from {IP}",
        MessageAttributes={
            "client_ip": {"Type": "String", "Value": IP},
            DEVICE: {"Type": "String", "Value": DEVICE},
        },
        Unknown=f"{DEVICE} {IP}",
    )
    # When it is rejected
    rejection = reject_of(body)
    # Then neither the kept body nor the reason holds the plaintext
    assert rejection.reason_code == "invalid_app_version"
    assert rejection.body is not None
    expect_absent([IP, DEVICE, "client_ip"], rejection.body, "the kept body")
    expect_absent([IP, DEVICE], rejection.reason, "the reason")
    # The event's login fields are kept at the top as for a raw body (tokens listed for
    # erasure and rotation, the user's digest for forget --user-id)
    kept = orjson.loads(rejection.body)
    assert kept["ip"] == MASKER.mask_ip(IP)
    assert kept["device_id"] == MASKER.mask_device_id(DEVICE)
    assert kept["user_id"] == USER
    assert kept["note"] == {"type": "string", "size": len(f"from {IP}")}
    assert set(rejection.pii_tokens) == {MASKER.mask_ip(IP), MASKER.mask_device_id(DEVICE)}
    assert rejection.user_digest == MASKER.digest_user(USER)
    # The envelope: what is known to be safe as sent, the rest by name, type and size
    envelope = kept["#envelope"]
    assert envelope["#format"] == "sns"
    assert (envelope["Type"], envelope["MessageId"]) == ("Notification", SNS_ID)
    assert envelope["Timestamp"] == "2023-11-14T22:13:20.123Z"
    assert envelope["Subject"] == {"type": "string", "size": len(f"login from {IP}")}
    assert envelope["MessageAttributes"] == {"type": "object", "size": 2}
    assert envelope["Message"]["type"] == "string"
    assert envelope["TopicArn"]["type"] == "string"


def test_a_rejected_eventbridge_body_describes_its_own_fields() -> None:
    body = eventbridge({"user_id": USER, "ip": "not an address"}, EB_ID, source=f"app {IP}")
    rejection = reject_of(body)
    assert rejection.reason_code == "invalid_ip"
    assert rejection.body is not None
    expect_absent([IP], rejection.body, "the kept body")
    envelope = orjson.loads(rejection.body)["#envelope"]
    assert (envelope["#format"], envelope["id"], envelope["version"]) == ("eventbridge", EB_ID, "0")
    assert envelope["source"] == {"type": "string", "size": len(f"app {IP}")}
    assert envelope["detail"] == {"type": "object", "size": 2}


def test_an_unsafe_envelope_field_is_described_not_kept() -> None:
    # An id or a time that is not what AWS sends may be anything: described
    body = replaced(SNS_BODY, MessageId=IP, Timestamp=DEVICE, Type="Notification")
    rejection = reject_of(body, "sns")
    assert rejection.reason_code == "envelope_invalid_id"
    assert rejection.body is not None
    expect_absent([IP, DEVICE], rejection.body, "the kept body")
    envelope = orjson.loads(rejection.body)["#envelope"]
    assert envelope["MessageId"] == {"type": "string", "size": len(IP)}
    # The event inside was still read: its fields are kept (masked) beside the envelope
    assert orjson.loads(rejection.body)["ip"] == MASKER.mask_ip(IP)


def test_a_valid_key_always_fits_the_message_id_column() -> None:
    longest = "F" * 8 + "-FFFF" * 3 + "-" + "F" * 12
    for body in (sns(EVENT, longest), eventbridge(EVENT, longest)):
        assert len(row_of(body).message_id) <= 128


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("2023-11-14T22:13:20.123Z", dt.date(2023, 11, 14)),
        ("2023-11-14T22:13:20Z", dt.date(2023, 11, 14)),
        ("2023-11-14T22:13:20+00:00", dt.date(2023, 11, 14)),
        ("0001-01-01T00:00:00+01:00", None),  # before year 1 in UTC
        ("9999-12-31T23:59:59-01:00", None),  # after year 9999 in UTC
        ("2023-11-14", None),  # a date names no instant
        ("2023-11-14T22:13:20", None),  # nor a time without an offset
        ("2" * 100, None),
        (None, None),
        (1_700_000_000, None),
    ],
)
def test_utc_day(text: object, day: dt.date | None) -> None:
    assert utc_day(text) == day


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["user_id", "ip", "device_id", "locale", "app_version", "Type", "x"]),
        st.one_of(st.none(), st.text(max_size=20), st.integers(-(2**63), 2**63 - 1), st.booleans()),
    )
)
def test_any_body_wrapped_gives_the_outcome_it_gives_raw(event: dict[str, Any]) -> None:
    raw = process(orjson.dumps(event)).outcome
    for body in (sns(event, SNS_ID), eventbridge(event, EB_ID)):
        wrapped = process(body).outcome
        assert type(wrapped) is type(raw)
        if isinstance(raw, LoginRow):
            assert isinstance(wrapped, LoginRow)
            assert wrapped[1:-1] == raw[1:-1]
        else:
            assert isinstance(wrapped, Rejection)
            assert wrapped.reason_code == raw.reason_code
            assert wrapped.pii_tokens == raw.pii_tokens
            assert wrapped.user_digest == raw.user_digest


def corpus() -> list[str]:
    lines = []
    for path in sorted(CORPUS.glob("*.jsonl")):
        lines += path.read_text().splitlines()
    return lines


def test_the_real_messages_wrapped_in_either_envelope_load_as_they_do_raw() -> None:
    bodies = corpus()
    assert len(bodies) == 101
    for line in bodies:
        raw = process(line).outcome
        for body in (sns(line), eventbridge(orjson.loads(line))):
            wrapped = process(body).outcome
            assert type(wrapped) is type(raw)
            if isinstance(raw, Rejection):  # the junk line: no user_id, whatever wraps it
                assert isinstance(wrapped, Rejection)
                assert (raw.reason_code, wrapped.reason_code) == ("missing_user_id",) * 2
                assert wrapped.message_id.split(":")[0] in ("sns", "eventbridge")
            else:
                assert isinstance(wrapped, LoginRow)
                assert wrapped[1:-1] == raw[1:-1]
                assert uuid.UUID(wrapped.message_id.split(":", 1)[1])


def test_the_demo_publishes_a_tenth_through_sns_and_one_notification_twice() -> None:
    plain = generate(2_000, seed=5)
    wrapped = generate(2_000, seed=5, sns_rate=0.1)
    ids = [event.sns_id for event in wrapped if event.sns_id]
    # About a tenth, each a notification around the event of the same seed; the first two
    # messages are one notification delivered twice
    assert 150 < len(ids) < 250
    assert wrapped[0] == wrapped[1]
    assert len(ids) - len(set(ids)) == 1
    for before, after in list(zip(plain, wrapped, strict=True))[2:]:
        if after.sns_id is None:
            assert after == before
            continue
        notification = orjson.loads(after.body)
        assert (notification["Message"], notification["MessageId"]) == (before.body, after.sns_id)
        assert (after.valid, after.kind) == (before.valid, before.kind)
        outcome = process(after.body).outcome
        assert outcome.message_id == f"sns:{after.sns_id}"
        assert isinstance(outcome, LoginRow) == before.valid
