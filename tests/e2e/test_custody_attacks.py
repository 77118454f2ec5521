"""PII custody attacked from the positions a security team asks about, through the CLI
as users run it: the loader's role and environment, someone with write access to
`pii_vault`, a custodian with their own SQL session, and a message that comes back after
its values were erased. Each test plays the attacker, then checks what they got."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import orjson
import pytest
from nacl.bindings import crypto_box_seal

from ingestor.custody.keys import public_key_of, read_private_key
from ingestor.demo.run import crash_after_commit
from ingestor.demo.synthetic import generate
from ingestor.settings import DEMO_HMAC_KEY, Settings
from ingestor.source.sqs import SqsQueue
from ingestor.transform.masking import HmacMasker
from tests.conftest import TEST_KEY, service_env
from tests.e2e.test_custody_cli import generate_keys, run
from tests.integration.helpers import find_plaintext

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

USER, OTHER = "u-attacked-1", "u-attacked-2"
IP, SHARED_IP, DEVICE = "203.0.113.141", "203.0.113.142", "000-00-0141"
NEW_KEY = "rotated-hmac-key-for-the-attack-tests-0123456789"
MASKER = HmacMasker(TEST_KEY.encode())
ESCAPES = ("\x1b]0;owned\x07", "\x1b[2J")


def login(user: str, **fields: str) -> str:
    return orjson.dumps({"user_id": user, "device_type": "ios", **fields}).decode()


async def vault_env(
    make_settings: Callable[..., Settings], tmp_path: Path, **overrides: str
) -> tuple[dict[str, str], Path]:
    """The service's environment with a vault key pair made by `keys generate`."""
    key_file = tmp_path / "vault.key"
    _, public_text = await asyncio.to_thread(generate_keys, key_file)
    env = {**service_env(make_settings()), "INGESTOR_VAULT_PUBLIC_KEY": public_text}
    env.update(overrides)
    return env, key_file


def key(key_file: Path) -> tuple[str, ...]:
    return ("--private-key-file", str(key_file))


def custodian(key_file: Path, reason: str = "DSR-1") -> tuple[str, ...]:
    return (*key(key_file), "--reason", reason)


async def drain(env: dict[str, str]) -> None:
    result = await run("run", "--drain", env=env)
    assert result.returncode == 0, result.stderr


# --- 1. erasure survives redelivery --------------------------------------------------------


