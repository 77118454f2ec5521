"""Tokens standing for other tokens: the tombstones erasure leaves, and rewriting a
reject's redacted body and token list through an old -> new map (erasure maps a token to
its tombstone, key rotation to its token under the new key)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

from ingestor.table import TOMBSTONE_PREFIX


def tombstone() -> str:
    """A random token: unlinkable to the value, so a key holder cannot test a guess."""
    return TOMBSTONE_PREFIX + secrets.token_hex(16)


def is_tombstone(token: str) -> bool:
    return token.startswith(TOMBSTONE_PREFIX)


def remapped(
    body: str | None, tokens: Sequence[str], mapping: Mapping[str, str]
) -> tuple[str | None, list[str]]:
    """A reject's body and token list with every mapped token replaced."""
    for old in tokens:
        if body is not None and old in mapping:
            body = body.replace(old, mapping[old])
    return body, [mapping.get(token, token) for token in tokens]
