"""What a key given as text must be: its decoding, and the strength a masking key needs.
Settings and the key commands both read keys this way."""

from __future__ import annotations

import base64
import binascii

MIN_KEY_BYTES = 32
KEY_BYTES = 32  # X25519 public and private keys


def decode_key(text: str) -> bytes:
    """A 32-byte key from base64 (as `keys generate` prints it) or hex. Raises ValueError
    with a reason that carries no key material."""
    text = text.strip()
    for decode in (base64.b64decode, bytes.fromhex):
        try:
            key = decode(text)
        except (binascii.Error, ValueError):
            continue
        if len(key) == KEY_BYTES:
            return key
    raise ValueError(
        f"must be a {KEY_BYTES}-byte key in base64 or hex "
        "(python -m ingestor keys generate prints one)"
    )


# The masking key shown in the README as an example of what `openssl rand -hex 32` prints:
# published, so refused like the demo's key.
README_EXAMPLE_KEY = "3f5a0e8c0d2b47d9b1c6e2f4a7d8c9b0e1f2a3b4c5d6e7f8091a2b3c4d5e6f70"


MIN_DISTINCT_BYTES = 8  # a key from `openssl rand -hex 32` has about 16, from -base64 about 33


def weak_key_problem(key: bytes) -> str | None:
    """Why `key` is not fit to mask PII (None when it is). The key itself is used as
    given, bytes for bytes: this only refuses, it never changes how tokens are made. The
    reasons never quote the key."""
    if len(key) < MIN_KEY_BYTES:
        return f"must be at least {MIN_KEY_BYTES} bytes (generate one: openssl rand -hex 32)"
    if key == README_EXAMPLE_KEY.encode():
        return "is the README's example key; generate your own (openssl rand -hex 32)"
    period = next((p for p in range(1, len(key) // 2 + 1) if key[p:] == key[:-p]), None)
    if period is not None:
        return (
            f"is a pattern of {period} characters repeated; generate a random key "
            "(openssl rand -hex 32)"
        )
    if len(set(key)) < MIN_DISTINCT_BYTES:
        return (
            f"uses only {len(set(key))} distinct characters; generate a random key "
            "(openssl rand -hex 32)"
        )
    return None
