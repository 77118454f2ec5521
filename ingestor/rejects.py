"""Turning a message that breaks a rule into a `Rejection` that keeps no plaintext PII.

A JSON object is kept with every PII-named key masked, at any depth, the same way the
loader masks it, so a reject can be joined to `user_logins` by token (the tokens are listed
in `pii_tokens`, for erasure and key rotation). Any other body (not UTF-8, not JSON, not an
object) cannot be searched for PII reliably, so its text is never stored: only its kind,
size and keyed digest. With the vault on, every reject also keeps its original body sealed
to the vault key, so nothing is lost and `rejects replay` can load it after a rule fix.
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
    tokens: list[str] = []
    body = None if parsed is None else redacted_json(parsed, masker, tokens)
    sealed = masker.seal_body(raw)
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
        pii_tokens=tuple(dict.fromkeys(tokens)) if body is not None else (),
        sealed_body=None if sealed is None else sealed[0],
        key_id=None if sealed is None else sealed[1],
    )


def redacted_json(event: dict[str, Any], masker: Masker, tokens: list[str]) -> str | None:
    """The object as JSON text with PII-named keys masked at every depth (each token is
    appended to `tokens`); None when it nests too deep to write back (orjson reads 1024
    levels but writes 254)."""
    try:
        return orjson.dumps(_redact(event, masker, tokens)).decode()
    except orjson.JSONEncodeError:
        return None


def _redact(value: Any, masker: Masker, tokens: list[str]) -> Any:
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
                tokens.append(masked)
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
