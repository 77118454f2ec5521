"""Key material: the vault's key pair (its file and text forms), the public ids that
name keys in the tables without revealing them, and what makes a masking key too weak.

The private key file holds one base64 line (and `#` comments). It is created with mode
0600 and never overwritten. Reading it refuses, as ssh does, a file that others can read
or that another user owns, and a symbolic link (checked on the open descriptor, so the
file cannot be swapped between the check and the read).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import stat
from pathlib import Path

from ingestor.errors import PermanentError
from ingestor.keytext import decode_key


class KeyFileError(PermanentError):
    """A private key file that is missing, unsafe or malformed."""


def vault_key_id(public_key: bytes) -> str:
    """A short public name for a vault key pair, stored with every sealed value."""
    return "vk-" + hashlib.blake2b(public_key, digest_size=8).hexdigest()


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
    except OSError as error:  # no such directory, no permission
        raise KeyFileError(f"cannot create the private key file {path}: {error.strerror}") from None
    with os.fdopen(descriptor, "w") as file:
        file.write(f"# ingestor vault private key {key_id}: keep offline, never on the loader\n")
        file.write(base64.b64encode(private_key).decode() + "\n")


_KEY_FILE_LIMIT = 4096  # a key file is one line and a comment; more is not a key file


def read_private_key(path: Path) -> bytes:
    """The key in `path`: a regular file, not a symbolic link, owned by the user running
    this, that no one else may read or write."""
    # O_NONBLOCK: a FIFO put in the key's place must not hang the command.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise KeyFileError(f"{path} is a symbolic link; give the key file itself") from None
        raise KeyFileError(f"cannot read the private key file {path}: {error.strerror}") from None
    try:
        _check_key_file(path, os.fstat(descriptor))  # the file opened, not the path's now
        data = os.read(descriptor, _KEY_FILE_LIMIT + 1)
    finally:
        os.close(descriptor)
    lines = [
        line
        for line in data.decode("utf-8", "replace").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    try:
        return decode_key(lines[0] if len(lines) == 1 and len(data) <= _KEY_FILE_LIMIT else "")
    except ValueError:
        raise KeyFileError(f"{path} does not hold one base64 private key") from None


def _check_key_file(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"{path} is not a regular file")
    if info.st_uid != os.geteuid():
        raise KeyFileError(
            f"{path} is owned by uid {info.st_uid}, not by the user running this "
            f"(uid {os.geteuid()}); a key file must be your own"
        )
    mode = info.st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is readable by others (mode {mode & 0o777:o}); chmod 600 it")
