"""Shared fixtures: the embedded servers (once per session, always stopped), a fresh
database per test cloned from a migrated template, and a fresh queue per test.

With INGESTOR_TEST_DATABASE_URL set, the PostgreSQL tests use that server instead of the
embedded one (CI runs them both ways)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
from pydantic import SecretStr

from ingestor.demo.embedded import EmbeddedPostgres, embedded_postgres, embedded_sqs
from ingestor.settings import Settings
from ingestor.sink.schema import migrate
from ingestor.source.sqs import SqsQueue, create_queue, sqs_client

# The emulator accepts any credentials; never look for real ones.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

TEST_KEY = "test-key-0123456789abcdef0123456789abcdef"
REGION = "us-east-1"


# AWS settings a test's environment must not inherit: each would reroute or re-credential
# the calls under test.
AWS_ROUTING = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
)


@pytest.fixture
def example_aws_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS's documented example keys, and none of the settings that reroute calls."""
    for variable in AWS_ROUTING:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")


def queue_settings(queue_url: str, client: str, **values: Any) -> Settings:
    """Settings for the SQS side alone (a database that is never dialled), with the
    SQS client `client` ("wire" or "botocore")."""
    return Settings(
        queue_url=queue_url,
        database_url=SecretStr("postgresql://u@localhost/db"),
        hmac_key=SecretStr(TEST_KEY),
        sqs_client=client,
        **values,
    )


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Admin URL of the PostgreSQL server the tests use."""
    outside = os.environ.get("INGESTOR_TEST_DATABASE_URL")
    if outside:
        yield outside
        return
    with embedded_postgres() as url:
        yield url


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, which the test may stop and start."""
    server = EmbeddedPostgres()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def sqs_endpoint() -> Iterator[str]:
    with embedded_sqs() as endpoint:
        yield endpoint


async def _create_database(admin_url: str, template: str | None = None) -> str:
    name = f"ingestor_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await admin.close()
    return name


async def _drop_database(admin_url: str, name: str) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest_asyncio.fixture(scope="session")
async def template_database(postgres_url: str) -> AsyncIterator[str]:
    """A migrated database that every `database` is cloned from (cheaper than migrating)."""
    name = await _create_database(postgres_url)
    connection = await asyncpg.connect(with_database(postgres_url, name))
    try:
        await migrate(connection)
    finally:
        await connection.close()
    yield name
    await _drop_database(postgres_url, name)


@pytest_asyncio.fixture
async def database(postgres_url: str, template_database: str) -> AsyncIterator[str]:
    """URL of a fresh, migrated database, dropped after the test."""
    name = await _create_database(postgres_url, template_database)
    yield with_database(postgres_url, name)
    await _drop_database(postgres_url, name)


@pytest_asyncio.fixture
async def empty_database(postgres_url: str) -> AsyncIterator[str]:
    """URL of a fresh database with no tables, dropped after the test."""
    name = await _create_database(postgres_url)
    yield with_database(postgres_url, name)
    await _drop_database(postgres_url, name)


@pytest_asyncio.fixture
async def db(database: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database)
    yield connection
    await connection.close()


@contextlib.asynccontextmanager
async def temporary_queue(endpoint: str, prefix: str, visibility: int) -> AsyncIterator[SqsQueue]:
    """A new uniquely named queue, deleted on the way out."""
    async with sqs_client(REGION, endpoint) as client:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        url = await create_queue(client, name, {"VisibilityTimeout": str(visibility)})
        yield SqsQueue(client, url)
        await client.delete_queue(QueueUrl=url)


@pytest_asyncio.fixture
async def sqs_queue(sqs_endpoint: str) -> AsyncIterator[SqsQueue]:
    """A fresh queue (30 s visibility), deleted after the test."""
    async with temporary_queue(sqs_endpoint, "test", visibility=30) as queue:
        yield queue


@pytest.fixture
def make_settings(database: str, sqs_queue: SqsQueue, sqs_endpoint: str) -> Callable[..., Settings]:
    """Settings for the test's database and queue; keyword arguments override."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "queue_url": sqs_queue.url,
            "database_url": SecretStr(database),
            "hmac_key": SecretStr(TEST_KEY),
            "sqs_endpoint_url": sqs_endpoint,
            "aws_region": REGION,
            "drain": True,
            "drain_wait_seconds": 1,
            "flush_interval": 0.2,
            "metrics_port": 0,  # several services may run at once: none takes a port
            **overrides,
        }
        return Settings(**values)

    return build


def service_env(settings: Settings) -> dict[str, str]:
    """Environment for running the CLI as a subprocess with these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGESTOR_")}
    env.update(
        INGESTOR_QUEUE_URL=str(settings.queue_url),
        INGESTOR_DATABASE_URL=settings.dsn,
        INGESTOR_HMAC_KEY=settings.key_bytes.decode(),
        INGESTOR_SQS_ENDPOINT_URL=str(settings.sqs_endpoint_url),
        AWS_REGION=REGION,
        INGESTOR_DRAIN_WAIT_SECONDS=str(settings.drain_wait_seconds),
        INGESTOR_FLUSH_INTERVAL=str(settings.flush_interval),
        INGESTOR_METRICS_PORT=str(settings.metrics_port),
    )
    return env