async def test_a_message_redelivered_after_forget_lands_tombstoned_and_is_not_vaulted(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    # Given the user's event committed by a consumer that crashed before deleting it
    env, key_file = await vault_env(make_settings, tmp_path)
    await sqs_queue.send([login(USER, ip=IP, device_id=DEVICE)])
    settings = make_settings(vault_public_key=env["INGESTOR_VAULT_PUBLIC_KEY"])
    assert (await crash_after_commit(settings, 1)).messages == 1
    tokens = [MASKER.mask_ip(IP), MASKER.mask_device_id(DEVICE)]
    # When a data-subject request erases the user's values
    result = await run("forget", "--user-id", USER, "--reason", "DSR-1", env=env)
    assert result.returncode == 0, result.stderr
    stones = await db.fetchrow(
        "SELECT masked_ip, masked_device_id FROM user_logins WHERE user_id = $1", USER
    )
    # And SQS delivers the message again, and the service loads it
    await drain(env)
    # Then the row still holds the tombstones, and the values are nowhere: not in the
    # vault, not as tokens in any table
    row = await db.fetchrow(
        "SELECT masked_ip, masked_device_id FROM user_logins WHERE user_id = $1", USER
    )
    assert tuple(row) == tuple(stones)
    assert all(value.startswith("erased:") for value in row.values())
    assert await db.fetchval("SELECT count(*) FROM pii_vault") == 0
    assert await find_plaintext(db, {IP, DEVICE, *tokens}) == []
    # And a reveal of the tokens finds nothing
    result = await run("reveal", *tokens, *custodian(key_file), env=env)
    assert result.returncode == 1
    assert result.stdout == ""


async def test_the_same_values_in_a_new_message_for_the_same_user_stay_erased(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    # Given the user's event loaded and then erased
    env, _ = await vault_env(make_settings, tmp_path)
    await sqs_queue.send([login(USER, ip=IP, device_id=DEVICE)])
    await drain(env)
    result = await run("forget", "--user-id", USER, "--reason", "DSR-2", env=env)
    assert result.returncode == 0, result.stderr
    stone = await db.fetchval("SELECT masked_ip FROM user_logins WHERE user_id = $1", USER)
    # When the same event comes back as a new message (a DLQ drained later, a producer's
    # retry), beside another user's event with the same address
    await sqs_queue.send([login(USER, ip=IP, device_id=DEVICE), login(OTHER, ip=IP)])
    await drain(env)
    # Then the user's new row lands with the same tombstone, and the values are not vaulted
    # for it; the other user's row is loaded as usual, its value vaulted
    rows = await db.fetch(
        "SELECT masked_ip, masked_device_id FROM user_logins WHERE user_id = $1", USER
    )
    assert len(rows) == 2
    assert {r["masked_ip"] for r in rows} == {stone}
    assert all(r["masked_device_id"].startswith("erased:") for r in rows)
    other = await db.fetchval("SELECT masked_ip FROM user_logins WHERE user_id = $1", OTHER)
    assert other == MASKER.mask_ip(IP)
    vaulted = {r["token"] for r in await db.fetch("SELECT token FROM pii_vault")}
    assert vaulted == {MASKER.mask_ip(IP)}
    assert await find_plaintext(db, {DEVICE, MASKER.mask_device_id(DEVICE)}) == []


# --- 3. erasure reaches every reject of the user -----------------------------------------


async def test_forget_by_user_id_erases_the_users_rejects_even_without_tokens(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    # Given rejects of the user that carry no ip or device_id field, one with an address
    # in free text and one with an id the transform cannot parse as a string
    env, _ = await vault_env(make_settings, tmp_path)
    note = login(USER, app_version="v2", note=f"my ip is {IP}")
    nested = login(USER, locale="x" * 40, extra={"client": {"addr": SHARED_IP}})
    ids = await sqs_queue.send([note, nested, login(OTHER, app_version="v3")])
    await drain(env)
    assert await db.fetchval("SELECT count(*) FROM ingestor_rejects") == 3
    # When the user's values are forgotten
    result = await run("forget", "--user-id", USER, "--reason", "DSR-3", env=env)
    assert result.returncode == 0, result.stderr
    # Then neither reject keeps a body or a sealed body; the other user's is untouched
    rejects = "SELECT body, sealed_body FROM ingestor_rejects WHERE message_id = ANY($1)"
    mine = await db.fetch(rejects, ids[:2])
    assert len(mine) == 2
    assert all(r["body"] is None and r["sealed_body"] is None for r in mine)
    (theirs,) = await db.fetch(rejects, ids[2:])
    assert theirs["body"] is not None
    assert theirs["sealed_body"] is not None
    assert await find_plaintext(db, {IP, SHARED_IP}) == []


# --- 4. forget and rekey cannot interleave -----------------------------------------------


async def test_forget_refuses_while_a_key_rotation_is_unfinished(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    # Given a loaded database, and a rotation killed after it committed part of its work
    env, key_file = await vault_env(make_settings, tmp_path, NEW_KEY=NEW_KEY)
    bodies = [e.body for e in generate(400, seed=61, junk_rate=0)]
    await sqs_queue.send([*bodies, login(USER, ip=IP, device_id=DEVICE)])
    await drain(env)
    rotate = ("rekey", *key(key_file), "--new-hmac-key-env", "NEW_KEY")
    process = subprocess.Popen(  # noqa: ASYNC220 - killed below, not awaited
        [sys.executable, "-m", "ingestor", *rotate, "--batch-size", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while await db.fetchval("SELECT count(*) FROM ingestor_rekey_map") < 5:
            assert time.monotonic() < deadline, "the rotation did not start"
            await asyncio.sleep(0.005)
        process.kill()
    finally:
        process.wait(timeout=30)
    assert process.returncode == -9
    # When the user's values are forgotten while the rotation is unfinished
    result = await run("forget", "--user-id", USER, "--reason", "DSR-4", env=env)
    # Then forget refuses, in one line, and changes nothing
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "rotation" in line
    assert "unfinished" in line
    assert await db.fetchval("SELECT count(*) FROM pii_reveal_audit WHERE action = 'forget'") == 0
    # When the rotation is finished, then the user forgotten
    result = await run(*rotate, env=env)
    assert result.returncode == 0, result.stderr
    env["INGESTOR_HMAC_KEY"] = NEW_KEY
    result = await run("forget", "--user-id", USER, "--reason", "DSR-4", env=env)
    assert result.returncode == 0, result.stderr
    # Then no token of the user's values reveals anything, under either key
    rotated = HmacMasker(NEW_KEY.encode())
    tokens = [rotated.mask_ip(IP), rotated.mask_device_id(DEVICE), *MASKER_TOKENS]
    result = await run("reveal", *tokens, *custodian(key_file), env=env)
    assert result.returncode == 1
    assert result.stdout == ""


MASKER_TOKENS = (MASKER.mask_ip(IP), MASKER.mask_device_id(DEVICE))


async def test_forget_of_a_token_with_no_vault_entry_says_so(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, db: asyncpg.Connection
) -> None:
    # Given rows loaded while the vault was off
    env = service_env(make_settings())
    await sqs_queue.send([login(USER, ip=IP), login(OTHER, ip=IP)])
    await drain(env)
    token = MASKER.mask_ip(IP)
    # When its token is forgotten
    result = await run("forget", token, "--reason", "DSR-5", env=env)
    # Then the rows are given tombstones, and the output says there was no vault entry
    assert result.returncode == 0, result.stderr
    assert "no vault entry" in result.stdout + result.stderr
    assert "2 rows" in result.stdout
    assert await db.fetchval("SELECT count(*) FROM user_logins WHERE masked_ip = $1", token) == 0
    # When a token that is nowhere, or a tombstone, is forgotten, it says that nothing was
    # erased (exit 1)
    stone = await db.fetchval("SELECT masked_ip FROM user_logins LIMIT 1")
    for token in ("f" * 64, stone):
        result = await run("forget", token, "--reason", "DSR-5", env=env)
        assert result.returncode == 1
        assert f"{token}: not found" in result.stderr
        assert "erased 0 tokens" in result.stdout


# --- 5. a vault entry is bound to its token ----------------------------------------------


def framed(field: str, token: str, value: str) -> bytes:
    """What the loader seals: the field, the token and the value."""
    return b"ingestor-vault/v2\x00" + f"{field}\x00{token}\x00{value}".encode()


async def test_a_vault_entry_resealed_by_someone_with_write_access_is_not_revealed_or_moved(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    # Given the user's values vaulted
    env, key_file = await vault_env(make_settings, tmp_path, NEW_KEY=NEW_KEY)
    await sqs_queue.send([login(USER, ip=IP, device_id=DEVICE)])
    await drain(env)
    ip_token, device_token = MASKER_TOKENS
    # When someone with UPDATE on pii_vault seals values of their own to the public key
    # (which is not secret): a bare value, and one framed exactly as the loader frames it
    public = public_key_of(read_private_key(key_file))
    forged_ip, forged_device = "198.51.100.66", "999-99-9999"
    update = "UPDATE pii_vault SET sealed = $2 WHERE token = $1"
    await db.execute(update, ip_token, crypto_box_seal(forged_ip.encode(), public))
    sealed = crypto_box_seal(framed("device_id", device_token, forged_device), public)
    await db.execute(update, device_token, sealed)
    # Then reveal prints neither forged value: it reports a mismatch for each (exit 1)
    result = await run("reveal", ip_token, device_token, *custodian(key_file), env=env)
    assert result.returncode == 1
    assert forged_ip not in result.stdout + result.stderr
    assert forged_device not in result.stdout + result.stderr
    assert result.stderr.count("does not match its token") == 2
    # And rekey refuses to move them: the rows keep tokens that no forged value made
    result = await run("rekey", *key(key_file), "--new-hmac-key-env", "NEW_KEY", env=env)
    assert result.returncode == 1
    assert "2 vault entries do not match their tokens" in result.stderr
    rotated = HmacMasker(NEW_KEY.encode())
    row = await db.fetchrow(
        "SELECT masked_ip, masked_device_id FROM user_logins WHERE user_id = $1", USER
    )
    assert row["masked_ip"] != rotated.mask_ip(forged_ip)
    assert row["masked_device_id"] != rotated.mask_device_id(forged_device)


# --- 6. an audit trail a custodian cannot quietly rewrite --------------------------------


async def test_the_audit_trail_names_the_database_user_and_a_rewrite_is_detected(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    # Given a reveal by someone who claims to be somebody else, with escape codes
    env, key_file = await vault_env(make_settings, tmp_path)
    await sqs_queue.send([login(USER, ip=IP, device_id=DEVICE)])
    await drain(env)
    claimed = "mallory" + ESCAPES[1]
    args = (*MASKER_TOKENS, *custodian(key_file, "T-9"), "--actor", claimed)
    result = await run("reveal", *args, env=env)
    assert result.returncode == 0, result.stderr
    # Then the audit row names the database's session user, and the claim beside it,
    # escaped
    row = await db.fetchrow("SELECT actor, claimed_actor FROM pii_reveal_audit")
    assert row["actor"] == await db.fetchval("SELECT session_user")
    assert row["claimed_actor"] == "mallory\\x1b[2J"
    # When the custodian's own session tries to rewrite or delete it, it is refused
    for statement in (
        "UPDATE pii_reveal_audit SET reason = 'nothing to see'",
        "DELETE FROM pii_reveal_audit",
        "TRUNCATE pii_reveal_audit",
    ):
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await db.execute(statement)
    # And `audit verify` finds the chain intact
    result = await run("audit", "verify", env=env)
    assert result.returncode == 0, result.stderr
    assert "intact" in result.stdout
    # When the table's owner switches the guard off and rewrites the reason anyway
    await db.execute("ALTER TABLE pii_reveal_audit DISABLE TRIGGER USER")
    try:
        await db.execute("UPDATE pii_reveal_audit SET reason = 'routine' WHERE action = 'reveal'")
    finally:
        await db.execute("ALTER TABLE pii_reveal_audit ENABLE TRIGGER USER")
    # Then `audit verify` reports the break (exit 1, one line naming the row)
    result = await run("audit", "verify", env=env)
    assert result.returncode == 1
    assert "broken at" in result.stderr


# --- 7. shared values -----------------------------------------------------------------------


async def test_forget_by_user_keeps_a_value_another_user_shares_and_by_token_erases_it(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    # Given two users behind the same address, one with a device id of their own
    env, key_file = await vault_env(make_settings, tmp_path)
    await sqs_queue.send([login(USER, ip=SHARED_IP, device_id=DEVICE), login(OTHER, ip=SHARED_IP)])
    await drain(env)
    shared = MASKER.mask_ip(SHARED_IP)
    # When the first user is forgotten
    result = await run("forget", "--user-id", USER, "--reason", "DSR-7", env=env)
    assert result.returncode == 0, result.stderr
    # Then the first user's row holds tombstones of its own; the other keeps the token, and
    # the shared value can still be revealed for it; the device id cannot
    mine = await db.fetchrow(
        "SELECT masked_ip, masked_device_id FROM user_logins WHERE user_id = $1", USER
    )
    assert all(value.startswith("erased:") for value in mine.values())
    theirs = await db.fetchval("SELECT masked_ip FROM user_logins WHERE user_id = $1", OTHER)
    assert theirs == shared
    result = await run("reveal", shared, *custodian(key_file), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\t")[2].strip() == SHARED_IP
    result = await run("reveal", MASKER.mask_device_id(DEVICE), *custodian(key_file), env=env)
    assert result.returncode == 1
    # When the shared value itself is forgotten by its token
    result = await run("forget", shared, "--reason", "DSR-8", env=env)
    assert result.returncode == 0, result.stderr
    # Then it is erased everywhere, for both users
    left = await db.fetchval("SELECT count(*) FROM user_logins WHERE masked_ip = $1", shared)
    assert left == 0
    result = await run("reveal", shared, *custodian(key_file), env=env)
    assert result.returncode == 1
    assert await find_plaintext(db, {SHARED_IP, DEVICE}) == []


# --- 8. smaller findings -----------------------------------------------------------------


REJECT = (
    "INSERT INTO ingestor_rejects (message_id, reason_code, reason, body, body_kind,"
    " body_bytes, body_digest, sent_at, receive_count)"
    " VALUES ($1, $2, 'planted', $3, $4, 1, 'd', now(), 1)"
)


async def test_database_text_reaches_the_terminal_escaped(
    make_settings: Callable[..., Settings], db: asyncpg.Connection, tmp_path: Path
) -> None:
    # Given rows written by someone with write access to the tables, holding escape codes
    env, key_file = await vault_env(make_settings, tmp_path, INGESTOR_LOG_FORMAT="text")
    await db.execute(REJECT, "m-esc", "x" + "".join(ESCAPES), None, "object")
    await db.execute(
        "INSERT INTO ingestor_rekey_state (mask_key_id, phase) VALUES ($1, 'map')",
        "hk-" + ESCAPES[0],
    )
    # When `rejects list` and a refused `rekey` print them
    listing = await run("rejects", "list", env=env)
    rekey = await run(
        "rekey", *key(key_file), "--new-hmac-key-env", "NEW_KEY",
        env={**env, "NEW_KEY": NEW_KEY},
    )  # fmt: skip
    # Then no escape code reaches the terminal raw: each is written out
    assert listing.returncode == 0, listing.stderr
    assert rekey.returncode == 1
    for output in (listing.stdout, listing.stderr, rekey.stdout, rekey.stderr):
        assert "\x1b" not in output
        assert "\x07" not in output
    assert "\\x1b]0;owned\\x07" in listing.stdout
    assert "\\x1b]0;owned\\x07" in rekey.stderr


async def test_replay_skips_a_malformed_reject_with_a_warning(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    # Given a replayable reject loaded by the service, and two malformed ones planted
    env, key_file = await vault_env(make_settings, tmp_path)
    await sqs_queue.send([login(USER, app_version="v1")])
    await drain(env)
    await db.execute(REJECT, "m-bad-1", "db_23514", "not json", "row")
    await db.execute(REJECT, "m-bad-2", "db_23514", '{"user_id": "u"}', "row")
    # When the rejects are replayed
    result = await run("rejects", "replay", *key(key_file), env=env)
    # Then each malformed one is skipped with a warning, and the run finishes
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("left as it is: its stored body is malformed") == 2
    assert "replayed: loaded 0, still rejected 1" in result.stdout
    assert await db.fetchval("SELECT count(*) FROM ingestor_rejects") == 3


async def test_a_private_key_file_behind_a_symlink_or_owned_by_another_user_is_refused(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    env, key_file = await vault_env(make_settings, tmp_path)
    link = tmp_path / "link.key"
    link.symlink_to(key_file)
    result = await run("reveal", "abc", *custodian(link), env=env)
    assert result.returncode == 1
    assert "symbolic link" in result.stderr
    if os.geteuid() == 0:  # only root can give a file away
        os.chown(key_file, 65534, 65534)
        result = await run("reveal", "abc", *custodian(key_file), env=env)
        assert result.returncode == 1
        assert "owned by uid 65534" in result.stderr


async def test_rekey_and_replay_refuse_the_demo_key(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    env, key_file = await vault_env(make_settings, tmp_path)
    demo = {**env, "INGESTOR_HMAC_KEY": DEMO_HMAC_KEY, "NEW_KEY": NEW_KEY}
    to_demo = {**env, "NEW_KEY": DEMO_HMAC_KEY}
    attempts = [
        ("rejects", "replay", *key(key_file)),
        ("rekey", *key(key_file), "--new-hmac-key-env", "NEW_KEY"),
    ]
    for args, environment in [(attempts[0], demo), (attempts[1], demo), (attempts[1], to_demo)]:
        result = await run(*args, env=environment)
        assert result.returncode == 2, (args, result.stderr)
        assert "demo key" in result.stderr
    # And rekey holds the new key to the same rules as INGESTOR_HMAC_KEY
    result = await run(*attempts[1], env={**env, "NEW_KEY": "password" * 4})
    assert result.returncode == 2
    assert "NEW_KEY: is a pattern of 8 characters repeated" in result.stderr


WEAK_KEYS = [
    "a" * 32,
    "password" * 4,
    "0123456789abcdef" * 2,
    # The example key shown in the README
    "3f5a0e8c0d2b47d9b1c6e2f4a7d8c9b0e1f2a3b4c5d6e7f8091a2b3c4d5e6f70",
]


@pytest.mark.parametrize("key", WEAK_KEYS, ids=["one char", "password x4", "pattern", "readme"])
def test_an_obviously_weak_key_is_refused(key: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGESTOR_")}
    env.update(
        INGESTOR_QUEUE_URL="http://127.0.0.1:9/000000000000/q",
        INGESTOR_DATABASE_URL="postgresql://postgres@127.0.0.1:9/postgres",
        INGESTOR_HMAC_KEY=key,
    )
    result = subprocess.run(
        [sys.executable, "-m", "ingestor", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "INGESTOR_HMAC_KEY" in line
    assert key not in line


def core_limits(pid: int) -> list[str]:
    """The soft and hard RLIMIT_CORE of a process, as /proc shows them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            return line.split()[4:6]
    raise AssertionError("no core file size in /proc/<pid>/limits")


async def test_the_service_runs_with_core_dumps_off(
    make_settings: Callable[..., Settings],
) -> None:
    # Given a service started with core dumps allowed by its parent
    env = service_env(make_settings())
    env["INGESTOR_DRAIN"] = "false"

    def allow_core_dumps() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2)

    process = subprocess.Popen(  # noqa: ASYNC220 - stopped below
        [sys.executable, "-m", "ingestor", "run"],
        env=env,
        preexec_fn=allow_core_dumps,  # noqa: PLW1509 - a single-threaded test process
        stderr=subprocess.DEVNULL,
    )
    try:
        # Then, once it runs, it has turned them off itself
        deadline = time.monotonic() + 30
        while core_limits(process.pid) != ["0", "0"]:
            assert time.monotonic() < deadline, "core dumps are still allowed"
            await asyncio.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_base64_and_hex_keys_from_openssl_are_accepted() -> None:
    for args in (["rand", "-hex", "32"], ["rand", "-base64", "32"]):
        for _ in range(2):
            key = subprocess.run(
                ["openssl", *args], capture_output=True, text=True, check=True
            ).stdout.strip()
            env = {k: v for k, v in os.environ.items() if not k.startswith("INGESTOR_")}
            env["INGESTOR_HMAC_KEY"] = key
            result = subprocess.run(
                [sys.executable, "-m", "ingestor", "check"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert "INGESTOR_HMAC_KEY" not in result.stderr
