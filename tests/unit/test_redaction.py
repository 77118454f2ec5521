"""What a reject keeps of its body: an allow-list (PRODUCT.md rule 6). Plaintext planted
anywhere a producer could put it (any key, any depth, inside strings and key names) must
not survive, whatever the body's shape."""

from __future__ import annotations

import ipaddress
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestor.models import Envelope, LoginRow, Rejection
from ingestor.transform.masking import HmacMasker
from ingestor.transform.transformer import Transformer
from tests.fakes import SENT_MS
from tests.pii import expect_absent, expect_same

MASKER = HmacMasker(b"redaction-test-key-0123456789abcdef")
TRANSFORMER = Transformer(MASKER)
KNOWN = ("user_id", "device_type", "locale", "app_version")

ipv4 = st.tuples(
    st.integers(1, 223), st.integers(0, 255), st.integers(0, 255), st.integers(1, 254)
).map(lambda parts: ".".join(map(str, parts)))
ipv6 = (
    st.ip_addresses(v=6)
    .filter(lambda a: a.ipv4_mapped is None)
    .flatmap(lambda a: st.sampled_from([a.compressed, a.exploded]))
    .filter(lambda text: len(text) >= 7)
)
device_id = st.from_regex(r"[0-9]{3}-[0-9]{2}-[0-9]{4}", fullmatch=True)
planted = st.one_of(ipv4, ipv6, device_id)
words = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)


def carriers(value: str) -> st.SearchStrategy[Any]:
    """`value` as a producer might carry it: as is, in free text, in a JSON string, in a
    list, as a key name, as a number-like string with padding."""
    return st.one_of(
        st.just(value),
        st.tuples(words, words).map(lambda w: f"{w[0]} my ip is {value} {w[1]}"),
        st.just(orjson.dumps({"ip": value, "note": f"from {value}"}).decode()),
        st.just([value, 1, None]),
        st.just({value: True}),
        st.just({"x_forwarded_for": f"{value}, 10.0.0.1"}),
    )


def nest(inner: Any, keys: list[str]) -> Any:
    for key in reversed(keys):
        inner = {key: inner}
    return inner


@st.composite
def hostile_bodies(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """A JSON object with PII planted under random keys, at random depths; and the
    planted values."""
    values = draw(st.lists(planted, min_size=1, max_size=4))
    event: dict[str, Any] = {"user_id": draw(st.sampled_from(["u-1", "", None, 7]))}
    # A rule this event breaks, so it becomes a reject (most of the time)
    event[draw(st.sampled_from(["app_version", "locale"]))] = draw(
        st.sampled_from(["v1.2.3.4", "x" * 40, 12])
    )
    for value in values:
        keys = draw(st.lists(words.filter(lambda k: k not in KNOWN), min_size=1, max_size=5))
        event[keys[0]] = nest(draw(carriers(value)), keys[1:])
    if draw(st.booleans()):  # also as a top-level key name
        event[f"{values[0]}"] = draw(st.sampled_from([1, "x", None]))
    return event, values


def stored_text(outcome: LoginRow | Rejection) -> str:
    """Everything of the outcome that reaches a table, as text."""
    if isinstance(outcome, LoginRow):
        return repr(tuple(outcome))
    return "\n".join(
        str(part)
        for part in (
            outcome.reason_code,
            outcome.reason,
            outcome.body,
            outcome.body_kind,
            outcome.body_digest,
            outcome.pii_tokens,
            getattr(outcome, "user_digest", None),
        )
    )


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_bodies())
def test_no_planted_address_or_device_id_survives_in_what_a_reject_keeps(
    case: tuple[dict[str, Any], list[str]],
) -> None:
    event, values = case
    body = orjson.dumps(event)
    outcome = TRANSFORMER.process(Envelope("m", "h", body, SENT_MS)).outcome
    expect_absent(values, stored_text(outcome), "what the reject keeps")
    if isinstance(outcome, Rejection):
        assert outcome.body is not None
        assert isinstance(orjson.loads(outcome.body), dict)


