"""The direct client's SigV4 signer (`ingestor.source.sigv4`) against botocore's
`SigV4Auth`, byte for byte: every header the direct client sends, for every request it
sends, with and without a session token, at AWS endpoints and custom ones (a port, a
path, IPv6), with bodies that are empty or not ASCII, across a change of date and of
credentials (a fixed clock on both sides). Then the signatures on the wire, checked as
AWS's side checks them, at an endpoint with a path."""

from __future__ import annotations

import datetime
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from unittest import mock

import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from ingestor.errors import QueueUnavailable
from ingestor.pipeline.assembly import open_queue
from ingestor.source.aws import Resolved, Route, ThreadedCredentials
from ingestor.source.http1 import Answer, Headers, Origin
from ingestor.source.sigv4 import Signer
from ingestor.source.sqs_api import ATTRIBUTES, DEPTH
from ingestor.source.sqs_wire import _STATIC_HEADERS, WireSqs
from tests.conftest import queue_settings
from tests.unit.test_sqs_parity import RECEIPT, SECRET, signing_server

UTC = datetime.UTC
NOON = datetime.datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
ENDPOINTS = {
    "aws": ("https://sqs.eu-west-1.amazonaws.com/", "eu-west-1"),
    "aws, port 443 written": ("https://sqs.eu-west-1.amazonaws.com:443/", "eu-west-1"),
    "vpc endpoint, upper case": ("https://VPCE-0A.sqs.us-east-1.vpce.amazonaws.com/", "us-east-1"),
    "emulator with a port": ("http://127.0.0.1:4566/", "us-east-1"),
    "http, port 80 written": ("http://sqs.local:80/", "us-east-1"),
    "gateway with a path": ("https://gateway.example:8443/aws/sqs/", "eu-central-1"),
    "path with dot segments": ("http://localhost:4566/a/./b/../sqs", "us-east-1"),
    "path to be quoted": ("http://localhost:4566/sqs (eu)/~x/", "us-east-1"),
    "query in the endpoint": ("https://gateway.example/?b=2&a=1", "us-east-1"),
    "ipv6": ("http://[::1]:4566/", "us-east-1"),
}  # fmt: skip
TOKENS = {"no token": None, "empty token": "", "session token": "FwoGZXIvYXdzEJr//+odd=chars"}
QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/logins"
HANDLES = [RECEIPT, "AQEBé日本+/==", "h3"]


def epoch(moment: datetime.datetime) -> float:
    return moment.timestamp()


def botocore_headers(
    url: str,
    region: str,
    target: str,
    body: bytes,
    credentials: ReadOnlyCredentials,
    moment: datetime.datetime,
) -> dict[str, str]:
    """The headers botocore's SigV4Auth gives the request, at `moment`, as the direct
    client built them before the signer (an AWSRequest per call)."""
    request = AWSRequest(
        method="POST", url=url, data=body, headers={**_STATIC_HEADERS, "X-Amz-Target": target}
    )
    naive = moment.astimezone(UTC).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=naive):
        SigV4Auth(credentials, "sqs", region).add_auth(request)
    return dict(request.headers.items())


def frozen(token: str | None, secret: str = SECRET, key: str = "AKIDEXAMPLE") -> Any:
    return ReadOnlyCredentials(key, secret, token, None)


# -- every call of the direct client, as it sends it ---------------------------------


