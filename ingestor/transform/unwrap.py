"""Events that arrive wrapped: an SNS notification or an EventBridge event around the
login event (PRODUCT.md rules 1 and 5; the setting INGESTOR_ENVELOPE).

SNS delivers to an SQS subscriber (unless raw message delivery is on) a notification whose
`Message` is the published event as JSON text, `Timestamp` the time it was published and
`MessageId` an id that every copy shares (SNS resends a notification with its id). An
EventBridge rule with an SQS target delivers the event with the object put in `detail`,
its `time` and its `id`. The event inside is validated and loaded like a raw body; its
row is keyed by the wrapper's id, as `sns:<MessageId>` or `eventbridge:<id>` (never equal
to an SQS MessageId, a bare UUID), and dated by the wrapper's time, the same for every
copy. A wrapper that cannot give all three is a reject with an `envelope_*` code.

Both ids are UUIDs (AWS documents them so): any other id is refused rather than stored,
because the body is not authenticated and a key is stored as it is, in plaintext.

Telling a raw body from a wrapper costs one or two dict lookups on the parsed object.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson

from ingestor.models import Wrapping
from ingestor.transform.rules import Invalid, json_kind

_UUID = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")
_TIME_MAX = 64  # longer than any ISO 8601 time; not worth parsing


@dataclass(frozen=True, slots=True)
class Wrapper:
    """One wrapper format: where its id, time and event are, and which of its own fields
    a reject may keep as sent (`safe`: field -> whether a value is known to be safe)."""

    name: str  # the key's prefix and INGESTOR_ENVELOPE's value
    title: str  # in reasons: "an SNS notification"
    id_field: str
    time_field: str
    event_field: str
    event_as_text: bool  # SNS's Message is JSON text; EventBridge's detail is an object
    marker: str  # what a body meant as this wrapper has, in the reason when it has not
    meant: Callable[[dict[str, Any]], bool]
    shaped: Callable[[dict[str, Any]], bool]
    safe: Mapping[str, Callable[[Any], bool]]


@dataclass(frozen=True, slots=True)
class Opened:
    """What a body's wrapper gives. `wrapper` None: the body is not the wrapper expected
    (its `problem` says so, `event` is the body). `key` is None when the id is unusable
    (a reject is then stored under the SQS MessageId), `event` None when there is no
    object inside; `problem` is the first thing wrong, None when all is well."""

    wrapper: Wrapper | None
    key: str | None
    day: dt.date | None
    event: dict[str, Any] | None
    problem: Invalid | None

    def unwrapped(self) -> tuple[dict[str, Any], str, dt.date]:
        """The event, its key and its date; raises the problem when there is one (each
        of the three is None only with a problem)."""
        event, key, day = self.event, self.key, self.day
        if self.problem is None and event is not None and key is not None and day is not None:
            return event, key, day
        raise self.problem or Invalid("internal_error", "the envelope gave no event")


def is_uuid(value: object) -> bool:
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


def utc_day(value: object) -> dt.date | None:
    """The UTC date of an ISO 8601 time with its offset ('2023-11-14T22:13:20.123Z');
    None for anything else (a time without an offset names no instant)."""
    if not isinstance(value, str) or len(value) > _TIME_MAX:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
        return None if moment.tzinfo is None else moment.astimezone(dt.UTC).date()
    except (ValueError, OverflowError):  # overflow: year 1 or 9999 moved across midnight
        return None


def _sns_shaped(body: dict[str, Any]) -> bool:
    return (
        body.get("Type") == "Notification"
        and isinstance(body.get("Message"), str)
        and isinstance(body.get("MessageId"), str)
        and isinstance(body.get("Timestamp"), str)
    )


def _eventbridge_shaped(body: dict[str, Any]) -> bool:
    return all(name in body for name in ("detail-type", "source", "id", "time", "detail"))


SNS = Wrapper(
    name="sns",
    title="an SNS notification",
    id_field="MessageId",
    time_field="Timestamp",
    event_field="Message",
    event_as_text=True,
    marker='"Type": "Notification"',
    meant=lambda body: body.get("Type") == "Notification",
    shaped=_sns_shaped,
    safe={
        "Type": lambda value: value == "Notification",
        "MessageId": is_uuid,
        "Timestamp": lambda value: utc_day(value) is not None,
        "SignatureVersion": lambda value: value in ("1", "2"),
    },
)
EVENTBRIDGE = Wrapper(
    name="eventbridge",
    title="an EventBridge event",
    id_field="id",
    time_field="time",
    event_field="detail",
    event_as_text=False,
    marker='"detail-type"',
    meant=lambda body: "detail-type" in body,
    shaped=_eventbridge_shaped,
    safe={
        "version": lambda value: value == "0",
        "id": is_uuid,
        "time": lambda value: utc_day(value) is not None,
    },
)
WRAPPERS = {wrapper.name: wrapper for wrapper in (SNS, EVENTBRIDGE)}

Opener = Callable[[dict[str, Any]], Opened | None]


def opener(wrapping: Wrapping) -> Opener | None:
    """What to do with a parsed body under INGESTOR_ENVELOPE=`wrapping`: a function that
    returns what its wrapper gives, or None when the body is the event itself; None for
    `none` (no body is looked at)."""
    if wrapping == "none":
        return None
    if wrapping == "auto":
        return _recognised
    return partial(_expected, WRAPPERS[wrapping])


def _recognised(body: dict[str, Any]) -> Opened | None:
    # A raw login event has neither "Type" nor "detail-type": two lookups and done.
    if "Type" in body and SNS.shaped(body):
        return open_wrapper(SNS, body)
    if "detail-type" in body and EVENTBRIDGE.shaped(body):
        return open_wrapper(EVENTBRIDGE, body)
    return None


def event_in(body: dict[str, Any]) -> dict[str, Any]:
    """The event a body holds: the one inside a well-formed SNS or EventBridge envelope,
    else the body itself (for reading a stored original's user_id)."""
    opened = _recognised(body)
    return body if opened is None or opened.event is None else opened.event


def _expected(wrapper: Wrapper, body: dict[str, Any]) -> Opened:
    if wrapper.meant(body):
        return open_wrapper(wrapper, body)
    problem = Invalid(
        "not_envelope",
        f"body is not {wrapper.title} (it has no {wrapper.marker}), and "
        f"INGESTOR_ENVELOPE={wrapper.name} expects one around every event",
    )
    return Opened(None, None, None, body, problem)


def open_wrapper(wrapper: Wrapper, body: dict[str, Any]) -> Opened:
    """The key, date and event `wrapper` gives of `body`, with the first problem found."""
    key, id_problem = _key(wrapper, body.get(wrapper.id_field))
    day = utc_day(body.get(wrapper.time_field))
    event, event_problem = _event(wrapper, body.get(wrapper.event_field))
    time_problem = None if day is not None else _time_problem(wrapper)
    return Opened(wrapper, key, day, event, id_problem or time_problem or event_problem)


def _key(wrapper: Wrapper, value: object) -> tuple[str | None, Invalid | None]:
    if is_uuid(value):
        return f"{wrapper.name}:{value}", None
    got = json_kind(value) if not isinstance(value, str) else f"{len(value)} characters"
    return None, Invalid(
        "envelope_invalid_id",
        f"{wrapper.title}'s {wrapper.id_field} must be a UUID (got {got}): it is the key "
        "that makes every copy of the event one row",
    )


def _time_problem(wrapper: Wrapper) -> Invalid:
    return Invalid(
        "envelope_invalid_time",
        f"{wrapper.title}'s {wrapper.time_field} must be an ISO 8601 time with its offset, "
        "like 2023-11-14T22:13:20.123Z: it gives the row's create_date",
    )


def _event(wrapper: Wrapper, value: object) -> tuple[dict[str, Any] | None, Invalid | None]:
    where = f"{wrapper.title}'s {wrapper.event_field}"
    if value is None:
        return None, Invalid("envelope_no_event", f"{where} is missing: there is no event")
    if wrapper.event_as_text:
        if not isinstance(value, str):
            return None, Invalid(
                "envelope_event_not_json",
                f"{where} must be the event as JSON text (got a JSON {json_kind(value)})",
            )
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as error:  # its message never quotes the text
            return None, Invalid("envelope_event_not_json", f"{where} is not JSON ({error.msg})")
    if not isinstance(value, dict):
        return None, Invalid(
            "envelope_event_not_object", f"{where} is a JSON {json_kind(value)}, not an object"
        )
    return value, None
