"""Where the SQS calls go: the hot path (the direct JSON-protocol client) calls exactly the
endpoint, and signs for exactly the region, that aiobotocore resolved from the standard AWS
settings: partitions, FIPS, dual-stack, a VPC endpoint. No network: every HTTP request is
caught before it leaves, and recorded."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from ingestor.errors import QueueUnavailable
from ingestor.pipeline.assembly import open_queue
from ingestor.settings import Settings
from ingestor.source.http1 import HttpError, Origin, Pool
from tests.conftest import queue_settings

ACCOUNT = "123456789012"
# (environment, region, the endpoint any AWS SDK resolves for it)
CASES: dict[str, tuple[dict[str, str], str, str]] = {
    "aws partition": ({}, "eu-west-1", "https://sqs.eu-west-1.amazonaws.com"),
    "china partition": ({}, "cn-north-1", "https://sqs.cn-north-1.amazonaws.com.cn"),
    "iso partition": ({}, "us-iso-east-1", "https://sqs.us-iso-east-1.c2s.ic.gov"),
    "fips": ({"AWS_USE_FIPS_ENDPOINT": "true"}, "us-east-1", "https://sqs-fips.us-east-1.amazonaws.com"),
    "dual-stack": ({"AWS_USE_DUALSTACK_ENDPOINT": "true"}, "us-east-1", "https://sqs.us-east-1.api.aws"),
    "vpc endpoint (AWS_ENDPOINT_URL_SQS)": (
        {"AWS_ENDPOINT_URL_SQS": "https://vpce-0abc-def.sqs.us-east-1.vpce.amazonaws.com"},
        "us-east-1",
        "https://vpce-0abc-def.sqs.us-east-1.vpce.amazonaws.com",
    ),
    "any service (AWS_ENDPOINT_URL)": (
        {"AWS_ENDPOINT_URL": "https://aws-gateway.internal.example:8443"},
        "eu-central-1",
        "https://aws-gateway.internal.example:8443",
    ),
}  # fmt: skip


class Sent:
    """Every HTTP request either client is asked to make (aiobotocore's through aiohttp,
    the direct client's through its own pool), failed before it connects."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def record(self, url: Any, body: Any, headers: Any) -> None:
        if ACCOUNT.encode() in bytes(body or b""):  # this test's calls only
            self.requests.append((str(url), dict(headers or {})))


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch, example_aws_keys: None) -> Sent:
    recorder = Sent()

    async def request(session: Any, method: str, url: Any, **kwargs: Any) -> Any:
        recorder.record(url, kwargs.get("data"), kwargs.get("headers"))
        raise aiohttp.ClientConnectionError("caught by the test before it left")

    async def post(pool: Pool, to: Origin, headers: dict[str, str], body: bytes) -> Any:
        recorder.record(to.url, body, headers)
        raise HttpError("caught by the test before it left")

    monkeypatch.setattr(aiohttp.ClientSession, "_request", request)
    monkeypatch.setattr(Pool, "post", post)
    return recorder


def settings_for(region: str, client: str) -> Settings:
    url = f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/logins"
    return queue_settings(url, client, aws_region=region)


def host_of(url: str) -> str:
    return url.split("/", 3)[2]


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
async def test_the_hot_path_calls_the_endpoint_aiobotocore_resolved(
    case: str, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment, region, expected = CASES[case]
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    async with open_queue(settings_for(region, "wire")) as queue:
        # The start-up call goes through aiobotocore, the receive through the wire client
        with pytest.raises(QueueUnavailable):
            await queue.depths()
        with pytest.raises(QueueUnavailable):
            await queue.receive(1, 30)
    botocore_url, wire_url = sent.requests[0][0], sent.requests[-1][0]
    wire_headers = sent.requests[-1][1]
    assert botocore_url.rstrip("/") == expected
    assert wire_url.rstrip("/") == expected
    # And it signs for the region the client resolved, as the SDK does
    authorization = str(wire_headers["Authorization"])
    assert f"/{region}/sqs/aws4_request" in authorization


async def test_the_region_of_the_queue_url_is_used_when_no_region_is_set(
    sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    settings = settings_for("ap-southeast-2", "wire").model_copy(update={"aws_region": None})
    async with open_queue(settings) as queue:
        with pytest.raises(QueueUnavailable):
            await queue.receive(1, 30)
    url, headers = sent.requests[-1]
    assert host_of(url) == "sqs.ap-southeast-2.amazonaws.com"
    assert "/ap-southeast-2/sqs/aws4_request" in str(headers["Authorization"])


@pytest.mark.parametrize("client", ["wire", "botocore"])
async def test_both_clients_identify_as_ingestor_and_as_botocore(client: str, sent: Sent) -> None:
    from ingestor import __version__

    async with open_queue(settings_for("us-east-1", client)) as queue:
        with pytest.raises(QueueUnavailable):
            await queue.receive(1, 30)
    headers = sent.requests[-1][1]
    agent = str(headers["User-Agent"])
    assert f"ingestor/{__version__}" in agent
    assert "botocore/" in agent.lower()  # "Botocore/1.x", or aiobotocore's "botocore/1.x"