class Recorder:
    """Stands in for the connection pool: records each POST, answers 200 with `answer`."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []  # (URL as text, body, headers)

    async def post(self, to: Origin, headers: dict[str, str], body: bytes) -> Answer:
        self.sent.append((to.url, body, headers))
        return Answer(200, Headers({}), self.answer)


def wire_client(
    url: str, region: str, credentials: Any, clock: Callable[[], float], answer: bytes
) -> tuple[WireSqs, Recorder]:
    route = Route(url=url, region=region, user_agent="Botocore/1.0 ingestor/test")
    http = Recorder(answer)
    aws = Resolved(credentials=ThreadedCredentials(credentials), route=route)
    return WireSqs(aws, QUEUE, http, clock), http  # type: ignore[arg-type]


CALLS: dict[str, tuple[str, bytes, Callable[[WireSqs], Any]]] = {
    "ReceiveMessage": ("ReceiveMessage", b"{}", lambda q: q.receive(20, None)),
    "ReceiveMessage with a visibility": ("ReceiveMessage", b"{}", lambda q: q.receive(0, 30)),
    "DeleteMessageBatch": (
        "DeleteMessageBatch",
        b'{"Successful": [{"Id": "0"}, {"Id": "1"}, {"Id": "2"}]}',
        lambda q: q.delete_batch(HANDLES),
    ),
    "ChangeMessageVisibilityBatch": (
        "ChangeMessageVisibilityBatch",
        b'{"Successful": [{"Id": "0"}, {"Id": "1"}, {"Id": "2"}]}',
        lambda q: q.change_visibility_batch(HANDLES, 0),
    ),
}


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("token", list(TOKENS))
@pytest.mark.parametrize("call", list(CALLS))
async def test_every_call_is_signed_as_botocore_signs_it(
    call: str, token: str, endpoint: str
) -> None:
    url, region = ENDPOINTS[endpoint]
    operation, answer, make_call = CALLS[call]
    resolved = Credentials("AKIDEXAMPLE", SECRET, TOKENS[token])
    queue, http = wire_client(url, region, resolved, lambda: epoch(NOON), answer)
    # When the direct client makes the call
    await make_call(queue)
    # Then it sent exactly the headers botocore's SigV4Auth gives that body, plus the agent
    [(sent_to, body, headers)] = http.sent
    expected = botocore_headers(
        url, region, f"AmazonSQS.{operation}", body, frozen(TOKENS[token]), NOON
    )
    assert sent_to == str(URL(url))  # (as aiohttp sent it: yarl's quoting and dot segments)
    assert headers == {**expected, "User-Agent": "Botocore/1.0 ingestor/test"}
    assert list(headers) == [*expected, "User-Agent"]  # in the same order


async def test_the_calls_bodies_are_what_sqs_expects() -> None:
    """The bodies signed above are the calls' own (a check of the recorder)."""
    answer = b'{"Successful": [{"Id": "0"}, {"Id": "1"}, {"Id": "2"}]}'
    resolved = Credentials("AKIDEXAMPLE", SECRET)
    queue, http = wire_client(*ENDPOINTS["aws"], resolved, lambda: epoch(NOON), answer)
    await queue.receive(20, None)
    await queue.delete_batch(HANDLES)
    receive, delete = [orjson.loads(body) for _, body, _ in http.sent]
    assert receive == {
        "QueueUrl": QUEUE,
        "MaxNumberOfMessages": 10,
        "WaitTimeSeconds": 20,
        "MessageSystemAttributeNames": ATTRIBUTES,
    }
    assert [entry["ReceiptHandle"] for entry in delete["Entries"]] == HANDLES


@pytest.mark.parametrize("call", list(CALLS))
async def test_a_calls_body_is_no_larger_in_memory_than_its_bytes(call: str) -> None:
    # A body lasts its whole call, and hundreds of calls are in flight at 256 receivers:
    # orjson's own result would keep the 4 KiB it wrote into for each.
    _, answer, make_call = CALLS[call]
    resolved = Credentials("AKIDEXAMPLE", SECRET)
    queue, http = wire_client(*ENDPOINTS["aws"], resolved, lambda: epoch(NOON), answer)
    tracemalloc.start()
    try:
        await make_call(queue)
        [(_, body, _)] = http.sent
        made_at = tracemalloc.get_object_traceback(body)
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    [allocated] = [s.size for s in snapshot.statistics("traceback") if s.traceback == made_at]
    assert allocated < len(body) + 64  # the bytes object's header, no spare room


