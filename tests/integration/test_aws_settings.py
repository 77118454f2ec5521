"""The standard AWS settings on every call the service makes, as any AWS tool honours them:
credential providers (resolved once, refreshed when SQS says they expired, failing over
as a retry when a refresh fails), no credentials at all, and an egress proxy with a
private CA bundle. Against the SQS emulator (and loopback servers in front of it)."""

from __future__ import annotations

import asyncio
import ssl
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
import trustme

from ingestor.demo.synthetic import generate
from ingestor.errors import QueueUnavailable
from ingestor.pipeline.assembly import open_queue
from ingestor.settings import Settings
from ingestor.source.sqs import SqsQueue
from tests.cli import drain
from tests.conftest import service_env
from tests.faultproxy import ConnectProxy, Fault, FaultProxy
from tests.integration.helpers import queue_is_empty

pytestmark = pytest.mark.integration

CREDENTIAL_PROCESS = textwrap.dedent(
    """
    import datetime, json, pathlib, sys
    counter, mode = pathlib.Path(sys.argv[1]), sys.argv[2]
    calls = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(calls + 1))
    if mode == "fail-after-first" and calls > 0:
        sys.exit("the identity provider is down")
    # Expiring within botocore's mandatory refresh window (10 min) forces a refresh at use.
    minutes = 5 if mode == "fail-after-first" else 60
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes)
    print(json.dumps({"Version": 1, "AccessKeyId": "AKIDPROCESS", "SecretAccessKey": "s",
                      "SessionToken": "t", "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}))
    """
)
AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


class ProcessCredentials:
    """A `credential_process` profile whose process counts its runs in a file."""

    def __init__(self, folder: Path, mode: str) -> None:
        script = folder / "credentials.py"
        script.write_text(CREDENTIAL_PROCESS)
        self.counter = folder / "runs"
        self.config = folder / "config"
        self.config.write_text(
            "[profile ingestor-test]\n"
            f"credential_process = {sys.executable} {script} {self.counter} {mode}\n"
        )

    @property
    def runs(self) -> int:
        return int(self.counter.read_text()) if self.counter.exists() else 0

    def environment(self) -> dict[str, str]:
        return {
            "AWS_CONFIG_FILE": str(self.config),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.config.parent / "none"),
            "AWS_PROFILE": "ingestor-test",
        }


@pytest.fixture
def no_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in AWS_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def process_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_aws_environment: None
) -> Callable[[str], ProcessCredentials]:
    def make(mode: str) -> ProcessCredentials:
        credentials = ProcessCredentials(tmp_path, mode)
        for name, value in credentials.environment().items():
            monkeypatch.setenv(name, value)
        return credentials

    return make


def queue_settings(queue: SqsQueue, endpoint: str, client: str) -> Settings:
    return Settings(
        queue_url=queue.url,
        sqs_endpoint_url=endpoint,
        aws_region="us-east-1",
        sqs_client=client,  # type: ignore[arg-type]
    )


async def test_the_credential_chain_is_walked_once_for_sixteen_first_receives(
    sqs_queue: SqsQueue,
    sqs_endpoint: str,
    process_credentials: Callable[[str], ProcessCredentials],
) -> None:
    credentials = process_credentials("valid")
    async with open_queue(queue_settings(sqs_queue, sqs_endpoint, "wire")) as queue:
        await asyncio.gather(*(queue.receive(0, 30) for _ in range(16)))
    assert credentials.runs == 1


@pytest.mark.parametrize("client", ["botocore", "wire"])
async def test_a_failing_refresh_is_a_transient_queue_error(
    client: str,
    sqs_queue: SqsQueue,
    sqs_endpoint: str,
    process_credentials: Callable[[str], ProcessCredentials],
) -> None:
    # Given credentials in their mandatory refresh window and a provider that is down
    credentials = process_credentials("fail-after-first")
    async with open_queue(queue_settings(sqs_queue, sqs_endpoint, client)) as queue:
        # When a receive needs them, then it fails as a retry would (the receiver retries)
        with pytest.raises(QueueUnavailable, match="credentials"):
            await queue.receive(0, 30)
    assert credentials.runs >= 2


