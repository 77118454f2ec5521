"""The field rules of PRODUCT.md section 4: what a valid login event is, and how it maps.

`validate` returns the validated, flattened fields, or raises `Invalid` with a reason a
person can act on. Reasons name fields and describe shapes, never values: a value may be PII.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from ingestor.table import canonical_ip

USER_ID_MAX = 128
DEVICE_TYPE_MAX = 32
LOCALE_MAX = 32
DEVICE_ID_MAX = 256
IP_MAX = 64  # the longest IPv6 text with a zone id fits; anything longer is not an address
APP_VERSION_MAX = 999_999_999  # "999.999.999"

_VERSION = re.compile(r"([0-9]{1,3})(?:\.([0-9]{1,3}))?(?:\.([0-9]{1,3}))?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EPOCH = dt.date(1970, 1, 1)
_MS_PER_DAY = 86_400_000
_DATES: dict[int, dt.date] = {}  # day number -> date: a timedelta per message cost a microsecond
_DATES_KEPT = 1_024
_VERSIONS: dict[str, int] = {}  # valid version text -> number (not PII: an app's versions)
_VERSIONS_KEPT = 4_096


class Invalid(ValueError):
    """A message breaks a rule. `code` groups rejects; `reason` explains this one."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Fields(NamedTuple):
    """A valid event's fields, ip canonicalised, ready to be masked (one per message: a
    NamedTuple is immutable and cheaper to make than a frozen dataclass)."""

    user_id: str
    device_type: str | None
    ip: str | None
    device_id: str | None
    locale: str | None
    app_version: int | None


def app_version_number(text: str) -> int:
    """'2.3.0' -> 2003000: major*1_000_000 + minor*1_000 + patch (order-preserving)."""
    number = _VERSIONS.get(text)
    if number is None:  # an app has few versions live at once: most are looked up
        if len(_VERSIONS) >= _VERSIONS_KEPT:
            _VERSIONS.clear()
        number = _VERSIONS[text] = _version_number(text)
    return number


def _version_number(text: str) -> int:
    match = _VERSION.fullmatch(text)
    if match is None:
        raise ValueError(text)
    major, minor, patch = match.groups()
    return int(major) * 1_000_000 + int(minor or 0) * 1_000 + int(patch or 0)


def app_version_text(number: int) -> str:
    """2003000 -> '2.3.0': the canonical spelling of a stored version ('2.00' and '2' were
    one version, 2000000, and read back as '2.0.0'). Raises ValueError for a number no
    version gives (negative, or past 999.999.999). The database's twin, for analysts, is
    the SQL function ingestor_app_version_text (migration 0009), NULL for those."""
    if not 0 <= number <= APP_VERSION_MAX:
        raise ValueError(f"{number} is not a stored app_version (0 to {APP_VERSION_MAX})")
    return f"{number // 1_000_000}.{number // 1_000 % 1_000}.{number % 1_000}"


def create_date(sent_timestamp_ms: int) -> dt.date:
    """The UTC date of the message's SQS SentTimestamp (a replay gives the same date)."""
    day = sent_timestamp_ms // _MS_PER_DAY
    date = _DATES.get(day)
    if date is None:  # a queue's messages span a few days: the cache stays small
        if len(_DATES) >= _DATES_KEPT:
            _DATES.clear()
        date = _DATES[day] = _EPOCH + dt.timedelta(days=day)
    return date


def validate(event: dict[str, Any]) -> Fields:
    """Check every field of a parsed body and return them flattened, or raise `Invalid`."""
    get = event.get
    user_id = get("user_id")
    if user_id is None or user_id == "":
        raise Invalid("missing_user_id", "user_id is required (a non-empty string)")
    return Fields(
        USER_ID_RULE.text(user_id),
        DEVICE_TYPE_RULE.checked(get("device_type")),
        _ip(get("ip")),
        DEVICE_ID_RULE.checked(get("device_id")),
        LOCALE_RULE.checked(get("locale")),
        _app_version(get("app_version")),
    )


def passes_rule(field: str, value: object) -> bool:
    """Whether one of the login fields `user_id`, `device_type`, `locale`, `app_version`
    holds a value its rule accepts (null included: the field may be left out)."""
    try:
        _field_rule(field)(value)
    except Invalid:
        return False
    return True


class TextRule:
    """A text field's rule: 1 to `limit` characters, none of them a control character,
    or null. Printable text of a length that fits is accepted at once (`isprintable`
    refuses every control character, and more: half the cost of the pattern); other
    text goes to one regular expression that accepts a valid value whole; only a value
    it refuses is looked at again, for the reason."""

    __slots__ = ("_accepts", "field", "limit")

    def __init__(self, field: str, limit: int) -> None:
        self.field = field
        self.limit = limit
        self._accepts = re.compile(rf"[^\x00-\x1f\x7f]{{1,{limit}}}").fullmatch

    def checked(self, value: object) -> str | None:
        """The value, valid or null; else `Invalid`."""
        if value is None:
            return None
        return self.text(value)

    def text(self, value: object) -> str:
        """The value, valid and not null; else `Invalid`."""
        if isinstance(value, str) and (
            (value.isprintable() and 0 < len(value) <= self.limit)
            or self._accepts(value) is not None  # (text with a space other than ' ', ...)
        ):
            return value
        return self.refuse(value)

    def refuse(self, value: object) -> str:
        """Raise the reason `value` is not valid (or return it, if it is)."""
        field, limit = self.field, self.limit
        if not isinstance(value, str):
            raise Invalid(f"invalid_{field}", f"{field} must be a string (got {json_kind(value)})")
        if not value:
            raise Invalid(f"invalid_{field}", f"{field} must not be empty (omit it or send null)")
        if len(value) > limit:
            raise Invalid(
                f"invalid_{field}",
                f"{field} is {len(value)} characters long; at most {limit} fit its column",
            )
        if _CONTROL.search(value):
            raise Invalid(f"invalid_{field}", f"{field} contains control characters")
        return value


USER_ID_RULE = TextRule("user_id", USER_ID_MAX)
DEVICE_TYPE_RULE = TextRule("device_type", DEVICE_TYPE_MAX)
DEVICE_ID_RULE = TextRule("device_id", DEVICE_ID_MAX)
LOCALE_RULE = TextRule("locale", LOCALE_MAX)
IP_RULE = TextRule("ip", IP_MAX)


def _ip(value: object) -> str | None:
    text = IP_RULE.checked(value)
    if text is None:
        return None
    try:
        return canonical_ip(text)
    except ValueError:
        raise Invalid("invalid_ip", "ip is not a valid IPv4 or IPv6 address") from None


def _app_version(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid(
            "invalid_app_version", f"app_version must be a string (got {json_kind(value)})"
        )
    try:
        return app_version_number(value)
    except ValueError:
        raise Invalid(
            "invalid_app_version",
            "app_version must be 1 to 3 dot-separated groups of 1 to 3 digits, like 2.3.0",
        ) from None


def json_kind(value: object) -> str:
    """The JSON type name of a parsed value, for messages that must not quote the value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string" if isinstance(value, str) else "null"


def _field_rule(field: str) -> Callable[[object], object]:
    """The rule of `field` as it stands when called (a rule replaced later, as a test
    replaces one, is the one applied). Only rejects ask: no hot path builds this."""
    rules: dict[str, Callable[[object], object]] = {
        "user_id": USER_ID_RULE.checked,
        "device_type": DEVICE_TYPE_RULE.checked,
        "locale": LOCALE_RULE.checked,
        "app_version": _app_version,
    }
    return rules[field]
