"""The registry of user_logins' shape (`ingestor/table.py`): what is derived from it agrees
with it, and a PII field added to a copy of it is treated as PII, under its own domain,
by reject redaction, isolation, the vault's checks, rekey and the erasure ledger."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections import namedtuple
from typing import Any

import orjson
import pytest

from ingestor.custody.keys import generate_key_pair
from ingestor.custody.ledger import ErasureLedger
from ingestor.custody.rekey import Rotation, _mapped
from ingestor.custody.replay import stored_row
from ingestor.custody.vault import Checker, EntryRefused, Opener, Sealer, VaultingMasker
from ingestor.models import LOGIN_COLUMNS, Envelope, LoginRow, Processed, VaultEntry
from ingestor.sink.generated import LOGINS, statements
from ingestor.sink.isolation import Batch, write_isolating
from ingestor.sink.queries import query
from ingestor.sink.schema import EXPECTED_COLUMNS
from ingestor.table import (
    DEVICE_ID_DOMAIN,
    IP_DOMAIN,
    USER_LOGINS,
    Column,
    PiiField,
    Table,
    UnknownField,
    as_sent,
)
from ingestor.transform.masking import HmacMasker, mask_key_id
from ingestor.transform.rejects import reject
from tests.fakes import SENT_MS, FakeSink

KEY = b"k" * 32
NEW_KEY = b"n" * 32
IMEI_DOMAIN = b"ingestor/imei/v1"
IP, DEVICE, IMEI = "198.51.100.7", "123-45-6789", "490154203237518"
# A copy of the registry with a third PII field, as a later issue might add one.
WITH_IMEI = dataclasses.replace(
    USER_LOGINS,
    columns=(*USER_LOGINS.columns, Column("masked_imei", "character varying(256)")),
    pii=(*USER_LOGINS.pii, PiiField("imei", "masked_imei", IMEI_DOMAIN, as_sent)),
)
Row = namedtuple("Row", WITH_IMEI.column_names)  # type: ignore[misc]


def fresh_token(key: bytes, domain: bytes, value: str) -> str:
    """PRODUCT.md rule 3's token, computed here from scratch."""
    return hmac.new(key, domain + b"\x00" + value.encode(), hashlib.sha256).hexdigest()


def imei_token(key: bytes = KEY) -> str:
    token = fresh_token(key, IMEI_DOMAIN, IMEI)
    # Its own domain: not the token the same text gets as a device id
    assert token != fresh_token(key, DEVICE_ID_DOMAIN, IMEI)
    return token


@pytest.fixture(scope="module")
def key_pair() -> tuple[bytes, bytes]:
    return generate_key_pair()


# --- what is derived agrees with the registry -------------------------------------------


def test_login_row_and_login_columns_are_the_registry_s_columns_in_copy_order() -> None:
    assert LoginRow._fields == USER_LOGINS.column_names
    assert USER_LOGINS.column_names == LOGIN_COLUMNS
    assert USER_LOGINS.key == "message_id"
    assert USER_LOGINS.pii_columns == ("masked_ip", "masked_device_id")


def test_check_expects_the_registry_s_columns_and_types() -> None:
    assert EXPECTED_COLUMNS["user_logins"] == {
        "message_id": "character varying(128)",
        "user_id": "character varying(128)",
        "device_type": "character varying(32)",
        "masked_ip": "character varying(256)",
        "masked_device_id": "character varying(256)",
        "locale": "character varying(32)",
        "app_version": "integer",
        "create_date": "date",
    }


def test_each_pii_field_is_masked_under_its_own_domain() -> None:
    masker = HmacMasker(KEY)
    assert masker.masking("ip")(IP) == fresh_token(KEY, IP_DOMAIN, IP)
    assert masker.masking("device_id")(DEVICE) == fresh_token(KEY, DEVICE_ID_DOMAIN, DEVICE)
    assert masker.mask_ip(IP) == masker.masking("ip")(IP)


