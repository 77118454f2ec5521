"""PRODUCT.md section 4: app_version, create_date and field validation."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestor.transform.rules import (
    Invalid,
    TextRule,
    app_version_number,
    app_version_text,
    create_date,
    validate,
)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("2.3.0", 2_003_000),
        ("0.96", 96_000),
        ("2.00", 2_000_000),
        ("2", 2_000_000),
        ("0.9.6", 9_006),
        ("7.31", 7_031_000),
        ("999.999.999", 999_999_999),
        ("0", 0),
    ],
)
def test_app_version_examples(text: str, number: int) -> None:
    assert app_version_number(text) == number


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1.2.3.4",
        "1000",
        "1.1000",
        "v1.2",
        "1..2",
        "1.2.",
        ".1",
        " 1.2",
        "1.2\n",
        "\u0661.\u0662",
        "1,2",
    ],
)
def test_app_version_rejects_other_forms(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is the input
        app_version_number(text)


def test_app_version_keeps_version_order() -> None:
    ordered = ["0.9.6", "0.96", "1", "1.0.1", "1.2", "2.3.0", "2.10", "10.0.0"]
    assert sorted(ordered, key=app_version_number) == ordered


@given(st.lists(st.integers(0, 999), min_size=1, max_size=3))
def test_a_version_reads_back_as_its_canonical_spelling(groups: list[int]) -> None:
    sent = ".".join(str(group) for group in groups)
    canonical = ".".join(str(group) for group in [*groups, 0, 0][:3])
    assert app_version_text(app_version_number(sent)) == canonical
    assert app_version_number(app_version_text(app_version_number(sent))) == app_version_number(
        sent
    )


@pytest.mark.parametrize("number", [-1, -1_000_000, 1_000_000_000, 2**31 - 1])
def test_a_number_no_version_gives_has_no_spelling(number: int) -> None:
    with pytest.raises(ValueError, match="not a stored app_version"):
        app_version_text(number)


def test_create_date_is_the_utc_date_of_sent_timestamp() -> None:
    # Given a message sent one millisecond before and after midnight UTC
    midnight = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    before = int(midnight.timestamp() * 1000) - 1
    # Then the dates are the two UTC days, whatever the local time zone
    assert create_date(before) == dt.date(2024, 2, 29)
    assert create_date(before + 1) == dt.date(2024, 3, 1)


VALID = {
    "user_id": "424cdd21-063a-43a7-b91b-7ca1a833afae",
    "app_version": "2.3.0",
    "device_type": "android",
    "ip": "199.172.111.135",
    "locale": "RU",
    "device_id": "593-47-5928",
}


def test_a_valid_event_is_flattened() -> None:
    fields = validate(dict(VALID))
    assert fields.user_id == VALID["user_id"]
    assert fields.app_version == 2_003_000
    assert fields.ip == "199.172.111.135"
    assert (fields.device_type, fields.locale, fields.device_id) == ("android", "RU", "593-47-5928")


@pytest.mark.parametrize("field", ["device_type", "ip", "device_id", "locale", "app_version"])
@pytest.mark.parametrize("how", ["null", "missing"])
def test_optional_fields_may_be_null_or_missing(field: str, how: str) -> None:
    event = dict(VALID)
    if how == "null":
        event[field] = None
    else:
        del event[field]
    assert getattr(validate(event), field) is None


def test_unknown_fields_are_ignored() -> None:
    assert validate({**VALID, "extra": {"nested": [1, 2]}}).user_id == VALID["user_id"]


@pytest.mark.parametrize(
    ("ip", "canonical"),
    [
        ("::ffff:199.172.111.135", "199.172.111.135"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("::1", "::1"),
    ],
)
def test_ip_is_canonicalised(ip: str, canonical: str) -> None:
    assert validate({**VALID, "ip": ip}).ip == canonical


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"user_id": None}, "missing_user_id"),
        ({"user_id": ""}, "missing_user_id"),
        ({"user_id": 42}, "invalid_user_id"),
        ({"user_id": "u" * 129}, "invalid_user_id"),
        ({"device_type": "d" * 33}, "invalid_device_type"),
        ({"device_type": ["android"]}, "invalid_device_type"),
        ({"locale": "l" * 33}, "invalid_locale"),
        ({"locale": ""}, "invalid_locale"),
        ({"ip": "999.1.1.1"}, "invalid_ip"),
        ({"ip": "1.2.3"}, "invalid_ip"),
        ({"ip": "01.2.3.4"}, "invalid_ip"),
        ({"ip": 3232235777}, "invalid_ip"),
        ({"device_id": 5935475928}, "invalid_device_id"),
        ({"device_id": "d" * 257}, "invalid_device_id"),
        ({"app_version": 2.3}, "invalid_app_version"),
        ({"app_version": "1.2.3.4"}, "invalid_app_version"),
        ({"app_version": True}, "invalid_app_version"),
        ({"user_id": "a\x00b"}, "invalid_user_id"),
    ],
)
def test_broken_rules_are_rejected_with_a_code(change: dict[str, object], code: str) -> None:
    with pytest.raises(Invalid) as raised:
        validate({**VALID, **change})
    assert raised.value.code == code
    assert raised.value.reason  # a sentence a person can act on


def test_missing_user_id_is_rejected() -> None:
    event = dict(VALID)
    del event["user_id"]
    with pytest.raises(Invalid, match="user_id is required"):
        validate(event)


@pytest.mark.parametrize("field", ["ip", "device_id"])
def test_reasons_never_quote_pii(field: str) -> None:
    secret = "10.1.2.3.4-secret" if field == "ip" else "d" * 300
    with pytest.raises(Invalid) as raised:
        validate({**VALID, field: secret})
    assert secret not in raised.value.reason


@given(
    st.one_of(
        st.text(max_size=40),
        st.text(st.characters(codec="utf-8"), min_size=30, max_size=34),
        st.text(st.sampled_from("a \t\n\x00\x1f\x7f\x80\x9f\xa0\u2028\u200b\ud800é"), max_size=8),
    )
)
def test_a_text_rule_accepts_exactly_what_it_states(value: str) -> None:
    # 1 to `limit` characters, none of them a control character (C0 or DEL): whichever
    # path the rule takes (printable text at once, other text by its pattern)
    rule = TextRule("locale", 32)
    stated = 1 <= len(value) <= 32 and not any(c < " " or c == "\x7f" for c in value)
    try:
        accepted = rule.checked(value) == value
    except Invalid:
        accepted = False
    assert accepted == stated
