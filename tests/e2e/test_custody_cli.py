"""The PII custody commands as a user runs them: `python -m ingestor keys|reveal|forget|
rekey|rejects ...` in a subprocess, against the embedded servers."""

from __future__ import annotations

import asyncio
import base64
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import orjson
import pytest

from ingestor.custody.keys import public_key_of, read_private_key, vault_key_id
from ingestor.demo.synthetic import generate
from ingestor.settings import Settings
from ingestor.sink.generated import LOGINS
from ingestor.source.sqs import SqsQueue
from ingestor.transform.masking import HmacMasker, mask_key_id
from tests.conftest import TEST_KEY, service_env
from tests.e2e.test_cli import clean_env, ingestor
from tests.integration.helpers import find_plaintext, plaintext_pii
from tests.pii import expect_absent, expect_same

pytestmark = pytest.mark.e2e

IP, DEVICE = "203.0.113.91", "000-00-0091"
NEW_KEY = "rotated-hmac-key-for-the-e2e-test-0123456789"


async def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(ingestor, *args, env=env)


def generate_keys(path: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    """`keys generate` into `path`; the result and the public key it printed."""
    result = ingestor("keys", "generate", "--private-key-file", str(path), env=clean_env())
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if "PUBLIC_KEY=" in line]
    return result, line.split("=", 1)[1]


def secrets_of(*key_files: Path) -> list[str]:
    """Every key that must never be printed, in the forms it could be printed in."""
    keys = [read_private_key(path) for path in key_files]
    return [
        TEST_KEY,
        NEW_KEY,
        *(base64.b64encode(k).decode() for k in keys),
        *(k.hex() for k in keys),
    ]


@pytest.mark.parametrize(
    ("args", "missing"),
    [
        (["reveal", "abc", "--reason", "T-1"], "--private-key-file"),
        (["reveal", "abc", "--private-key-file", "k"], "--reason"),
        (["reveal", "--private-key-file", "k", "--reason", "T-1"], "TOKEN"),
        (["forget", "abc"], "--reason"),
        (["rekey", "--private-key-file", "k"], "--new-hmac-key-env"),
        (["rejects", "replay"], "--private-key-file"),
        (["keys", "generate"], "--private-key-file"),
        (
            ["rekey", "--private-key-file", "k", "--new-hmac-key-env", "V", "--batch-size", "0"],
            "--batch-size: must be at least 1",
        ),
    ],
)
def test_a_missing_argument_exits_2_with_usage(args: list[str], missing: str) -> None:
    result = ingestor(*args, env=clean_env())
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert missing in result.stderr
    assert "Traceback" not in result.stderr


def test_keys_generate_writes_a_0600_file_and_prints_the_public_key(tmp_path: Path) -> None:
    # When a user generates a key pair
    path = tmp_path / "vault.key"
    result, public_text = generate_keys(path)
    # Then the private key is in a file only its owner can read, and the public key and its
    # id are printed, the private key never
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    private = read_private_key(path)
    public = public_key_of(private)
    assert base64.b64decode(public_text) == public
    assert f"key id: {vault_key_id(public)}" in result.stdout
    for secret in secrets_of(path):
        assert secret not in result.stdout + result.stderr
    # When it is run again on the same file
    before = path.read_bytes()
    again = ingestor("keys", "generate", "--private-key-file", str(path), env=clean_env())
    # Then it refuses, in one line, and the key is unchanged
    assert again.returncode == 1
    assert len(again.stderr.strip().splitlines()) == 1
    assert "refusing to overwrite" in again.stderr
    assert path.read_bytes() == before


