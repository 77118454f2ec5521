"""The grants the documentation gives (docs/pii-and-keys.md), exactly: roles made from its
SQL block run the real service (vault on, rejects, an erased user's message coming back),
the custody commands and `audit verify`, and each is refused what the page says it cannot
do."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import pytest
import pytest_asyncio
from pydantic import SecretStr

from ingestor.demo.synthetic import generate
from ingestor.observe.hooks import Stats
from ingestor.pipeline.service import run_service
from ingestor.settings import Settings
from ingestor.source.sqs import SqsQueue
from ingestor.transform.masking import HmacMasker
from tests.conftest import TEST_KEY, service_env
from tests.e2e.test_custody_cli import generate_keys, run
from tests.integration.helpers import find_plaintext, plaintext_pii

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

GRANTS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "pii-and-keys.md"
ROLES = ("ingestor_service", "ingestor_custodian", "ingestor_auditor")
USER, IP, DEVICE = "u-grants-1", "203.0.113.161", "000-00-0161"


def documented_grants() -> str:
    """The documented grants, as a user would copy them."""
    text = GRANTS_PAGE.read_text(encoding="utf-8")
    section = text[text.index("## Grants") : text.index("## Reveal")]
    (block,) = re.findall(r"```sql\n(.*?)```", section, re.S)
    return block


def with_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


@pytest_asyncio.fixture
async def role_urls(postgres_url: str, database: str) -> AsyncIterator[dict[str, str]]:
    """The documented roles (names of this test's own) on the test's database: role -> URL."""
    names = {role: f"{role}_{uuid.uuid4().hex[:8]}" for role in ROLES}
    grants = documented_grants().replace(
        "DATABASE logins", f'DATABASE "{urlsplit(database).path[1:]}"'
    )
    for role, name in names.items():
        grants = grants.replace(role, name)
    admin = await asyncpg.connect(database)
    try:
        for name in names.values():
            await admin.execute(f'CREATE ROLE "{name}" LOGIN')
        await admin.execute(grants)
    finally:
        await admin.close()
    yield {role: with_user(database, name) for role, name in names.items()}
    admin = await asyncpg.connect(database)
    try:
        for name in names.values():
            await admin.execute(f'DROP OWNED BY "{name}"')
    finally:
        await admin.close()
    admin = await asyncpg.connect(postgres_url)
    try:
        for name in names.values():
            await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
    finally:
        await admin.close()


def event(user: str, **fields: str) -> str:
    return orjson.dumps({"user_id": user, "device_type": "ios", **fields}).decode()


async def drain(settings: Settings) -> Stats:
    stats = Stats()
    await asyncio.wait_for(run_service(settings, asyncio.Event(), stats), 90)
    return stats


async def test_the_documented_grants_run_everything_and_refuse_the_rest(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    role_urls: dict[str, str],
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "vault.key"
    _, public_text = await asyncio.to_thread(generate_keys, key_file)
    service = make_settings(
        database_url=SecretStr(role_urls["ingestor_service"]), vault_public_key=public_text
    )
    # The service, with its grants only: a drain with the vault on, rejects included
    bodies = [e.body for e in generate(300, seed=71, junk_rate=0.1, repeat_rate=0.1)]
    mine = event(USER, ip=IP, device_id=DEVICE)
    await sqs_queue.send([*bodies, mine])
    stats = await drain(service)
    assert stats.loaded == await db.fetchval("SELECT count(*) FROM user_logins") > 0
    assert stats.rejected == await db.fetchval("SELECT count(*) FROM ingestor_rejects") > 0
    assert await db.fetchval("SELECT count(*) FROM pii_vault") > 100
    result = await run("check", env=service_env(service))
    assert result.returncode == 0, result.stdout + result.stderr
    # The custodian, with its grants only: reveal, forget, rejects list and replay, rekey
    custodian = {
        **service_env(service),
        "INGESTOR_DATABASE_URL": role_urls["ingestor_custodian"],
        "NEW_KEY": "rotated-key-for-the-grants-test-0123456789",
    }
    masker = HmacMasker(TEST_KEY.encode())
    key = ("--private-key-file", str(key_file))
    result = await run("reveal", masker.mask_ip(IP), *key, "--reason", "T-1", env=custodian)
    assert result.returncode == 0, result.stderr
    result = await run("forget", "--user-id", USER, "--reason", "DSR-1", env=custodian)
    assert result.returncode == 0, result.stderr
    for args in (("rejects", "list"), ("rejects", "replay", *key)):
        result = await run(*args, env=custodian)
        assert result.returncode == 0, result.stderr
    # The service again: the erased user's message comes back, and lands tombstoned
    await sqs_queue.send([mine])
    await drain(service)
    rows = await db.fetch("SELECT masked_ip FROM user_logins WHERE user_id = $1", USER)
    assert len(rows) == 2
    assert all(r["masked_ip"].startswith("erased:") for r in rows)
    # The custodian rotates the key; the auditor verifies the trail
    result = await run("rekey", *key, "--new-hmac-key-env", "NEW_KEY", env=custodian)
    assert result.returncode == 0, result.stderr
    auditor = {**custodian, "INGESTOR_DATABASE_URL": role_urls["ingestor_auditor"]}
    result = await run("audit", "verify", env=auditor)
    assert result.returncode == 0, result.stderr
    assert await find_plaintext(db, plaintext_pii([*bodies, mine])) == []
    # (every audit row names the custodian's role: the commands ran with its grants)
    actors = {r["actor"] for r in await db.fetch("SELECT actor FROM pii_reveal_audit")}
    assert actors == {urlsplit(role_urls["ingestor_custodian"]).username}


REFUSED = {
    "ingestor_service": [
        "UPDATE pii_vault SET sealed = sealed",
        "DELETE FROM pii_vault",
        "SELECT sealed FROM pii_vault",
        "INSERT INTO pii_reveal_audit (action, tokens, reason) VALUES ('reveal', '{}', 'x')",
        "UPDATE pii_reveal_audit SET reason = 'x'",
        "DELETE FROM pii_reveal_audit",
        "SELECT reason FROM pii_reveal_audit",
        "INSERT INTO ingestor_erasures (digest, tombstone, mask_key_id) VALUES ('d', 't', 'k')",
        "DELETE FROM ingestor_erasures",
    ],
    "ingestor_custodian": [
        "UPDATE pii_reveal_audit SET reason = 'x'",
        "DELETE FROM pii_reveal_audit",
        "TRUNCATE pii_reveal_audit",
        "DELETE FROM ingestor_erasures",
        "UPDATE ingestor_erasures SET tombstone = 'x'",
    ],
    "ingestor_auditor": [
        "UPDATE pii_reveal_audit SET reason = 'x'",
        "SELECT sealed FROM pii_vault",
        "SELECT * FROM user_logins",
    ],
}


@pytest.mark.parametrize("role", ROLES)
async def test_each_documented_role_is_refused_what_it_must_not_do(
    role_urls: dict[str, str], role: str
) -> None:
    connection = await asyncpg.connect(role_urls[role])
    try:
        for statement in REFUSED[role]:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute(statement)
    finally:
        await connection.close()


def test_the_grants_block_gives_no_role_a_way_to_rewrite_the_audit_trail() -> None:
    for line in documented_grants().splitlines():
        if "pii_reveal_audit" in line and line.startswith("GRANT"):
            privileges = line.split(" ON ")[0]
            assert not {"UPDATE", "DELETE", "TRUNCATE", "ALL"} & set(privileges.split()), line
