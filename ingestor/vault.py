"""The PII vault's cryptography: the loader seals, the private key's holder opens.

Every masked value is also sealed (libsodium sealed box: X25519 + XSalsa20-Poly1305, via
PyNaCl) to the vault's public key and stored beside its token in `pii_vault`, in the same
transaction as the rows. The loader holds only the public key: it can seal, never open.
Opening takes the private key, which stays with whoever runs `reveal` or `rekey`.

Sealing costs about 50 µs, so a value is sealed once: `VaultingMasker` remembers the
tokens committed recently (`remember`, called after each commit), and until a value's
first commit every message carrying it carries the same sealed entry. A value sealed again
(after the memory's limit, or in another process) is harmless: the insert is ON CONFLICT
DO NOTHING.
"""

from __future__ import annotations

from collections.abc import Sequence

from nacl.bindings import crypto_box_seal, crypto_box_seal_open
from nacl.exceptions import CryptoError

from ingestor.errors import PermanentError
from ingestor.hooks import Hooks
from ingestor.keys import mask_key_id, public_key_of, vault_key_id
from ingestor.masking import HmacMasker
from ingestor.models import Processed, VaultEntry


class SealedError(PermanentError):
    """A sealed value cannot be opened with the key at hand."""


class Sealer:
    """Seals plaintext to one public key."""

    __slots__ = ("key_id", "public_key")

    def __init__(self, public_key: bytes) -> None:
        self.public_key = public_key
        self.key_id = vault_key_id(public_key)

    def seal(self, plaintext: bytes) -> bytes:
        return crypto_box_seal(plaintext, self.public_key)


class VaultingMasker:
    """A `Masker` that also seals each value whose token is not known to be vaulted.

    The transform calls `take()` after each message for the entries that message made;
    the writer calls `remember()` with the tokens of each committed batch.
    """

    __slots__ = ("_known", "_mask_key_id", "_masker", "_pending", "_sealed", "_size", "sealer")

    def __init__(self, hmac_key: bytes, sealer: Sealer, cache_size: int) -> None:
        self._masker = HmacMasker(hmac_key)
        self._mask_key_id = mask_key_id(hmac_key)
        self.sealer = sealer
        self._known: dict[str, None] = {}  # insertion-ordered: the oldest go first
        self._size = cache_size
        self._pending: dict[str, VaultEntry] = {}  # this message's, one per token
        # Sealed but not yet committed: every message carrying the value carries this same
        # entry until one of them commits, so it is sealed once, and whichever message
        # commits first (others may be released or redelivered) writes it.
        self._sealed: dict[str, VaultEntry] = {}

    def __repr__(self) -> str:
        return f"VaultingMasker(key_id={self.sealer.key_id!r})"

    def mask_ip(self, canonical_ip: str) -> str:
        return self._vaulted("ip", self._masker.mask_ip(canonical_ip), canonical_ip)

    def mask_device_id(self, device_id: str) -> str:
        return self._vaulted("device_id", self._masker.mask_device_id(device_id), device_id)

    def digest_body(self, body: bytes) -> str:
        return self._masker.digest_body(body)

    def digest_user(self, user_id: str) -> str:
        return self._masker.digest_user(user_id)

    def seal_body(self, body: bytes) -> tuple[bytes, str]:
        return self.sealer.seal(body), self.sealer.key_id

    def take(self) -> tuple[VaultEntry, ...]:
        """The entries made since the last call."""
        if not self._pending:
            return ()
        entries, self._pending = tuple(self._pending.values()), {}
        return entries

    def remember(self, tokens: list[str]) -> None:
        """These tokens are committed to the vault: stop sealing their values."""
        known, sealed = self._known, self._sealed
        for token in tokens:
            known[token] = None
            sealed.pop(token, None)
        while len(known) > self._size:
            del known[next(iter(known))]

    def forget_all(self) -> None:
        """Values were erased from the vault (which ones, the audit trail does not say):
        trust nothing remembered, seal each value again when next seen."""
        self._known.clear()
        self._sealed.clear()

    def _vaulted(self, field: str, token: str, plaintext: str) -> str:
        if token in self._known or token in self._pending:
            return token
        entry = self._sealed.get(token)
        if entry is None:
            entry = self._seal(field, token, plaintext)
        self._pending[token] = entry
        return token

    def _seal(self, field: str, token: str, plaintext: str) -> VaultEntry:
        sealed = self.sealer.seal(plaintext.encode("utf-8", "surrogatepass"))
        entry = VaultEntry(token, field, sealed, self.sealer.key_id, self._mask_key_id)
        self._sealed[token] = entry
        if len(self._sealed) > self._size:  # values of messages never committed
            del self._sealed[next(iter(self._sealed))]
        return entry


class VaultMemory(Hooks):
    """After each commit, tells the masker which tokens are now in the vault."""

    def __init__(self, masker: VaultingMasker) -> None:
        self._masker = masker

    def on_committed(self, batch: Sequence[Processed]) -> None:
        self._masker.remember([entry.token for item in batch for entry in item.vault])


class Opener:
    """Opens what was sealed to its key pairs (one, or several after a key pair was
    replaced): held by `reveal`, `rekey` and `replay`, never by the loader."""

    __slots__ = ("_pairs", "key_id")

    def __init__(self, private_key: bytes, *more: bytes) -> None:
        self._pairs: dict[str, tuple[bytes, bytes]] = {}
        for private in (private_key, *more):
            public = public_key_of(private)
            self._pairs[vault_key_id(public)] = (public, private)
        self.key_id = next(iter(self._pairs))  # the first: the one named in messages

    def __repr__(self) -> str:
        return f"Opener(key_ids={list(self._pairs)!r})"

    @property
    def key_ids(self) -> list[str]:
        return list(self._pairs)

    def open(self, sealed: bytes, key_id: str) -> bytes:
        pair = self._pairs.get(key_id)
        if pair is None:
            held = ", ".join(self._pairs)
            raise SealedError(f"sealed to key {key_id}; the private keys given are {held}")
        try:
            return crypto_box_seal_open(sealed, *pair)
        except CryptoError:
            raise SealedError(f"a value sealed to {key_id} does not open (corrupt?)") from None
