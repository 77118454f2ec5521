"""Keyed, deterministic masking of PII values (PRODUCT.md rule 3).

A token is HMAC-SHA256(key, domain || 0x00 || value), lowercase hex. The domain (one per
PII field, declared with the table in `ingestor/table.py`) keeps an ip and a device id
with the same text from sharing a token, and lets a later key version
coexist. Without the key no one can test a guess, which a plain hash would allow: IPv4 has
2^32 values and device ids of the form ddd-dd-dddd only 10^9.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Protocol

from ingestor.keytext import MIN_KEY_BYTES
from ingestor.models import VaultEntry
from ingestor.table import USER_LOGINS, Table

Mask = Callable[[str], str]
BODY_DOMAIN = b"ingestor/reject-body/v1"
USER_DOMAIN = b"ingestor/user-id/v1"
ERASED_DOMAIN = b"ingestor/erased/v1"
_KEY_ID_DOMAIN = b"ingestor/key-id/v1"


def mask_key_id(hmac_key: bytes) -> str:
    """A short public name for an HMAC key: which key a token was made with, without
    revealing the key (a keyed digest of a fixed label)."""
    return "hk-" + hmac.new(hmac_key, _KEY_ID_DOMAIN, hashlib.sha256).hexdigest()[:16]


class ByName:
    """A masker's two fields by name, for callers that mean that field (the table's PII
    fields are reached with `masking(field)`)."""

    __slots__ = ()

    def masking(self, field: str) -> Callable[[str], str]:
        raise NotImplementedError

    def mask_ip(self, canonical_ip: str) -> str:
        """`masking("ip")` by name, for callers that mean that field."""
        return self.masking("ip")(canonical_ip)

    def mask_device_id(self, device_id: str) -> str:
        """`masking("device_id")` by name, for callers that mean that field."""
        return self.masking("device_id")(device_id)


class HmacMasker(ByName):
    """HMAC-SHA256 tokens under one secret key, one domain per PII field of `table`."""

    __slots__ = ("_body", "_erased", "_masks", "_table", "_user", "key_id")

    def __init__(self, key: bytes, table: Table = USER_LOGINS) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the HMAC key must be at least {MIN_KEY_BYTES} bytes")
        # Keying once per domain and copying the state per value is about twice as fast
        # as a one-shot hmac.digest over domain + value.
        self._masks = {pii.field: _masking(_keyed(key, pii.domain)) for pii in table.pii}
        self._table = table
        self._body = _keyed(key, BODY_DOMAIN)
        self._user = _keyed(key, USER_DOMAIN)
        self._erased = _keyed(key, ERASED_DOMAIN)
        self.key_id = mask_key_id(key)

    def __repr__(self) -> str:
        return "HmacMasker(key=<hidden>)"

    def masking(self, field: str) -> Mask:
        """The function that masks a value of the PII field `field`, given in its
        canonical spelling: fetched once, called per value. UnknownField for a field the
        table does not register."""
        mask = self._masks.get(field)
        if mask is None:
            raise self._table.unknown(field)
        return mask

    def digest_body(self, body: bytes) -> str:
        return _token(self._body, body)

    def digest_user(self, user_id: str) -> str:
        return _token(self._user, user_id.encode("utf-8", "surrogatepass"))

    def digest_erased(self, user_digest: str, token: str) -> str:
        """The erasure ledger's name for "this user's value with this token"."""
        return _token(self._erased, f"{user_digest}\x00{token}".encode())

    def seal_body(self, body: bytes) -> None:
        return None  # no vault: a body that cannot be redacted is not kept

    def take(self) -> tuple[VaultEntry, ...]:
        return ()  # no vault: nothing is sealed


class _State(Protocol):
    def copy(self) -> _State: ...

    def update(self, data: bytes) -> None: ...

    def hexdigest(self) -> str: ...


def _keyed(key: bytes, domain: bytes) -> _State:
    """HMAC-SHA256 keyed with `key` and fed `domain` and a 0 byte. With OpenSSL, the C
    state inside hmac.HMAC: its copy and hexdigest skip two Python-level wrappers (0.2 µs
    of the 0.9 µs a token costs); same interface, same digest, else the HMAC itself."""
    state = hmac.new(key, domain + b"\x00", hashlib.sha256)
    inner: _State | None = getattr(state, "_hmac", None)
    return inner if inner is not None else state


def _masking(keyed: _State) -> Mask:
    """The token of a text under one keyed state: a closure, one Python call per value.
    surrogatepass: a lone surrogate (possible in a vault entry's text) is hashed, not an
    error; any other text encodes as UTF-8 does."""
    copy = keyed.copy

    def mask(value: str) -> str:
        state = copy()
        state.update(value.encode("utf-8", "surrogatepass"))
        return state.hexdigest()

    return mask


def _token(keyed: _State, value: bytes) -> str:
    state = keyed.copy()
    state.update(value)
    return state.hexdigest()
