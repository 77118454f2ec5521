"""Synthetic login events with the quirks of real traffic (PRODUCT.md section 2), from a
fixed seed: null locales, odd versions, IPv6 and IPv4-mapped addresses, repeated devices
and addresses, the same event sent twice, and junk; on request, some published through
SNS (the SQS body an SNS notification around the event), one of them delivered twice.
For the demo, tests and benchmarks."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import orjson

VERSIONS = ("2.3.0", "0.96", "2.00", "7.31", "2", "0.9.6", "3.10.2", "1.0")
DEVICE_TYPES = ("android", "ios", "web")
LOCALES = ("RU", "US", "DE", "FR", "IN", "BR", None)


@dataclass(frozen=True, slots=True)
class SyntheticEvent:
    body: str
    valid: bool
    kind: str  # "valid", "repeat" (same event sent again as a new message), or a junk name
    sns_id: str | None = None  # the SNS MessageId, when the body is an SNS notification


class EventFactory:
    """Draws events; addresses and devices come from pools so that values repeat."""

    def __init__(self, seed: int, pool_size: int = 500) -> None:
        self._rng = random.Random(seed)
        self._ips: list[str] = []
        for _ in range(pool_size):
            self._ips.append(self._ip())
        self._devices = [self._device_id() for _ in range(pool_size)]

    def valid(self) -> dict[str, object]:
        rng = self._rng
        event: dict[str, object] = {
            "user_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "app_version": rng.choice(VERSIONS),
            "device_type": rng.choice(DEVICE_TYPES),
            "ip": rng.choice(self._ips),
            "locale": rng.choice(LOCALES),
            "device_id": rng.choice(self._devices),
        }
        if rng.random() < 0.03:
            del event[rng.choice(["device_type", "ip", "device_id", "app_version"])]
        return event

    def junk(self) -> tuple[str, str]:
        kind, make = self._rng.choice(list(_JUNK.items()))
        return kind, make(self)

    def _ip(self) -> str:
        rng = self._rng
        octets = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
        roll = rng.random()
        if roll < 0.1:
            return f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(65536):x}"
        if roll < 0.15 and self._ips and ":" not in self._ips[-1]:
            return f"::ffff:{self._ips[-1]}"  # an address already drawn, written another way
        return octets

    def _device_id(self) -> str:
        rng = self._rng
        return f"{rng.randrange(1000):03}-{rng.randrange(100):02}-{rng.randrange(10000):04}"

    def _with(self, **changes: object) -> str:
        event = self.valid()
        event.update(changes)
        return orjson.dumps(event).decode()


_JUNK: dict[str, Callable[[EventFactory], str]] = {
    "wrong_type": lambda f: '{"foo": "oops_wrong_msg_type", "bar": "123"}',
    "not_json": lambda f: "user_id=42&ip=" + f._ip(),
    "array": lambda f: orjson.dumps([f.valid()]).decode(),
    "bad_version": lambda f: f._with(app_version="1.2.3.4"),
    "bad_ip": lambda f: f._with(ip="999.1.1.1"),
    "no_user": lambda f: f._with(user_id=None),
    "long_locale": lambda f: f._with(locale="x" * 40),
    "number_version": lambda f: f._with(app_version=2.3),
    "nested": lambda f: "[" * 100 + "]" * 100,
}


def generate(
    count: int,
    seed: int,
    junk_rate: float = 0.05,
    repeat_rate: float = 0.02,
    sns_rate: float = 0.0,
) -> list[SyntheticEvent]:
    """`count` events: mostly valid, about `junk_rate` junk and `repeat_rate` repeats.
    With `sns_rate`, about that share are SNS notifications around the event, and the
    first two are one notification delivered twice (the same SNS MessageId)."""
    events = _events(count, seed, junk_rate, repeat_rate)
    if sns_rate <= 0 or count < 2:
        return events
    rng = random.Random(seed + 2)  # another stream: the events are those of sns_rate=0
    published = dt.datetime.now(dt.UTC)
    wrapped = [
        sns_wrapped(event, rng, published) if i == 0 or rng.random() < sns_rate else event
        for i, event in enumerate(events)
    ]
    return [wrapped[0], wrapped[0], *wrapped[2:]]


def sns_wrapped(
    event: SyntheticEvent, rng: random.Random, published: dt.datetime
) -> SyntheticEvent:
    """`event` as SNS delivers it to an SQS subscriber (raw message delivery off)."""
    sns_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    topic = "arn:aws:sns:us-east-1:000000000000:logins"
    notification = {
        "Type": "Notification",
        "MessageId": sns_id,
        "TopicArn": topic,
        "Message": event.body,
        "Timestamp": published.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "SignatureVersion": "1",
        "Signature": "ZGVtbw==",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-demo.pem",
        "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic}:demo",
    }
    return SyntheticEvent(orjson.dumps(notification).decode(), event.valid, event.kind, sns_id)


def _events(count: int, seed: int, junk_rate: float, repeat_rate: float) -> list[SyntheticEvent]:
    factory = EventFactory(seed)
    rng = random.Random(seed + 1)
    events: list[SyntheticEvent] = []
    for _ in range(count):
        roll = rng.random()
        if roll < junk_rate:
            kind, body = factory.junk()
            events.append(SyntheticEvent(body, False, kind))
        elif roll < junk_rate + repeat_rate and events and events[-1].valid:
            events.append(SyntheticEvent(events[-1].body, True, "repeat"))
        else:
            events.append(SyntheticEvent(orjson.dumps(factory.valid()).decode(), True, "valid"))
    return events
