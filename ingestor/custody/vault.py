"""The PII vault's cryptography: the loader seals, the private key's holder opens.

Every masked value is also sealed (libsodium sealed box: X25519 + XSalsa20-Poly1305, via
PyNaCl) to the vault's public key and stored beside its token in `pii_vault`, in the same
transaction as the rows. The loader holds only the public key: it can seal, never open.
Opening takes the private key, which stays with whoever runs `reveal` or `rekey`.

What is sealed is the field, the token and the value together (`framed`), and what is
opened is checked before it is used (`Checker`): its field and token must be its row's,
and its value must make that token under the masking key. The public key is no secret,
so anyone who can write to `pii_vault` can seal a value of their own under a token: only
the masking key tells the loader's entries from theirs.

Sealing costs about 50 µs, so a value is sealed once: `VaultingMasker` remembers the
tokens committed recently (`remember`, called after each commit), and until a value's
first commit every message carrying it carries the same sealed entry. A value sealed again
(after the memory's limit, or in another process) is harmless: the insert is ON CONFLICT
DO NOTHING.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nacl.bindings import crypto_box_seal, crypto_box_seal_open
from nacl.exceptions import CryptoError

from ingestor.custody.keys import public_key_of, vault_key_id
from ingestor.errors import PermanentError
from ingestor.models import Processed, VaultEntry
from ingestor.ports import Hooks
from ingestor.table import USER_LOGINS, Table, UnknownField
from ingestor.terminal import printable
from ingestor.transform.masking import ByName, HmacMasker, Mask, mask_key_id


class SealedError(PermanentError):
    """A sealed value cannot be opened with the key at hand."""


class EntryRefused(SealedError):
    """An opened vault entry that is not shown or used: it does not make its token (sealed
    by someone with write access to pii_vault, or moved from another row), or it was made
    with another masking key than the one at hand, so it cannot be checked."""


FRAME = b"ingestor-vault/v2\x00"


def framed(field: str, token: str, value: bytes) -> bytes:
    """What the loader seals for a vault entry: its field and token with the value."""
    return b"%s%s\x00%s\x00%s" % (FRAME, field.encode(), token.encode(), value)


class Checker:
    """Checks opened vault entries against their rows under the masking key."""

    __slots__ = ("_masker", "key_id")

    def __init__(self, hmac_key: bytes, table: Table = USER_LOGINS) -> None:
        self._masker = HmacMasker(hmac_key, table)
        self.key_id = mask_key_id(hmac_key)

    def __repr__(self) -> str:
        return f"Checker(key_id={self.key_id!r})"

    def value(self, row: Any, opened: bytes) -> str:
        """The value of an opened entry, or EntryRefused. `row` has the entry's token,
        field and mask_key_id. Entries sealed before values were framed hold the bare
        value: the token check is what vouches for them too."""
        if row["mask_key_id"] != self.key_id:
            raise EntryRefused(
                f"made with masking key {printable(row['mask_key_id'])}, and "
                f"INGESTOR_HMAC_KEY is {self.key_id}: it cannot be checked, so it is not used"
            )
        try:
            mask = self._masker.masking(row["field"])
        except UnknownField:
            raise EntryRefused(
                f"its field '{printable(row['field'], 64)}' is not a PII field ingestor "
                "masks: not used"
            ) from None
        value = _unframed(opened, row["field"], row["token"])
        text = value.decode("utf-8", "surrogatepass") if value is not None else None
        if text is None or mask(text) != row["token"]:
            raise EntryRefused(
                "the vault entry does not match its token (sealed by someone with write "
                "access to pii_vault?): not used"
            )
        return text


def _unframed(opened: bytes, field: str, token: str) -> bytes | None:
    """The value of a framed entry that names this field and token (None when it names
    others); an entry from before framing is its bare value."""
    if not opened.startswith(FRAME):
        return opened
    named = framed(field, token, b"")
    return opened[len(named) :] if opened.startswith(named) else None


class Sealer:
    """Seals plaintext to one public key."""

    __slots__ = ("key_id", "public_key")

    def __init__(self, public_key: bytes) -> None:
        self.public_key = public_key
        self.key_id = vault_key_id(public_key)

    def seal(self, plaintext: bytes) -> bytes:
        return crypto_box_seal(plaintext, self.public_key)


class VaultingMasker(ByName):
    """A `Masker` that also seals each value whose token is not known to be vaulted.

    The transform calls `take()` after each message for the entries that message made;
    the writer calls `remember()` with the tokens of each committed batch.
    """

    __slots__ = ("_known", "_mask_key_id", "_masker", "_pending", "_sealed", "_size", "sealer")

    def __init__(
        self, hmac_key: bytes, sealer: Sealer, cache_size: int, table: Table = USER_LOGINS
    ) -> None:
        self._masker = HmacMasker(hmac_key, table)
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

    def masking(self, field: str) -> Mask:
        """The masker's function for `field` (UnknownField for a field not registered),
        which also seals each value not known to be vaulted, under that field's name."""
        mask, vaulted = self._masker.masking(field), self._vaulted

        def masked(value: str) -> str:
            return vaulted(field, mask(value), value)

        return masked

    def digest_body(self, body: bytes) -> str:
        return self._masker.digest_body(body)

    def digest_user(self, user_id: str) -> str:
        return self._masker.digest_user(user_id)

    def digest_erased(self, user_digest: str, token: str) -> str:
        return self._masker.digest_erased(user_digest, token)

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
        value = plaintext.encode("utf-8", "surrogatepass")
        sealed = self.sealer.seal(framed(field, token, value))
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
            raise SealedError(
                f"sealed to key {printable(key_id)}; the private keys given are {held}"
            )
        try:
            return crypto_box_seal_open(sealed, *pair)
        except CryptoError:
            raise SealedError(
                f"a value sealed to {printable(key_id)} does not open (corrupt?)"
            ) from None

    def open_entry(self, row: Any, checker: Checker) -> str:
        """A vault row's value, checked against its token (EntryRefused if it is not)."""
        return checker.value(row, self.open(row["sealed"], row["key_id"]))

    def sealer(self, key_id: str) -> Sealer:
        """A sealer to the public half of one of the pairs held (rekey re-seals with it)."""
        return Sealer(self._pairs[key_id][0])
