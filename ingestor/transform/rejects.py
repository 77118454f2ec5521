"""Turning a message that breaks a rule into a `Rejection` that keeps only what is known
to be safe (PRODUCT.md rule 6): an allow-list, not a search for PII.

Of a JSON object, a reject keeps the login fields: the PII fields of the table's registry
(`ingestor/table.py`: ip, device_id) masked exactly as in `user_logins`, each under its
own domain (their tokens listed in `pii_tokens`, for erasure and key rotation), and
`user_id`, `device_type`, `locale` and `app_version` as sent when they pass their rules,
else only their JSON type and size. Of every other key it keeps the name (when the name
is a plain identifier, which cannot spell an address or an id; else its position) and the
value's JSON type and size, never the value: an unknown key may hold an address in free
text, in a nested object or inside a JSON string, and no search finds them all. Any other
body (not UTF-8, not JSON, not an object) keeps only its kind, size and keyed digest.

A body wrapped by SNS or EventBridge (`unwrap.py`) is kept as the event inside it, by
the same rules, with the wrapper described under `#envelope`: its format, the fields
known to be safe as sent (its UUID id, its time, constants such as `"Type":
"Notification"`) and of every other field (`TopicArn`, `Subject`, `MessageAttributes`,
`source`...) only the name, type and size, as for any unknown key. So the tokens and the
user_id stay at the top, where erasure and key rotation find them.

With the vault on, every reject also keeps its original body sealed to the vault key, so
nothing is lost and `rejects replay` can load it after a rule fix. A reject whose body
has a user_id carries its keyed digest, by which `forget --user-id` finds it.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import orjson

from ingestor.models import Envelope, Rejection
from ingestor.ports import Masker
from ingestor.table import USER_LOGINS, PiiField, Table
from ingestor.transform.rules import json_kind, passes_rule
from ingestor.transform.unwrap import Opened, Wrapper

LOGIN_FIELDS = ("user_id", "device_type", "locale", "app_version")
MAX_OTHER_KEYS = 64  # described one by one; the rest are counted under "#more"
# A name kept as sent: an identifier, with no run of 3 digits (ddd-dd-dddd), no '.' or
# ':' (addresses), at most 64 characters.
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_DIGIT_RUN = re.compile(r"[0-9]{3}")


def as_bytes(body: str | bytes) -> bytes:
    """The body's bytes; a str with lone surrogates keeps them rather than failing."""
    return body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")


def reject(
    envelope: Envelope,
    masker: Masker,
    code: str,
    reason: str,
    *,
    parsed: dict[str, Any] | None = None,
    body_kind: str = "object",
    table: Table = USER_LOGINS,
    opened: Opened | None = None,
) -> Rejection:
    """A rejection for `envelope`; `parsed` is its JSON object body when it has one, and
    `opened` what its wrapper gave, when it has one."""
    raw = as_bytes(envelope.body)
    tokens: list[str] = []
    event = parsed if opened is None else opened.event
    body = None if parsed is None else orjson.dumps(_kept(parsed, opened, masker, tokens, table))
    sealed = masker.seal_body(raw)
    user_id = None if event is None else user_id_text(event.get("user_id"))
    key = opened.key if opened is not None and opened.key is not None else envelope.message_id
    return Rejection(
        message_id=key,
        reason_code=code,
        reason=reason,
        body=None if body is None else body.decode(),
        body_kind=body_kind,
        body_bytes=len(raw),
        body_digest=masker.digest_body(raw),
        sent_at=dt.datetime.fromtimestamp(envelope.sent_timestamp_ms / 1000, dt.UTC),
        receive_count=envelope.receive_count,
        pii_tokens=tuple(dict.fromkeys(tokens)),
        sealed_body=None if sealed is None else sealed[0],
        key_id=None if sealed is None else sealed[1],
        user_digest=None if user_id is None else masker.digest_user(user_id),
    )


def user_id_text(value: Any) -> str | None:
    """A body's user_id as `forget --user-id` is given it: a non-empty string, or a
    number's JSON text; None when the body names no user."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return orjson.dumps(value).decode()
    return None


def _kept(
    parsed: dict[str, Any],
    opened: Opened | None,
    masker: Masker,
    tokens: list[str],
    table: Table = USER_LOGINS,
) -> dict[str, Any]:
    """What a reject keeps of a JSON object body: the event's allowed fields, and its
    wrapper described under `#envelope`."""
    if opened is None:
        return allowed(parsed, masker, tokens, table)
    kept = {} if opened.event is None else allowed(opened.event, masker, tokens, table)
    if opened.wrapper is not None:
        kept["#envelope"] = wrapper_kept(opened.wrapper, parsed)
    return kept


def wrapper_kept(wrapper: Wrapper, body: dict[str, Any]) -> dict[str, Any]:
    """A wrapper's own fields: those known to be safe as sent, the rest (the event's
    field included: the event is kept beside it) by name, type and size."""
    kept: dict[str, Any] = {"#format": wrapper.name}
    others = 0
    for position, (key, value) in enumerate(body.items(), 1):
        safe = wrapper.safe.get(key)
        if safe is not None and safe(value):
            kept[key] = value
        elif others < MAX_OTHER_KEYS:
            others += 1
            kept.update([_other(key, value, position)])
    if len(body) + 1 > len(kept):
        kept["#more"] = {"type": "keys", "size": len(body) + 1 - len(kept)}
    return kept


def allowed(
    event: dict[str, Any], masker: Masker, tokens: list[str], table: Table = USER_LOGINS
) -> dict[str, Any]:
    """What a reject keeps of a JSON object (see the module's docstring); each token made
    is appended to `tokens`."""
    pii = {field.field: field for field in table.pii}
    kept: dict[str, Any] = {}
    others = 0
    for position, (key, value) in enumerate(event.items(), 1):
        if key in pii:
            kept[key] = _masked(pii[key], value, masker, tokens)
        elif key in LOGIN_FIELDS:
            kept[key] = value if passes_rule(key, value) else described(value)
        elif others < MAX_OTHER_KEYS:
            others += 1
            kept.update([_other(key, value, position)])
    if len(event) > len(kept):
        kept["#more"] = {"type": "keys", "size": len(event) - len(kept)}
    return kept


def described(value: Any) -> dict[str, Any]:
    """A value by its JSON type and size: characters of a string or a number, members of
    an object or an array, 0 for true, false and null."""
    if isinstance(value, str | dict | list):
        size = len(value)
    elif json_kind(value) == "number":
        size = len(str(value))
    else:
        size = 0
    return {"type": json_kind(value), "size": size}


def _other(key: str, value: Any, position: int) -> tuple[str, dict[str, Any]]:
    if _PLAIN_NAME.fullmatch(key) and not _DIGIT_RUN.search(key):
        return key, described(value)
    return f"#{position}", {**described(value), "name_size": len(key)}


def _masked(field: PiiField, value: Any, masker: Masker, tokens: list[str]) -> Any:
    """The token of a PII field's value, as user_logins would hold it; a value with no
    text form (a number past 64 bits, a list nested past orjson's limit) is described."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    else:
        try:
            text = orjson.dumps(value).decode()
        except orjson.JSONEncodeError:
            return described(value)
    token = masker.masking(field.field)(_spelt(field, text))
    tokens.append(token)
    return token


def _spelt(field: PiiField, text: str) -> str:
    """Its canonical spelling, or the text as sent when it has none (an invalid address):
    the same value is the same token wherever it stands."""
    try:
        return field.canonical(text)
    except ValueError:
        return text