# -- other shapes and bodies, signed directly ----------------------------------------

ODD = "é日本🙂 \u2028"
BODIES = {
    "empty": b"",
    "GetQueueAttributes": orjson.dumps({"QueueUrl": QUEUE, "AttributeNames": DEPTH}),
    "not ASCII": orjson.dumps({"QueueUrl": QUEUE, "Entries": [{"Id": "0", "ReceiptHandle": ODD}]}),
    "bytes not UTF-8": b"\xff\xfe\x00{",
    "large": orjson.dumps({"QueueUrl": QUEUE, "Entries": [{"ReceiptHandle": RECEIPT}] * 10}),
}  # fmt: skip


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("token", list(TOKENS))
@pytest.mark.parametrize("body", list(BODIES))
def test_bodies_and_targets_are_signed_as_botocore_signs_them(
    body: str, token: str, endpoint: str
) -> None:
    url, region = ENDPOINTS[endpoint]
    signer = Signer(url, region, "sqs", _STATIC_HEADERS, lambda: epoch(NOON))
    for target in ("AmazonSQS.GetQueueAttributes", "AmazonSQS.ReceiveMessage"):
        expected = botocore_headers(url, region, target, BODIES[body], frozen(TOKENS[token]), NOON)
        assert signer.headers(target, BODIES[body], frozen(TOKENS[token])) == expected


@settings(max_examples=200, deadline=None)
@given(
    body=st.binary(max_size=300),
    target=st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=40),
    token=st.none() | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=60),
    secret=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=40),
    seconds=st.integers(min_value=0, max_value=4_000_000_000),
)
def test_any_body_target_token_and_time_sign_as_botocore(
    body: bytes, target: str, token: str | None, secret: str, seconds: int
) -> None:
    # (targets with spaces and braces: SigV4 trims the value, the template must not read it)
    url, region = ENDPOINTS["gateway with a path"]
    moment = datetime.datetime.fromtimestamp(seconds, UTC)
    signer = Signer(url, region, "sqs", _STATIC_HEADERS, lambda: float(seconds))
    credentials = frozen(token, secret)
    expected = botocore_headers(url, region, target, body, credentials, moment)
    assert signer.headers(target, body, credentials) == expected


# -- the cached key: per date and per credentials ------------------------------------


class Clock:
    def __init__(self, moment: datetime.datetime) -> None:
        self.now = epoch(moment)

    def __call__(self) -> float:
        return self.now


def sign_at(
    signer: Signer, clock: Clock, moments: Sequence[datetime.datetime], credentials: Any
) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    url, region = ENDPOINTS["aws"]
    for moment in moments:
        clock.now = epoch(moment) + 0.999  # a fraction of a second: SigV4 drops it
        body = b'{"QueueUrl": "q"}'
        yield (
            signer.headers("AmazonSQS.ReceiveMessage", body, credentials),
            botocore_headers(url, region, "AmazonSQS.ReceiveMessage", body, credentials, moment),
        )


def test_a_new_date_derives_a_new_key() -> None:
    # Given a signer that has signed in the last second of a year
    last = datetime.datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    second, day = datetime.timedelta(seconds=1), datetime.timedelta(days=1)
    moments = [last, last + second, last + day + second]
    clock = Clock(last)
    signer = Signer(*ENDPOINTS["aws"], "sqs", _STATIC_HEADERS, clock)
    # When it signs across midnight (UTC) and a day later, with the same credentials
    signed = list(sign_at(signer, clock, moments, frozen("token")))
    # Then each day's requests carry that day's scope and botocore's signature
    for ours, botocore in signed:
        assert ours == botocore
    scopes = [ours["Authorization"].split("/")[1] for ours, _ in signed]
    assert scopes == ["20261231", "20270101", "20270102"]


