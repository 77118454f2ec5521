"""A changed masking key is refused, not silently mixed: the tables record the key their
tokens are made with; a service, `check`, or a second copy with another key stops with
exit 2 and one line; `rekey` moves the record; a copy started during a rotation waits."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable

import asyncpg
import orjson
import pytest

from ingestor.demo.synthetic import generate
from ingestor.settings import Settings
from ingestor.source.sqs import SqsQueue
from ingestor.table import canonical_ip
from ingestor.transform.masking import HmacMasker, mask_key_id
from tests.cli import ingestor
from tests.conftest import TEST_KEY, service_env
from tests.faults.conftest import check_invariant

pytestmark = [pytest.mark.faults, pytest.mark.postgres]
OTHER_KEY = "another-key-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


async def test_a_second_run_with_another_key_stops_with_one_line(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, db: asyncpg.Connection
) -> None:
    # Given a table loaded under key A
    env = service_env(make_settings())
    await sqs_queue.send([e.body for e in generate(100, seed=91)])
    assert (await ingestor(env, "run", "--drain")).code == 0
    loaded = await db.fetchval("SELECT count(*) FROM user_logins")
    # When the service starts with key B over the same values
    await sqs_queue.send([e.body for e in generate(100, seed=91)])
    other = {**env, "INGESTOR_HMAC_KEY": OTHER_KEY, "INGESTOR_LOG_LEVEL": "WARNING"}
    ran = await ingestor(other, "run", "--drain")
    code, err = ran.code, ran.err
    # Then it stops with exit 2 and one line naming both keys, having loaded nothing
    expected = (
        f"INGESTOR_HMAC_KEY: is {mask_key_id(OTHER_KEY.encode())} but user_logins was "
        f"loaded with {mask_key_id(TEST_KEY.encode())}: set the right key, or rotate with "
        "`ingestor rekey`"
    )
    assert code == 2, err
    assert err.strip().splitlines() == [f"ingestor: configuration error: {expected}"]
    assert await db.fetchval("SELECT count(*) FROM user_logins") == loaded
    # And `check` says the same, with exit 2
    checked = await ingestor(other, "check")
    assert checked.code == 2
    assert expected in checked.out


async def test_two_copies_with_different_keys_at_once_never_mix_tokens(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, db: asyncpg.Connection
) -> None:
    events = generate(2_000, seed=92, junk_rate=0)
    sent = await sqs_queue.send([e.body for e in events])
    env = service_env(make_settings())
    runs = await asyncio.gather(
        ingestor(env, "run", "--drain"),
        ingestor({**env, "INGESTOR_HMAC_KEY": OTHER_KEY}, "run", "--drain"),
    )
    # One of them stops with exit 2; the other loads everything, under its key alone
    assert sorted(ran.code for ran in runs) == [0, 2], [ran.err[-500:] for ran in runs]
    winner = TEST_KEY if runs[0].code == 0 else OTHER_KEY
    masker = HmacMasker(winner.encode())
    ips = {
        masker.mask_ip(canonical_ip(ip))
        for e in events
        if isinstance(ip := orjson.loads(e.body).get("ip"), str)
    }
    stored = {r["masked_ip"] for r in await db.fetch("SELECT masked_ip FROM user_logins")}
    assert stored - {None} <= ips
    await check_invariant(db, sqs_queue, sent)


async def test_a_copy_started_during_a_rotation_waits_for_it(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, db: asyncpg.Connection
) -> None:
    # Given a rotation to key B under way (as `ingestor rekey` leaves it mid-run)
    new_id = mask_key_id(OTHER_KEY.encode())
    await db.execute(
        "INSERT INTO ingestor_rekey_state (mask_key_id, phase) VALUES ($1, 'rows')", new_id
    )
    sent = await sqs_queue.send([e.body for e in generate(50, seed=93)])
    env = {**service_env(make_settings()), "INGESTOR_HMAC_KEY": OTHER_KEY}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingestor", "run", "--drain", env=env, stderr=asyncio.subprocess.PIPE
    )
    # When a copy with the new key starts, it waits (and says so) without loading
    assert process.stderr is not None
    line = await asyncio.wait_for(wait_for_line(process.stderr, "rotation_wait"), 30)
    assert new_id in line
    assert await db.fetchval("SELECT count(*) FROM user_logins") == 0
    # Then once the rotation finishes, it loads
    await db.execute(  # the rotation's last step, as rekey_finish.sql takes it
        "WITH finished AS (DELETE FROM ingestor_rekey_state RETURNING mask_key_id) "
        "INSERT INTO ingestor_masking_key (mask_key_id) SELECT mask_key_id FROM finished "
        "ON CONFLICT (only_one) DO UPDATE SET mask_key_id = EXCLUDED.mask_key_id"
    )
    _, rest = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, rest.decode()[-2_000:]
    await check_invariant(db, sqs_queue, sent)


async def wait_for_line(stream: asyncio.StreamReader, word: str) -> str:
    started = time.monotonic()
    while line := (await stream.readline()).decode():
        if word in line:
            return line
        assert time.monotonic() - started < 30
    raise AssertionError(f"no {word} line")
