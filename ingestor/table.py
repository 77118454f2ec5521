"""The shape of `user_logins`, declared once: every other statement of it is derived.

`USER_LOGINS` lists the columns ingestor loads, in COPY order, each with its type as
PostgreSQL's `format_type()` prints it (what `ingestor check` expects); the idempotency
key a redelivered message is merged on; and the PII fields: the login event's key each
comes from, the column its token goes to, its HMAC domain (PRODUCT.md rule 3) and the
one spelling a value is masked in. From it come `LOGIN_COLUMNS`, the staging and merge
SQL and the other statements over the PII columns (`sink/generated.py`), `check`'s
expected columns, the masker's keyed states, and every place that walks a row's or a
body's PII (reject redaction, isolation, the vault's checks, rekey, erasure, the ledger,
replay). `LoginRow` stays a NamedTuple written out (mypy, COPY speed); a unit test holds
its fields to these columns.

What is not derived: the migrations (history, never edited). A new PII field needs one
that adds its column, widens pii_vault's CHECK on `field` (migration 0002 lists ip and
device_id) and redefines `ingestor_erasure_candidates` (migration 0007 returns the
staged PII columns by name). Nor are the field rules (`transform/rules.py`) and the
transform's mapping of a valid event onto a row, nor the demo's queries.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ingestor.errors import PermanentError
from ingestor.terminal import printable

# What an erased value's token becomes, in a PII column and wherever else it stood
# (`custody/tombstones.py`): this prefix and random hex.
TOMBSTONE_PREFIX = "erased:"
IP_DOMAIN = b"ingestor/ip/v1"
DEVICE_ID_DOMAIN = b"ingestor/device_id/v1"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_IPV4_MAPPED = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96
_HEXTETS = struct.Struct("!8H")
_FRAMED = ":%x:%x:%x:%x:%x:%x:%x:%x:"
_ZERO_RUNS = tuple(":0" * groups + ":" for groups in range(8, 1, -1))
# What a table or column may be called here: the generated SQL writes these names as they
# are, unquoted (`sink/generated.py`).
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def canonical_ip(text: str) -> str:
    """The one spelling of an address: compressed, IPv4-mapped IPv6 as IPv4 (as
    `ipaddress` spells them: the tokens of stored rows depend on it).

    Raises ValueError when `text` is not an IPv4 or IPv6 address.
    """
    if _CANONICAL_IPV4.fullmatch(text):
        # A dotted quad without leading zeros is its own canonical form; one regex call is
        # several times cheaper than ipaddress's parser on the hot path.
        return text
    if ":" not in text:  # no IPv6 text lacks one: IPv4's parser alone decides
        return str(ipaddress.IPv4Address(text))  # rejects what the regex did not take
    try:
        # The C parser, then `_compressed`: a fifth of ipaddress's cost. The C parser
        # refuses a zone id ("fe80::1%eth0"), which ipaddress takes and spells.
        packed = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return _ipv6_by_ipaddress(text)
    if packed.startswith(_IPV4_MAPPED):
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return _compressed(_HEXTETS.unpack(packed))


def _ipv6_by_ipaddress(text: str) -> str:
    address = ipaddress.IPv6Address(text)
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else address.compressed


def _compressed(hextets: tuple[int, ...]) -> str:
    """RFC 5952's text of eight groups, as ipaddress writes it: lower-case hex, the
    longest run of two or more zero groups (the first of equal runs) as "::"."""
    framed = _FRAMED % hextets  # ":g0:...:g7:": a zero group is ":0:" wherever it stands
    for run in _ZERO_RUNS:  # longest first, so the first found is the first longest
        start = framed.find(run)
        if start >= 0:
            return f"{framed[1:start]}::{framed[start + len(run) : -1]}"
    return framed[1:-1]


def as_sent(text: str) -> str:
    """A value that has one spelling already: masked as it was sent."""
    return text


class UnknownField(PermanentError):
    """A PII field the table does not register: never masked under another's domain."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # as format_type() prints it: what `check` expects


