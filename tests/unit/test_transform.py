"""The transform stage: every body becomes a row or a reject, and no plaintext PII leaks."""

from __future__ import annotations

import datetime as dt
import json
import re

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestor.models import Envelope, LoginRow, Rejection
from ingestor.table import canonical_ip
from ingestor.transform.masking import HmacMasker
from ingestor.transform.transformer import Transformer
from tests.fakes import SENT_MS

MASKER = HmacMasker(b"t" * 32)
TRANSFORMER = Transformer(MASKER)
IP, DEVICE = "199.172.111.135", "593-47-5928"
EVENT = {
    "user_id": "424cdd21-063a-43a7-b91b-7ca1a833afae",
    "app_version": "2.3.0",
    "device_type": "android",
    "ip": IP,
    "locale": "RU",
    "device_id": DEVICE,
}


def process(body: str | bytes) -> LoginRow | Rejection:
    return TRANSFORMER.process(Envelope("m1", "h1", body, SENT_MS, 2)).outcome


def test_the_example_event_becomes_a_masked_row() -> None:
    row = process(orjson.dumps(EVENT).decode())
    assert row == LoginRow(
        "m1",
        EVENT["user_id"],
        "android",
        MASKER.mask_ip(IP),
        MASKER.mask_device_id(DEVICE),
        "RU",
        2_003_000,
        dt.date(2023, 11, 14),
    )


def test_null_locale_gives_a_null_column() -> None:
    row = process(orjson.dumps({**EVENT, "locale": None}))
    assert isinstance(row, LoginRow)
    assert row.locale is None


def test_ipv4_mapped_ipv6_masks_like_ipv4() -> None:
    mapped = process(orjson.dumps({**EVENT, "ip": "::ffff:" + IP}))
    plain = process(orjson.dumps(EVENT))
    assert isinstance(mapped, LoginRow)
    assert isinstance(plain, LoginRow)
    assert mapped.masked_ip == plain.masked_ip


@pytest.mark.parametrize(
    ("body", "code", "kind"),
    [
        (b"\xff\xfe{}", "not_utf8", "not_utf8"),
        ("x\udc80", "not_utf8", "not_utf8"),
        ("not json at all", "not_json", "not_json"),
        ("", "not_json", "not_json"),
        ("[1, 2]", "not_object", "array"),
        ('"a string"', "not_object", "string"),
        ("42", "not_object", "number"),
        ("null", "not_object", "null"),
        ("[" * 5000 + "]" * 5000, "not_json", "not_json"),
        ('{"foo": "oops_wrong_msg_type", "bar": "123"}', "missing_user_id", "object"),
        ('{"user_id": "u", "app_version": "2.3.0.1"}', "invalid_app_version", "object"),
        ('{"user_id": "u", "nested": ' + "[" * 500 + "]" * 500 + "}", None, None),
    ],
)
def test_broken_bodies_become_rejects_with_reasons(
    body: str | bytes, code: str | None, kind: str | None
) -> None:
    outcome = process(body)
    if code is None:  # deeply nested junk inside a valid event is ignored
        assert isinstance(outcome, LoginRow)
        return
    assert isinstance(outcome, Rejection)
    assert (outcome.reason_code, outcome.body_kind) == (code, kind)
    assert outcome.reason
    assert outcome.receive_count == 2
    assert outcome.sent_at == dt.datetime.fromtimestamp(SENT_MS / 1000, dt.UTC)


def test_a_rejected_object_keeps_its_login_fields_masked_and_describes_the_rest() -> None:
    # Given junk that carries PII at the top, nested, under odd spellings and odd types
    body = {
        "foo": "oops",
        "ip": "::ffff:" + IP,
        "inner": [{"device_id": DEVICE}, {"IP_Address": IP}],
        "Device-Id": 5935475928,
    }
    # When it is rejected
    outcome = process(orjson.dumps(body))
    # Then the stored body has the ip's token, the same as loaded rows get, and of the
    # other keys only their names, types and sizes (an allow-list: PRODUCT.md rule 6)
    assert isinstance(outcome, Rejection)
    assert outcome.body is not None
    assert orjson.loads(outcome.body) == {
        "foo": {"type": "string", "size": 4},
        "ip": MASKER.mask_ip(IP),
        "inner": {"type": "array", "size": 2},
        "Device-Id": {"type": "number", "size": 10},
    }
    assert outcome.pii_tokens == (MASKER.mask_ip(IP),)
    assert IP not in outcome.body
    assert DEVICE not in outcome.body
    assert "5935475928" not in outcome.body


def test_a_body_that_is_not_an_object_is_not_stored() -> None:
    outcome = process(f'["{IP}", "{DEVICE}"]')
    assert isinstance(outcome, Rejection)
    assert outcome.body is None
    assert outcome.body_bytes == len(f'["{IP}", "{DEVICE}"]')
    assert outcome.body_digest == MASKER.digest_body(f'["{IP}", "{DEVICE}"]'.encode())


def test_an_invalid_ip_in_a_rejected_body_is_masked_too() -> None:
    outcome = process(orjson.dumps({**EVENT, "ip": "300.1.1.1"}))
    assert isinstance(outcome, Rejection)
    assert outcome.reason_code == "invalid_ip"
    assert outcome.body is not None
    assert "300.1.1.1" not in outcome.body
    assert DEVICE not in outcome.body


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
field_values = st.one_of(json_values, st.sampled_from([IP, DEVICE, "2.3.0", "::1", ""]))


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        json_values.map(json.dumps),
        st.dictionaries(st.sampled_from([*EVENT, "other"]), field_values, max_size=8).map(
            json.dumps
        ),
    )
)
def test_any_body_becomes_a_row_or_a_reject_and_never_raises(body: str | bytes) -> None:
    outcome = process(body)
    assert isinstance(outcome, LoginRow | Rejection)
    if isinstance(outcome, Rejection):
        assert outcome.reason_code != "internal_error"
        assert outcome.reason
        if outcome.body is not None:  # PII-named fields hold tokens, whatever they held
            stored = orjson.loads(outcome.body)
            for field in ("ip", "device_id"):
                if stored.get(field) is not None:
                    assert re.fullmatch("[0-9a-f]{64}", stored[field])
    else:
        assert outcome.user_id


def test_canonical_ip_rejects_non_addresses() -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        canonical_ip("localhost")


def test_a_rejected_object_nested_deeper_than_json_can_be_written_is_described() -> None:
    # orjson reads 1024 levels but writes at most 254: the nested value is described, not
    # written back
    deep = '{"a": ' + "[" * 300 + "]" * 300 + "}"
    outcome = process(deep)
    assert isinstance(outcome, Rejection)
    assert (outcome.reason_code, outcome.body, outcome.body_kind) == (
        "missing_user_id",
        '{"a":{"type":"array","size":1}}',
        "object",
    )