@pytest.mark.parametrize("field", ["imei", "masked_ip", "IP", ""])
def test_a_field_the_registry_does_not_name_is_refused_not_masked_as_another(
    field: str, key_pair: tuple[bytes, bytes]
) -> None:
    vaulting = VaultingMasker(KEY, Sealer(key_pair[1]), 10)
    for masker in (HmacMasker(KEY), vaulting):
        with pytest.raises(UnknownField, match="PII fields: ip, device_id"):
            masker.masking(field)
    assert vaulting.take() == ()  # nothing sealed either


def test_a_vault_entry_naming_an_unknown_field_is_refused_even_if_its_token_matches() -> None:
    # Given an entry from before framing (its bare value) whose token is the device id
    # domain's, its field renamed: until now any field but ip was checked as a device id
    entry = {
        "token": HmacMasker(KEY).mask_device_id(DEVICE),
        "field": "imei",
        "mask_key_id": mask_key_id(KEY),
    }
    # Then it is not used
    with pytest.raises(EntryRefused, match="not a PII field"):
        Checker(KEY).value(entry, DEVICE.encode())


def test_the_registry_refuses_a_shape_it_cannot_state() -> None:
    ip = USER_LOGINS.pii[0]
    with pytest.raises(ValueError, match="declared twice"):
        dataclasses.replace(USER_LOGINS, pii=(ip, dataclasses.replace(ip, field="ip2")))
    with pytest.raises(ValueError, match="masked_imei not among its columns"):
        dataclasses.replace(USER_LOGINS, pii=(PiiField("imei", "masked_imei", b"d", as_sent),))
    with pytest.raises(ValueError, match="identifiers"):
        Table("user_logins; drop table x", USER_LOGINS.columns, "message_id", ())


def test_the_merge_keeps_every_pii_column_s_tombstone_and_takes_its_conflict_target() -> None:
    merge = statements(WITH_IMEI).merge
    for column in WITH_IMEI.pii_columns:
        assert f"{column} = CASE WHEN t.{column} LIKE 'erased:%' THEN t.{column}" in merge
    assert "ON CONFLICT (message_id) DO UPDATE SET" in merge
    assert "create_date = EXCLUDED.create_date" in merge
    assert "ORDER BY message_id" in merge
    assert "RETURNING (t.xmax = 0) AS inserted" in merge
    assert "unrejected AS (" in merge
    partitioned = statements(USER_LOGINS, ("create_date", "message_id")).merge
    assert "ON CONFLICT (create_date, message_id) DO UPDATE SET" in partitioned
    assert "create_date = EXCLUDED" not in partitioned  # the target is not updated
    assert LOGINS is statements()


def test_staging_holds_exactly_the_loaded_columns() -> None:
    assert f"SELECT {', '.join(WITH_IMEI.column_names)}\n" in statements(WITH_IMEI).staging


def test_erasure_and_rekey_statements_cover_every_pii_column() -> None:
    sql = statements(WITH_IMEI)
    for column in WITH_IMEI.pii_columns:
        assert f"SELECT {column} AS token FROM user_logins WHERE user_id = $1" in sql.user_tokens
        assert f"(u.{column})" in sql.token_holders
        assert f"WHERE {column} = ANY($1::varchar[])" in sql.tokens_in_use
        assert f"m.old = u.{column}), u.{column})" in sql.replace_tokens
        assert f"u.{column} IN (SELECT old FROM ingestor_token_map)" in sql.replace_tokens
        assert f"m.old = u.{column}), u.{column})" in sql.rekey_rows
        assert f"u.{column} IN (SELECT old FROM ingestor_rekey_map)" in sql.rekey_rows
        assert f"v.token = u.{column}" in sql.unvaulted_rows
        assert f"{column} = coalesce(h.{column}, s.{column})" in sql.tombstone_staged
    assert "unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[])" in (
        sql.tombstone_staged
    )