@dataclass(frozen=True, slots=True)
class PiiField:
    """A field of the login event that holds PII: only its token is stored."""

    field: str  # its key in the event; also its name in pii_vault.field and vault frames
    column: str  # the column of user_logins that holds its token
    domain: bytes  # the HMAC domain: the same text in two fields makes two tokens
    # The one spelling a value is masked in (raises ValueError for a value it cannot
    # spell: the rules reject it; a reject's body keeps the token of the text as sent).
    canonical: Callable[[str], str]


@dataclass(frozen=True, slots=True)
class Table:
    """A loaded table's shape. `key` is the idempotency key (the merge's conflict target
    by default; a partitioned table's adds its partition column). `date` is the column a
    partitioned table may be range-partitioned by: the message's date, the same for every
    delivery of it, so (date, key) is as unique as the key alone."""

    name: str
    columns: tuple[Column, ...]  # loaded, in COPY order
    key: str
    pii: tuple[PiiField, ...]
    date: str = "create_date"
    # Derived once, for the paths that read a row's tokens per row.
    pii_positions: tuple[int, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [column.name for column in self.columns]
        odd = [n for n in (self.name, *names) if not _IDENTIFIER.fullmatch(n)]
        if odd:
            raise ValueError(f"not plain lowercase SQL identifiers: {', '.join(odd)}")
        fields = [pii.field for pii in self.pii]
        domains = [pii.domain for pii in self.pii]
        for what, values in (("column", names), ("PII field", fields), ("domain", domains)):
            if len(set(values)) != len(values):
                raise ValueError(f"{self.name}: a {what} is declared twice")
        declared = (self.key, self.date, *(pii.column for pii in self.pii))
        missing = [c for c in declared if c not in names]
        if missing:
            raise ValueError(f"{self.name}: {', '.join(missing)} not among its columns")
        positions = tuple(names.index(pii.column) for pii in self.pii)
        object.__setattr__(self, "pii_positions", positions)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def partitioned_key(self) -> tuple[str, str]:
        """The idempotency key of the table range-partitioned by its date."""
        return (self.date, self.key)

    @property
    def pii_columns(self) -> tuple[str, ...]:
        return tuple(pii.column for pii in self.pii)

    @property
    def pii_fields(self) -> tuple[str, ...]:
        return tuple(pii.field for pii in self.pii)

    def types(self) -> dict[str, str]:
        """column -> type, as `check` expects them."""
        return {column.name: column.type for column in self.columns}

    def pii_field(self, field: str) -> PiiField:
        """The PII field named `field`, or UnknownField."""
        for pii in self.pii:
            if pii.field == field:
                return pii
        raise self.unknown(field)

    def unknown(self, field: str) -> UnknownField:
        """The error for a field this table does not register as PII."""
        return UnknownField(
            f"'{printable(field, 64)}' is not a PII field of {self.name} "
            f"(its PII fields: {', '.join(self.pii_fields)})"
        )

    def tokens(self, row: Sequence[Any]) -> tuple[str, ...]:
        """The tokens a row (a tuple in column order) holds, in PII field order."""
        return tuple(token for i in self.pii_positions if (token := row[i]) is not None)

    def filled(self, row: Sequence[Any]) -> list[tuple[str, str]]:
        """(column, token) of each PII column the row holds a token in."""
        return [
            (column, token)
            for i, column in zip(self.pii_positions, self.pii_columns, strict=True)
            if (token := row[i]) is not None
        ]


USER_LOGINS = Table(
    name="user_logins",
    columns=(
        Column("message_id", "character varying(128)"),
        Column("user_id", "character varying(128)"),
        Column("device_type", "character varying(32)"),
        Column("masked_ip", "character varying(256)"),
        Column("masked_device_id", "character varying(256)"),
        Column("locale", "character varying(32)"),
        Column("app_version", "integer"),
        Column("create_date", "date"),
    ),
    key="message_id",
    pii=(
        PiiField("ip", "masked_ip", IP_DOMAIN, canonical_ip),
        PiiField("device_id", "masked_device_id", DEVICE_ID_DOMAIN, as_sent),
    ),
)
