"""Turning a message that breaks a rule into a `Rejection` that keeps no plaintext PII.

A JSON object is kept with every PII-named key masked, at any depth, the same way the
loader masks it, so a reject can be joined to `user_logins` by token. Any other body (not
UTF-8, not JSON, not an object) is kept only as its kind, size and keyed digest: such a body
cannot be searched for PII reliably, so it is not stored at all.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from ingestor.masking import Masker, canonical_ip
from ingestor.models import Envelope, Rejection

# Normalised key names (lower case, no '_' or '-') treated as PII wherever they appear.
_IP_KEYS = frozenset({"ip", "ipaddress", "ipaddr"})
_DEVICE_ID_KEYS = frozenset({"deviceid"})


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
) -> Rejection:
    """A rejection for `envelope`; `parsed` is its JSON object body when it has one."""
    raw = as_bytes(envelope.body)
    body = None if parsed is None else redacted_json(parsed, masker)
    return Rejection(
        message_id=envelope.message_id,
        reason_code=code,
        reason=reason,
        body=body,
        body_kind=body_kind if body is not None or parsed is None else "too_deep",
        body_bytes=len(raw),
        body_digest=masker.digest_body(raw),
        sent_at=dt.datetime.fromtimestamp(envelope.sent_timestamp_ms / 1000, dt.UTC),
        receive_count=envelope.receive_count,
    )


def redacted_json(event: dict[str, Any], masker: Masker) -> str | None:
    """The object as JSON text with PII-named keys masked at every depth; None when it
    nests too deep to write back (orjson reads 1024 levels but writes 254)."""
    try:
        return orjson.dumps(_redact(event, masker)).decode()
    except orjson.JSONEncodeError:
        return None


def _redact(value: Any, masker: Masker) -> Any:
    # An explicit stack: bodies may nest up to orjson's limit, deeper than Python recursion.
    root: list[Any] = [value]
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        keys = node.keys() if isinstance(node, dict) else range(len(node))
        for key in keys:
            child = node[key]
            if isinstance(key, str) and (masked := _mask_named(key, child, masker)) is not None:
                node[key] = masked
            elif isinstance(child, dict | list):
                stack.append(child)
    return root[0]


def _mask_named(key: str, value: Any, masker: Masker) -> str | None:
    name = key.lower().replace("_", "").replace("-", "")
    if value is None or name not in _IP_KEYS | _DEVICE_ID_KEYS:
        return None
    if name in _IP_KEYS:
        return masker.mask_ip(_ip_text(value))
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return masker.mask_device_id(text)


def _ip_text(value: Any) -> str:
    if not isinstance(value, str):
        return orjson.dumps(value).decode()
    try:
        return canonical_ip(value)
    except ValueError:
        return value