def redacted(event: dict[str, Any]) -> dict[str, Any]:
    outcome = TRANSFORMER.process(Envelope("m", "h", orjson.dumps(event), SENT_MS)).outcome
    assert isinstance(outcome, Rejection)
    assert outcome.body is not None
    result: dict[str, Any] = orjson.loads(outcome.body)
    return result


def test_the_reviews_examples_keep_only_names_types_and_sizes() -> None:
    address = "203.0.113.99"
    assert redacted({"user_id": "", "client_ip": address}) == {
        "user_id": {"type": "string", "size": 0},
        "client_ip": {"type": "string", "size": 12},
    }
    body = redacted(
        {
            "user_id": "u-1",
            "app_version": "v9",
            "remote_addr": address,
            "headers": {"x_forwarded_for": address},
            "payload": orjson.dumps({"ip": address}).decode(),
            "note": f"my ip is {address}",
            "tags": [address],
        }
    )
    assert body == {
        "user_id": "u-1",
        "app_version": {"type": "string", "size": 2},
        "remote_addr": {"type": "string", "size": len(address)},
        "headers": {"type": "object", "size": 1},
        "payload": {"type": "string", "size": len('{"ip":"203.0.113.99"}')},
        "note": {"type": "string", "size": len(f"my ip is {address}")},
        "tags": {"type": "array", "size": 1},
    }


def test_login_fields_are_kept_as_sent_when_they_pass_their_rules() -> None:
    ip, device = "198.51.100.7", "123-45-6789"
    body = redacted(
        {
            "user_id": "u-2",
            "device_type": "android",
            "locale": "x" * 40,
            "app_version": "2.3.0",
            "ip": ip,
            "device_id": device,
            "extra": 1,
        }
    )
    assert body["user_id"] == "u-2"
    assert body["device_type"] == "android"
    assert body["app_version"] == "2.3.0"
    assert body["locale"] == {"type": "string", "size": 40}
    assert body["extra"] == {"type": "number", "size": 1}
    # ip and device_id are masked as in user_logins: the same tokens
    assert body["ip"] == MASKER.mask_ip(ip)
    assert body["device_id"] == MASKER.mask_device_id(device)
    expect_same(ipaddress.ip_address(ip).version, 4, "the planted address")


def test_a_key_name_that_could_hold_a_value_is_not_kept() -> None:
    body = redacted(
        {
            "user_id": "u-3",
            "app_version": "x",
            "203.0.113.5": 1,
            "id 123-45-6789": 2,
            "2001:db8::1": 3,
            "plain_name": 4,
            "with-dash_and_9": 5,
            "\x1b[2J": 6,
        }
    )
    assert list(body) == [
        "user_id",
        "app_version",
        "#3",
        "#4",
        "#5",
        "plain_name",
        "with-dash_and_9",
        "#8",
    ]
    assert body["#3"] == {"type": "number", "size": 1, "name_size": 11}
    assert body["plain_name"] == {"type": "number", "size": 1}


def test_a_huge_object_keeps_a_bounded_description() -> None:
    event: dict[str, Any] = {"user_id": "u-4", "app_version": "x"}
    event.update((f"k{i}", i) for i in range(5_000))
    body = redacted(event)
    assert len(body) <= 70
    assert body["#more"] == {"type": "keys", "size": 5_000 - 64}


def test_a_deep_body_is_described_not_dropped() -> None:
    deep = (
        '{"user_id": "u-5", "app_version": "x", "ip": "192.0.2.9", "a": '
        + "[" * 900
        + "]" * 900
        + "}"
    )
    outcome = TRANSFORMER.process(Envelope("m", "h", deep, SENT_MS)).outcome
    assert isinstance(outcome, Rejection)
    assert outcome.body is not None
    assert orjson.loads(outcome.body)["a"] == {"type": "array", "size": 1}
    assert outcome.pii_tokens == (MASKER.mask_ip("192.0.2.9"),)