def test_key_file_problems_are_one_line_without_a_traceback(tmp_path: Path) -> None:
    # A key file that cannot be created
    result = ingestor(
        "keys", "generate", "--private-key-file", str(tmp_path / "no" / "k"), env=clean_env()
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot create the private key file" in result.stderr
    assert "Traceback" not in result.stderr
    # A key file that is not there
    reveal = ("reveal", "abc", "--reason", "T-1", "--private-key-file")
    result = ingestor(*reveal, str(tmp_path / "absent.key"), env=clean_env())
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot read the private key file" in result.stderr
    # A blank reason is a bad argument, even with a good key file
    key_file = tmp_path / "vault.key"
    generate_keys(key_file)
    blank = ("reveal", "abc", "--private-key-file", str(key_file), "--reason", "  ")
    result = ingestor(*blank, env=clean_env())
    assert result.returncode == 2
    assert "--reason: a reason is required" in result.stderr


@pytest.mark.postgres
async def test_the_custody_commands_end_to_end(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    printed: list[str] = []  # every output that must hold no plaintext and no key

    async def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        result = await run(*args, env=env)
        printed.append(result.stderr)
        if args[0] != "reveal":
            printed.append(result.stdout)
        return result

    # Given a key pair made with `keys generate`, and another one
    key_file, other_key_file = tmp_path / "vault.key", tmp_path / "other.key"
    _, public_text = await asyncio.to_thread(generate_keys, key_file)
    await asyncio.to_thread(generate_keys, other_key_file)
    # And a queue of traffic with one known user's event among it
    bodies = [e.body for e in generate(200, seed=41, junk_rate=0.1, repeat_rate=0.1)]
    mine = orjson.dumps(
        {"user_id": "u-e2e", "device_type": "ios", "ip": IP, "device_id": DEVICE}
    ).decode()
    await sqs_queue.send([*bodies, mine])
    env = service_env(make_settings())
    env["INGESTOR_VAULT_PUBLIC_KEY"] = public_text
    pii = plaintext_pii([*bodies, mine])

    # When `run --drain` loads it with the vault's public key
    result = await cli("run", "--drain", env=env)
    assert result.returncode == 0, result.stderr
    assert await db.fetchval("SELECT count(*) FROM pii_vault") > 100

    # When the user's tokens are revealed with the private key, for a reason
    masker = HmacMasker(TEST_KEY.encode())
    ip_token, device_token = masker.mask_ip(IP), masker.mask_device_id(DEVICE)
    args = ("--private-key-file", str(key_file), "--reason", "TICKET-7", "--actor", "e2e")
    result = await cli("reveal", ip_token, device_token, *args, env=env)
    # Then the values sent are printed, one line per token, and the access is audited
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    expect_same(
        lines, [[ip_token, "ip", IP], [device_token, "device_id", DEVICE]], "reveal's output"
    )
    audit = await db.fetchrow("SELECT claimed_actor, action, reason, tokens FROM pii_audit_trail")
    assert tuple(audit) == ("e2e", "reveal", "TICKET-7", [ip_token, device_token])

    # When another key pair's private key is used
    other = (
        "--private-key-file",
        str(other_key_file),
        "--reason",
        "TICKET-7",
    )
    result = await cli("reveal", ip_token, *other, env=env)
    # Then it exits 1 with one clear line naming both keys, and prints nothing else
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    public = public_key_of(read_private_key(key_file))
    other_public = public_key_of(read_private_key(other_key_file))
    assert vault_key_id(public) in line
    assert vault_key_id(other_public) in line

    # When the key file is readable by others
    key_file.chmod(0o644)
    result = await cli("reveal", ip_token, *args, env=env)
    key_file.chmod(0o600)
    # Then it is refused
    assert result.returncode == 1
    assert "chmod 600" in result.stderr
    assert result.stdout == ""

    # When the address is forgotten, then revealed again
    result = await cli("forget", ip_token, "--reason", "DSR-1", env=env)
    assert result.returncode == 0, result.stderr
    assert "erased 1 tokens: 1 vault rows deleted" in result.stdout
    result = await cli("reveal", ip_token, *args, env=env)
    # Then the reveal exits 1: the token is in the vault no more
    assert result.returncode == 1
    assert f"{ip_token}: not in the vault" in result.stderr
    # And a reveal of the tombstone that replaced it says when it was erased
    stone = await db.fetchval(
        "SELECT masked_ip FROM user_logins WHERE user_id = 'u-e2e' AND masked_ip LIKE 'erased:%'"
    )
    result = await cli("reveal", stone, *args, env=env)
    assert result.returncode == 1
    assert f"{stone}: the tombstone of a value erased on" in result.stderr
    assert await db.fetchval("SELECT count(*) FROM user_logins WHERE masked_ip = $1", ip_token) == 0

    # When the user's remaining values are forgotten by user id
    result = await cli("forget", "--user-id", "u-e2e", "--reason", "DSR-2", env=env)
    assert result.returncode == 0, result.stderr
    assert "erased 1 tokens" in result.stdout
    row = await db.fetchrow(
        "SELECT masked_ip, masked_device_id FROM user_logins WHERE user_id = 'u-e2e'"
    )
    assert all(value.startswith("erased:") for value in row.values())

    # When the HMAC key is rotated, the new key named by a variable
    result = await cli(
        "rekey", "--private-key-file", str(key_file), "--new-hmac-key-env", "NEW_KEY", env=env
    )
    # Then a missing variable is a configuration error naming it
    assert result.returncode == 2
    assert "NEW_KEY" in result.stderr
    vaulted = await db.fetchval("SELECT count(*) FROM pii_vault")
    result = await cli(
        "rekey",
        "--private-key-file",
        str(key_file),
        "--new-hmac-key-env",
        "NEW_KEY",
        "--batch-size",
        "50",
        env={**env, "NEW_KEY": NEW_KEY},
    )
    assert result.returncode == 0, result.stderr
    assert f"rekeyed {vaulted} values" in result.stdout
    ids = await db.fetch("SELECT DISTINCT mask_key_id FROM pii_vault")
    assert [r["mask_key_id"] for r in ids] == [mask_key_id(NEW_KEY.encode())]
    # And a token under the new key reveals the value it is made from (checked with the
    # masking key the service now runs with)
    env["INGESTOR_HMAC_KEY"] = NEW_KEY
    token = await db.fetchval(
        "SELECT masked_device_id FROM user_logins WHERE masked_device_id NOT LIKE 'erased:%'"
        " ORDER BY message_id LIMIT 1"
    )
    result = await cli("reveal", token, *args, env=env)
    assert result.returncode == 0, result.stderr
    value = result.stdout.strip().split("\t")[2]
    assert HmacMasker(NEW_KEY.encode()).mask_device_id(value) == token
    expect_same(value in pii, True, "the revealed value is one that was sent")
    # And the rotation moved the tables' record of their masking key: the old key is
    # refused from now on, with exit 2 (a service started with it would mix tokens)
    recorded = await db.fetchval("SELECT mask_key_id FROM ingestor_masking_key")
    assert recorded == mask_key_id(NEW_KEY.encode())
    result = await cli("reveal", token, *args, env={**env, "INGESTOR_HMAC_KEY": TEST_KEY})
    assert result.returncode == 2
    assert "rotate with `ingestor rekey`" in result.stderr

    # When the rejects are listed
    result = await cli("rejects", "list", env=env)
    # Then each reason is listed with its count, all replayable (their bodies are sealed)
    assert result.returncode == 0, result.stderr
    expected = await db.fetch(
        "SELECT reason_code, count(*) AS n FROM ingestor_rejects GROUP BY 1 ORDER BY 2 DESC, 1"
    )
    assert expected
    listed = {line.split()[0]: line.split()[1:3] for line in result.stdout.splitlines()[1:]}
    assert listed == {r["reason_code"]: [str(r["n"]), str(r["n"])] for r in expected}
    result = await cli("rejects", "list", "--reason", "no_such_reason", env=env)
    assert "no rejects" in result.stdout

    # When the rejects are replayed under today's rules, by a user whose environment has
    # no vault public key
    rejects = await db.fetchval("SELECT count(*) FROM ingestor_rejects")
    bare = {k: v for k, v in env.items() if k != "INGESTOR_VAULT_PUBLIC_KEY"}
    result = await cli("rejects", "replay", "--private-key-file", str(key_file), env=bare)
    # Then they stay rejects, and keep their sealed bodies
    assert result.returncode == 0, result.stderr
    assert f"replayed: loaded 0, still rejected {rejects}" in result.stdout
    assert (
        await db.fetchval("SELECT count(*) FROM ingestor_rejects WHERE sealed_body IS NOT NULL")
        == rejects
    )

    # And no output but reveal's holds a plaintext value or a key, nor does the database
    expect_absent(pii, "\n".join(printed), "the commands' output")
    expect_absent(secrets_of(key_file, other_key_file), "\n".join(printed), "the output")
    found = await find_plaintext(db, pii)
    assert found == []


@pytest.mark.postgres
async def test_rekey_killed_half_way_and_run_again_ends_consistent(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    # Given a loaded database with its values in the vault
    key_file = tmp_path / "vault.key"
    _, public_text = await asyncio.to_thread(generate_keys, key_file)
    await sqs_queue.send([e.body for e in generate(800, seed=43, junk_rate=0.1)])
    env = {**service_env(make_settings()), "INGESTOR_VAULT_PUBLIC_KEY": public_text}
    result = await run("run", "--drain", env=env)
    assert result.returncode == 0, result.stderr
    rows_before = await db.fetchval("SELECT count(*) FROM user_logins")
    rotate = (
        "rekey", "--private-key-file", str(key_file), "--new-hmac-key-env", "NEW_KEY",
        "--batch-size", "1",
    )  # fmt: skip
    env["NEW_KEY"] = NEW_KEY
    # When a rekey is killed (SIGKILL) once it has committed some of its work
    process = subprocess.Popen(  # noqa: ASYNC220 - killed below, not awaited
        [sys.executable, "-m", "ingestor", *rotate], env=env, stdout=subprocess.DEVNULL
    )
    try:
        for _ in range(2000):
            if await db.fetchval("SELECT count(*) FROM ingestor_rekey_map") >= 20:
                break
            await asyncio.sleep(0.005)
        process.kill()
    finally:
        process.wait(timeout=30)
    assert process.returncode == -9, "the rekey ended before it could be killed"
    assert await db.fetchval("SELECT phase FROM ingestor_rekey_state") is not None
    # And is run again
    result = await run(*rotate[:-2], env=env)
    # Then it finishes, and every table is consistent under the new key
    assert result.returncode == 0, result.stderr
    new_id = mask_key_id(NEW_KEY.encode())
    assert [r["mask_key_id"] for r in await db.fetch(
        "SELECT DISTINCT mask_key_id FROM pii_vault"
    )] == [new_id]  # fmt: skip
    assert await db.fetchval("SELECT count(*) FROM user_logins") == rows_before
    assert await db.fetchval(LOGINS.unvaulted_rows) == 0  # every token has its vault row
    assert await db.fetchval("SELECT count(*) FROM ingestor_rekey_map") == 0
    assert await db.fetchval("SELECT count(*) FROM ingestor_rekey_state") == 0
    # And a token of user_logins reveals a value that masks back to it under the new key
    token = await db.fetchval("SELECT masked_ip FROM user_logins ORDER BY message_id LIMIT 1")
    args = ("--private-key-file", str(key_file), "--reason", "check")
    result = await run("reveal", token, *args, env={**env, "INGESTOR_HMAC_KEY": NEW_KEY})
    assert result.returncode == 0, result.stderr
    value = result.stdout.strip().split("\t")[2]
    assert HmacMasker(NEW_KEY.encode()).mask_ip(value) == token