def test_replay_rebuilds_a_refused_row_stored_before_a_column_was_added() -> None:
    stored = {
        "message_id": "m1",
        "user_id": "u",
        "masked_ip": "t-ip",
        "create_date": "2024-01-02",
    }
    row = stored_row(stored)
    assert row.message_id == "m1"
    assert row.masked_ip == "t-ip"
    assert (row.masked_device_id, row.locale) == (None, None)
    with pytest.raises(ValueError, match="not a row"):
        stored_row({**stored, "masked_imei": "t"})  # not a column of today's table
    with pytest.raises(ValueError, match="not a row"):
        stored_row({"user_id": "u", "create_date": "2024-01-02"})  # no key


# --- a third PII field ------------------------------------------------------------------


def event_with_imei(user: str = "u-1") -> dict[str, Any]:
    return {"user_id": user, "ip": IP, "device_id": DEVICE, "imei": IMEI, "app_version": "x"}


def test_a_reject_keeps_a_third_pii_field_only_as_its_token() -> None:
    envelope = Envelope("m1", "h1", orjson.dumps(event_with_imei()), SENT_MS)
    masker = HmacMasker(KEY, WITH_IMEI)
    event = event_with_imei()
    rejection = reject(envelope, masker, "invalid_app_version", "r", parsed=event, table=WITH_IMEI)
    assert rejection.body is not None
    body = orjson.loads(rejection.body)
    assert body["imei"] == imei_token()
    assert rejection.pii_tokens == (
        fresh_token(KEY, IP_DOMAIN, IP),
        fresh_token(KEY, DEVICE_ID_DOMAIN, DEVICE),
        imei_token(),
    )
    assert IMEI not in rejection.body
    # Under today's registry the same key is an unknown one: only its type and size stay
    today = reject(envelope, HmacMasker(KEY), "invalid_app_version", "r", parsed=event)
    assert today.body is not None
    assert orjson.loads(today.body)["imei"] == {"type": "string", "size": len(IMEI)}


def row_with_imei(message_id: str, user: str, imei: str | None) -> Any:
    masker = HmacMasker(KEY, WITH_IMEI)
    values = {column: None for column in WITH_IMEI.column_names}
    values.update(message_id=message_id, user_id=user, create_date="2024-01-02")
    values.update(masked_ip=masker.masking("ip")(IP))
    values.update(masked_imei=None if imei is None else masker.masking("imei")(imei))
    return Row(**values)


async def test_isolation_lists_a_third_pii_field_s_token_and_writes_its_vault_entry(
    key_pair: tuple[bytes, bytes],
) -> None:
    # Given a batch of two rows with an imei, the second refused by the database, and
    # the vault entries their values made
    vaulting = VaultingMasker(KEY, Sealer(key_pair[1]), 10, WITH_IMEI)
    vaulting.masking("ip")(IP)
    vaulting.masking("imei")(IMEI)
    vaulting.masking("imei")("350000000000009")
    entries = vaulting.take()
    rows = [row_with_imei("m1", "u-1", "350000000000009"), row_with_imei("m2", "bad", IMEI)]
    items = [Processed(row.message_id, "", row, SENT_MS, 1) for row in rows]
    sink = FakeSink(refuse=lambda row: row.user_id == "bad")
    batch = Batch(items, HmacMasker(KEY).digest_body, entries, table=WITH_IMEI)
    # When it is written, isolating the refused row
    await write_isolating(sink, rows, [], batch)
    # Then its reject lists the imei's token, under the imei domain, and its body holds it
    refused = sink.rejects["m2"]
    assert refused.pii_tokens == (fresh_token(KEY, IP_DOMAIN, IP), imei_token())
    assert refused.body is not None
    assert orjson.loads(refused.body)["masked_imei"] == imei_token()
    # And each part wrote the vault entries of the tokens it holds, the imei's included
    assert set(sink.vault) == {entry.token for entry in entries}
    assert sink.vault[imei_token()].field == "imei"


