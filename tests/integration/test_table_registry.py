"""A third PII column on a real user_logins: the statements generated from a copy of the
registry that declares it (`ingestor/table.py`, `sink/generated.py`) merge, erase and
rekey it as they do masked_ip and masked_device_id, each under its own domain."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from ingestor.custody.audit import Request
from ingestor.custody.erasure import forget
from ingestor.custody.keys import generate_key_pair
from ingestor.custody.rekey import rekey
from ingestor.custody.tombstones import is_tombstone
from ingestor.custody.vault import Checker, Opener, Sealer, VaultingMasker
from ingestor.models import VAULT_COLUMNS, VaultEntry
from ingestor.sink.generated import STAGING_TABLE, statements
from ingestor.sink.queries import query
from ingestor.table import DEVICE_ID_DOMAIN, IP_DOMAIN
from tests.conftest import TEST_KEY
from tests.unit.test_table_registry import DEVICE, IMEI, IMEI_DOMAIN, IP, WITH_IMEI, fresh_token

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

KEY = TEST_KEY.encode()
NEW_KEY = b"the-new-hmac-key-after-rotation-0123456789"
REQUEST = Request.of("TICKET-13", "alice")
SQL = statements(WITH_IMEI)
USER, OTHER = "u-imei", "u-other"


@pytest.fixture
async def imei_db(db: asyncpg.Connection) -> asyncpg.Connection:
    """A migrated database whose user_logins has a third PII column, and whose vault
    takes its field (as a migration adding one would leave them)."""
    await db.execute("ALTER TABLE user_logins ADD COLUMN masked_imei varchar(256)")
    await db.execute(
        "ALTER TABLE pii_vault DROP CONSTRAINT pii_vault_field_check, "
        "ADD CONSTRAINT pii_vault_field_check CHECK (field IN ('ip', 'device_id', 'imei'))"
    )
    await db.execute(SQL.staging)
    return db


def row(message_id: str, user: str, masker: VaultingMasker, imei: str = IMEI) -> tuple[Any, ...]:
    values: dict[str, Any] = dict.fromkeys(WITH_IMEI.column_names)
    values.update(message_id=message_id, user_id=user, create_date=dt.date(2024, 1, 2))
    values.update(masked_ip=masker.masking("ip")(IP), masked_imei=masker.masking("imei")(imei))
    values.update(masked_device_id=masker.masking("device_id")(DEVICE))
    return tuple(values[column] for column in WITH_IMEI.column_names)


async def load(db: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> tuple[int, int]:
    """COPY into staging and merge, in one transaction, as the sink does."""
    async with db.transaction():
        await db.copy_records_to_table(STAGING_TABLE, records=rows, columns=WITH_IMEI.column_names)
        counts = await db.fetchrow(SQL.merge)
    return counts["inserted"], counts["replaced"]


async def vault(db: asyncpg.Connection, entries: Sequence[VaultEntry]) -> None:
    columns = [[getattr(e, name) for e in entries] for name in VAULT_COLUMNS]
    await db.execute(query("insert_vault"), *columns)


async def imeis(db: asyncpg.Connection, user: str) -> set[str]:
    rows = await db.fetch("SELECT masked_imei FROM user_logins WHERE user_id = $1", user)
    return {r["masked_imei"] for r in rows}


async def vaulted(db: asyncpg.Connection) -> dict[str, str]:
    return dict(await db.fetch("SELECT token, field FROM pii_vault"))


async def test_a_redelivery_keeps_the_third_column_s_tombstone(
    imei_db: asyncpg.Connection,
) -> None:
    # Given a loaded row whose imei was then erased
    masker = VaultingMasker(KEY, Sealer(generate_key_pair()[1]), 10, WITH_IMEI)
    loaded = row("m1", USER, masker)
    assert await load(imei_db, [loaded]) == (1, 0)
    assert await imeis(imei_db, USER) == {fresh_token(KEY, IMEI_DOMAIN, IMEI)}
    stone = "erased:" + "1" * 32
    await imei_db.execute("UPDATE user_logins SET masked_imei = $1", stone)
    # When the same message is delivered again
    assert await load(imei_db, [loaded]) == (0, 1)
    # Then the tombstone stays, and the other columns are the message's
    got = await imei_db.fetchrow("SELECT masked_ip, masked_imei FROM user_logins")
    assert (got["masked_ip"], got["masked_imei"]) == (fresh_token(KEY, IP_DOMAIN, IP), stone)


async def test_forget_erases_a_user_s_third_pii_value_and_its_vault_row(
    imei_db: asyncpg.Connection,
) -> None:
    # Given two users' rows with vaulted values, the imei not shared
    masker = VaultingMasker(KEY, Sealer(generate_key_pair()[1]), 10, WITH_IMEI)
    await load(imei_db, [row("m1", USER, masker), row("m2", OTHER, masker, "350000000000009")])
    await vault(imei_db, masker.take())
    token = fresh_token(KEY, IMEI_DOMAIN, IMEI)
    assert (await vaulted(imei_db))[token] == "imei"
    # When the user is forgotten
    erased = await forget(imei_db, KEY, REQUEST, user_id=USER, table=WITH_IMEI)
    # Then their imei is a tombstone, and its vault row is gone (ip and device id, shared
    # with the other user, stay vaulted)
    (left,) = await imeis(imei_db, USER)
    assert is_tombstone(left)
    assert token not in await vaulted(imei_db)
    assert (erased.tokens, erased.vault_rows, erased.shared) == (3, 1, 2)
    assert await imeis(imei_db, OTHER) == {fresh_token(KEY, IMEI_DOMAIN, "350000000000009")}


async def test_rekey_rewrites_the_third_column_under_its_own_domain(
    imei_db: asyncpg.Connection,
) -> None:
    # Given rows with vaulted values under the current key
    private, public = generate_key_pair()
    masker = VaultingMasker(KEY, Sealer(public), 10, WITH_IMEI)
    await load(imei_db, [row("m1", USER, masker)])
    await vault(imei_db, masker.take())
    # When the key is rotated
    checker = Checker(KEY, WITH_IMEI)
    done = await rekey(imei_db, Opener(private), checker, NEW_KEY, REQUEST, table=WITH_IMEI)
    # Then the imei holds its token under the new key and the imei domain, vaulted as one
    new = fresh_token(NEW_KEY, IMEI_DOMAIN, IMEI)
    assert new != fresh_token(NEW_KEY, DEVICE_ID_DOMAIN, IMEI)
    assert await imeis(imei_db, USER) == {new}
    assert (await vaulted(imei_db))[new] == "imei"
    assert (done.values, done.rows, done.unvaulted_rows) == (3, 1, 0)
