"""Key material: the vault's key pair (its file and text forms) and the public ids that
name keys in the tables without revealing them.

The private key file holds one base64 line (and `#` comments). It is created with mode
0600 and never overwritten, and a file that others can read is refused, as ssh does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import stat
from pathlib import Path

from ingestor.errors import PermanentError

KEY_BYTES = 32  # X25519 public and private keys
_MASK_KEY_ID_DOMAIN = b"ingestor/key-id/v1"


class KeyFileError(PermanentError):
    """A private key file that is missing, unsafe or malformed."""


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


def vault_key_id(public_key: bytes) -> str:
    """A short public name for a vault key pair, stored with every sealed value."""
    return "vk-" + hashlib.blake2b(public_key, digest_size=8).hexdigest()


def mask_key_id(hmac_key: bytes) -> str:
    """A short public name for an HMAC key: which key a token was made with, without
    revealing the key (a keyed digest of a fixed label)."""
    return "hk-" + hmac.new(hmac_key, _MASK_KEY_ID_DOMAIN, hashlib.sha256).hexdigest()[:16]


def generate_key_pair() -> tuple[bytes, bytes]:
    """(private key, public key), from libsodium's CSPRNG."""
    from nacl.public import PrivateKey  # noqa: PLC0415 - only the key commands need it

    private = PrivateKey.generate()
    return bytes(private), bytes(private.public_key)


def public_key_of(private_key: bytes) -> bytes:
    from nacl.public import PrivateKey  # noqa: PLC0415

    return bytes(PrivateKey(private_key).public_key)


def write_private_key(path: Path, private_key: bytes, key_id: str) -> None:
    """Create `path` (mode 0600); an existing file is never overwritten."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} exists; refusing to overwrite a key") from None
    with os.fdopen(descriptor, "w") as file:
        file.write(f"# ingestor vault private key {key_id}: keep offline, never on the loader\n")
        file.write(base64.b64encode(private_key).decode() + "\n")


def read_private_key(path: Path) -> bytes:
    """The key in `path`; refused when group or others may read the file."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as error:
        raise KeyFileError(f"cannot read the private key file {path}: {error.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is readable by others (mode {mode & 0o777:o}); chmod 600 it")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    try:
        return decode_key(lines[0] if len(lines) == 1 else "")
    except ValueError:
        raise KeyFileError(f"{path} does not hold one base64 private key") from None