@pytest.mark.parametrize(
    "changed",
    [
        frozen("token", secret="another secret"),  # the same key id, a new secret
        frozen("token", key="AKIDOTHER"),
        frozen("another token"),
        frozen(None),
    ],
    ids=["secret", "access key", "token", "token dropped"],
)
def test_new_credentials_are_used_at_once(changed: Any) -> None:
    clock = Clock(NOON)
    signer = Signer(*ENDPOINTS["aws"], "sqs", _STATIC_HEADERS, clock)
    before = frozen("token")
    for credentials in (before, changed, before):
        [(ours, botocore)] = sign_at(signer, clock, [NOON], credentials)
        assert ours == botocore


# -- credentials that refresh, and one that cannot ------------------------------------


async def test_refreshed_credentials_sign_the_next_call() -> None:
    # Given credentials within botocore's mandatory refresh window (they expire in 5 min)
    issued: list[str] = []

    def refresh() -> dict[str, str]:
        issued.append(f"AKIDNEW{len(issued)}")
        expires = datetime.datetime.now(UTC) + datetime.timedelta(hours=1)
        return {
            "access_key": issued[-1],
            "secret_key": f"secret {len(issued)}",
            "token": f"token {len(issued)}",
            "expiry_time": expires.isoformat(),
        }

    soon = datetime.datetime.now(UTC) + datetime.timedelta(minutes=5)
    resolved = RefreshableCredentials("AKIDOLD", "old secret", "old token", soon, refresh, "t")
    queue, http = wire_client(*ENDPOINTS["aws"], resolved, lambda: epoch(NOON), b"{}")
    # When the direct client receives, then it signed with the refreshed credentials
    await queue.receive(20, None)
    [(url, body, headers)] = http.sent
    fresh = frozen("token 1", secret="secret 1", key="AKIDNEW0")
    expected = botocore_headers(url, "eu-west-1", "AmazonSQS.ReceiveMessage", body, fresh, NOON)
    assert issued == ["AKIDNEW0"]
    assert headers["Authorization"] == expected["Authorization"]
    assert headers["X-Amz-Security-Token"] == "token 1"


async def test_credentials_that_cannot_be_refreshed_are_a_retried_queue_error() -> None:
    # Given credentials that have expired and a provider that is down
    def refresh() -> dict[str, str]:
        raise OSError("the identity provider is down")

    past = datetime.datetime.now(UTC) - datetime.timedelta(minutes=1)
    resolved = RefreshableCredentials("AKIDOLD", "old", "old", past, refresh, "test")
    queue, http = wire_client(*ENDPOINTS["aws"], resolved, lambda: epoch(NOON), b"{}")
    # When a receive needs them, then it fails as a retry and nothing was sent
    with pytest.raises(QueueUnavailable, match="credentials could not be refreshed"):
        await queue.receive(20, None)
    assert http.sent == []


# -- on the wire: a server-side check at an endpoint with a path ----------------------


@pytest.mark.usefixtures("example_aws_keys")
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//////////wEaDO+token=="])
async def test_requests_to_an_endpoint_with_a_path_pass_a_server_side_check(
    token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if token is not None:
        monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    async with signing_server() as (server, endpoint):
        gateway = f"{endpoint}/gateway/sqs"
        settings = queue_settings(
            f"{gateway}/000000000000/logins",
            "wire",
            sqs_endpoint_url=gateway,
            aws_region="eu-west-1",
        )
        async with open_queue(settings) as queue:
            received = await queue.receive(0, 30)
            await queue.delete_batch([e.receipt_handle for e in received])
            await queue.change_visibility_batch([RECEIPT], 0)
    assert server.targets == [
        "AmazonSQS.ReceiveMessage",
        "AmazonSQS.DeleteMessageBatch",
        "AmazonSQS.ChangeMessageVisibilityBatch",
    ]
    assert server.problems == [None, None, None]
    assert set(server.tokens) == {token or ""}