@pytest.mark.parametrize("client", ["botocore", "wire"])
async def test_expired_token_forces_a_refresh(
    client: str, process_credentials: Callable[[str], ProcessCredentials]
) -> None:
    # Given valid-looking credentials that SQS says have expired (revoked early)
    credentials = process_credentials("valid")
    async with FaultProxy("http://127.0.0.1:9").running() as canned:
        canned.inject(
            Fault("status", status=403, body=b'{"__type": "ExpiredToken", "message": "expired"}')
        )
        settings = Settings(
            queue_url=f"{canned.url}/000000000000/q",
            sqs_endpoint_url=canned.url,
            aws_region="us-east-1",
            sqs_client=client,  # type: ignore[arg-type]
        )
        async with open_queue(settings) as queue:
            with pytest.raises(QueueUnavailable):
                await queue.receive(0, 30)
    # Then the provider was asked again, so the retry signs with fresh credentials
    assert credentials.runs == 2


async def test_no_credentials_at_all_stop_start_up_with_one_line(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    env = {k: v for k, v in service_env(make_settings()).items() if k not in AWS_VARIABLES}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        INGESTOR_LOG_LEVEL="WARNING",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingestor", "run", "--drain", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    lines = stderr.decode().strip().splitlines()
    assert process.returncode == 2, lines
    assert len(lines) == 1, lines
    assert "credentials" in lines[0], lines


# -- an egress proxy and a private CA --------------------------------------------------

HIDDEN_HOST = "sqs.ingestor-test.invalid"  # resolves nowhere: reachable only through the proxy


@pytest_asyncio.fixture
async def tls_sqs(sqs_endpoint: str, tmp_path: Path) -> AsyncIterator[tuple[FaultProxy, Path]]:
    """The SQS emulator behind TLS, with a certificate from a private CA; yields the TLS
    front (it records what each client sent) and the CA bundle file."""
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(HIDDEN_HOST, "localhost").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    async with FaultProxy(sqs_endpoint).running(tls=context, host=HIDDEN_HOST) as front:
        yield front, bundle


async def test_an_egress_proxy_and_a_private_ca_bundle_carry_every_call(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    db: asyncpg.Connection,
    tls_sqs: tuple[FaultProxy, Path],
) -> None:
    front, bundle = tls_sqs
    sent = await sqs_queue.send([e.body for e in generate(300, seed=61)])
    async with ConnectProxy().running() as proxy:
        env = service_env(make_settings())
        env.update(
            INGESTOR_SQS_ENDPOINT_URL=front.url,
            HTTPS_PROXY=proxy.url,
            NO_PROXY="127.0.0.1",  # the database is local; SQS is not
            AWS_CA_BUNDLE=str(bundle),
        )
        env.pop("SSL_CERT_FILE", None)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ingestor", "run", "--drain", env=env,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()[-2_000:]
    # Both clients went through the proxy and trusted the private CA: aiobotocore's calls
    # (start-up) and the direct client's (receive, delete)
    assert {target.split(":")[0] for target in proxy.targets} == {HIDDEN_HOST}
    assert front.calls["GetQueueAttributes"] >= 1
    assert front.calls["ReceiveMessage"] >= 1
    assert front.calls["DeleteMessageBatch"] >= len(sent) // 10
    rows = await db.fetchval("SELECT count(*) FROM user_logins")
    rejects = await db.fetchval("SELECT count(*) FROM ingestor_rejects")
    assert rows + rejects == len(sent)
    assert await queue_is_empty(sqs_queue)


async def test_no_proxy_is_honoured(
    make_settings: Callable[..., Settings],
    sqs_queue: SqsQueue,
    sqs_endpoint: str,
) -> None:
    await sqs_queue.send([e.body for e in generate(50, seed=62)])
    async with ConnectProxy().running() as proxy:
        env = service_env(make_settings())
        env.update(HTTPS_PROXY=proxy.url, HTTP_PROXY=proxy.url, NO_PROXY="127.0.0.1,localhost")
        code, logs = await drain(env, within=60)
    assert code == 0, logs[-2_000:]
    assert proxy.targets == []  # not one request, CONNECT or plain, went to the proxy
    assert await queue_is_empty(sqs_queue)


async def test_a_proxy_for_plain_http_is_used_too(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue
) -> None:
    """The other side of the test above: without NO_PROXY, the emulator's http:// calls
    go to HTTP_PROXY (which here does not serve them), so the proxy sees them."""
    async with ConnectProxy().running() as proxy:
        env = service_env(make_settings())
        env.update(HTTP_PROXY=proxy.url, NO_PROXY="", INGESTOR_LOG_LEVEL="ERROR")
        env["INGESTOR_SHUTDOWN_TIMEOUT"] = "1"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ingestor", "check", env=env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert "FAIL queue" in out.decode()
    assert proxy.targets, "no request reached the proxy"
