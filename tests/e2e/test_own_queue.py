"""From the demo to your own queue and database, as a newcomer does it: settings in a
`.env` (the AWS ones included), `check` naming everything wrong at once and in plain
words, and a `.env.example` that lists every setting with its default."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ingestor.settings import Settings
from ingestor.source.sqs import SqsQueue
from tests.conftest import TEST_KEY, service_env, with_database

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


async def ingestor_in(folder: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    """The CLI run from `folder` (where its .env is read); exit code and all it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingestor", *args, env=env, cwd=folder,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode()


def bare_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a fresh shell: no INGESTOR_* and no AWS credentials."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("INGESTOR_") and k not in AWS_VARIABLES
    }
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONPATH=str(ROOT),
    )
    return env


async def test_check_names_every_bad_or_missing_setting_at_once(tmp_path: Path) -> None:
    env = bare_env(tmp_path)
    env.update(INGESTOR_HMAC_KEY="short", INGESTOR_RECEIVERS="-1")
    code, out = await ingestor_in(tmp_path, env, "check")
    lines = out.strip().splitlines()
    assert code == 2, out
    assert all(line.startswith("ingestor: configuration error: ") for line in lines), out
    named = {line.split(": ")[2] for line in lines}
    assert named == {
        "INGESTOR_HMAC_KEY",
        "INGESTOR_RECEIVERS",
        "INGESTOR_QUEUE_URL",
        "INGESTOR_DATABASE_URL",
    }


async def test_settings_and_aws_credentials_in_dot_env_are_used(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # Given a fresh shell, and a .env with every setting, the AWS credentials included
    settings = make_settings()
    dot_env = {
        k: v for k, v in service_env(settings).items() if k.startswith(("INGESTOR_", "AWS_REGION"))
    }
    dot_env.update(AWS_ACCESS_KEY_ID="AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY="from-dot-env")
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in dot_env.items()))
    # When `check` runs there
    code, out = await ingestor_in(tmp_path, bare_env(tmp_path), "check")
    # Then the queue answers: the credentials came from .env
    assert code == 0, out
    assert "ok   queue answers" in out


@pytest.mark.postgres
async def test_check_says_what_it_tried_in_plain_words(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue, postgres_url: str, tmp_path: Path
) -> None:
    base = service_env(make_settings())
    # A database that does not exist, on the server the tests use
    code, out = await ingestor_in(
        tmp_path,
        {**base, "INGESTOR_DATABASE_URL": with_database(postgres_url, "no_such_db")},
        "check",
    )
    assert code == 1
    assert re.search(r'FAIL database: database "no_such_db" does not exist on \S', out), out
    # An SQS endpoint where nothing answers
    code, out = await ingestor_in(
        tmp_path, {**base, "INGESTOR_SQS_ENDPOINT_URL": "http://127.0.0.1:9"}, "check"
    )
    assert code == 1
    assert "FAIL queue: no SQS answers at http://127.0.0.1:9" in out, out
    # A queue that does not exist
    missing = sqs_queue.url.rsplit("/", 1)[0] + "/no-such-queue"
    code, out = await ingestor_in(tmp_path, {**base, "INGESTOR_QUEUE_URL": missing}, "check")
    assert code == 1
    assert "FAIL queue: queue no-such-queue does not exist in us-east-1" in out, out
    # A queue URL that is not AWS's, and no endpoint: a hint
    local = {**base, "INGESTOR_QUEUE_URL": "http://localhost:4566/000000000000/login-queue"}
    del local["INGESTOR_SQS_ENDPOINT_URL"]
    code, out = await ingestor_in(tmp_path, local, "check")
    assert code == 1
    assert "set INGESTOR_SQS_ENDPOINT_URL" in out, out
    # No error line is an exception class alone
    assert not re.search(r"FAIL \w+: [A-Za-z]+Error$", out, re.MULTILINE)


async def test_check_on_an_empty_database_says_once_to_migrate(
    make_settings: Callable[..., Settings], empty_database: str, tmp_path: Path
) -> None:
    env = {**service_env(make_settings()), "INGESTOR_DATABASE_URL": empty_database}
    code, out = await ingestor_in(tmp_path, env, "check")
    assert code == 1
    database_lines = [line for line in out.splitlines() if "database" in line]
    assert database_lines == [
        "FAIL database: the database has no ingestor tables yet: run `ingestor migrate`"
    ]


def test_dot_env_example_lists_every_setting_with_its_default() -> None:
    example = (ROOT / ".env.example").read_text()
    listed = dict(re.findall(r"^# (INGESTOR_[A-Z_]+)=(.*)$", example, re.MULTILINE))
    for field, info in Settings.model_fields.items():
        name = f"INGESTOR_{field.upper()}"
        assert name in listed, f"{name} is not in .env.example"
        default = "" if info.default is None else str(info.default).lower()
        if field not in ("queue_url", "database_url"):  # shown with an example value
            assert listed[name].lower() == default, name
    for variable in ("AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL_SQS", "HTTPS_PROXY"):
        assert f"# {variable}=" in example
    assert TEST_KEY not in example