def test_rekey_remaps_a_third_pii_field_s_token_under_its_own_domain(
    key_pair: tuple[bytes, bytes],
) -> None:
    # Given the vault entry of an imei, made under the current key
    private, public = key_pair
    vaulting = VaultingMasker(KEY, Sealer(public), 10, WITH_IMEI)
    assert vaulting.masking("imei")(IMEI) == imei_token()
    (entry,) = vaulting.take()
    row = as_vault_row(entry)
    # When the rotation maps it to the new key
    checker, new = Checker(KEY, WITH_IMEI), HmacMasker(NEW_KEY, WITH_IMEI)
    rotation = Rotation(Opener(private), checker, new, mask_key_id(NEW_KEY), 10)
    mapped = _mapped(row, rotation)
    # Then its new token is the imei domain's under the new key, sealed with its value
    assert mapped is not None
    old, token, sealed = mapped
    assert (old, token) == (imei_token(), imei_token(NEW_KEY))
    resealed = {**row, "token": token, "sealed": sealed, "mask_key_id": mask_key_id(NEW_KEY)}
    assert Opener(private).open_entry(resealed, Checker(NEW_KEY, WITH_IMEI)) == IMEI
    # And a rotation that does not know the field leaves the entry where it is
    today = Rotation(Opener(private), Checker(KEY), HmacMasker(NEW_KEY), "hk-new", 10)
    assert _mapped(row, today) is None


def as_vault_row(entry: VaultEntry) -> dict[str, Any]:
    return {
        "token": entry.token,
        "field": entry.field,
        "sealed": entry.sealed,
        "key_id": entry.key_id,
        "mask_key_id": entry.mask_key_id,
    }


class LedgerConnection:
    """What the erasure ledger asks of the batch's connection: the staged candidates, the
    ledger's hits for the digests asked; and what it executes."""

    def __init__(self, candidates: list[dict[str, Any]], hits: dict[str, str]) -> None:
        self.candidates = candidates
        self.hits = hits
        self.executed: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        if sql == query("erasure_candidates"):
            return self.candidates
        assert sql == query("erasure_hits")
        return [(digest, stone) for digest, stone in self.hits.items() if digest in args[0]]

    async def execute(self, sql: str, *args: Any) -> None:
        self.executed.append((sql, args))


async def test_the_erasure_ledger_collects_and_tombstones_a_third_pii_field_s_token(
    key_pair: tuple[bytes, bytes],
) -> None:
    # Given a staged row whose user's imei was erased (forget), and its batch's vault entries
    masker = HmacMasker(KEY, WITH_IMEI)
    row = row_with_imei("m1", "u-1", IMEI)
    vaulting = VaultingMasker(KEY, Sealer(key_pair[1]), 10, WITH_IMEI)
    vaulting.masking("ip")(IP)
    vaulting.masking("imei")(IMEI)
    entries = vaulting.take()
    digest = masker.digest_erased(masker.digest_user("u-1"), imei_token())
    connection = LedgerConnection([row._asdict()], {digest: "erased:" + "0" * 32})
    # When the ledger settles the batch
    settled = await ErasureLedger(masker, WITH_IMEI).settle(connection, [row], [], entries)
    # Then the staged imei takes the tombstone, the other columns keep their tokens
    ((sql, args),) = connection.executed
    assert sql == statements(WITH_IMEI).tombstone_staged
    assert args == (["m1"], [None], [None], ["erased:" + "0" * 32])
    # And the erased value is not vaulted again; the ip, not erased, is
    assert [entry.field for entry in settled.vault] == ["ip"]


def test_tokens_of_a_row_follow_the_registry() -> None:
    row = row_with_imei("m1", "u-1", IMEI)
    assert WITH_IMEI.tokens(row) == (fresh_token(KEY, IP_DOMAIN, IP), imei_token())
    assert WITH_IMEI.filled(row) == [
        ("masked_ip", fresh_token(KEY, IP_DOMAIN, IP)),
        ("masked_imei", imei_token()),
    ]
