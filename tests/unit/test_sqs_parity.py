"""Both SQS clients, aiobotocore's and the direct JSON-protocol one, against the same canned
AWS answers: they must classify every answer identically (retry, stop, or the queue is
gone), as botocore's standard retry mode does. And the direct client's requests must pass
a server-side SigV4 check. Loopback servers only."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

from ingestor.errors import QueueError, QueueUnavailable
from ingestor.pipeline.assembly import open_queue
from ingestor.settings import Settings
from tests.conftest import queue_settings
from tests.faultproxy import HTML_429, HTML_503, Fault, FaultProxy
from tests.sigv4 import signature_problem

JSON = "application/x-amz-json-1.0"
NOT_FOUND = b'{"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "The specified queue does not exist."}'  # noqa: E501
QUERY_NOT_FOUND = {"x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender"}


def json_error(code: str, message: str = "") -> bytes:
    return b'{"__type": "%s", "message": "%s"}' % (code.encode(), message.encode())


# name -> (answer, what both clients must make of it: "ok", "retry", "stop" or "gone")
ANSWERS: dict[str, tuple[Fault, str]] = {
    "queue gone, awsQueryCompatible header": (
        Fault("status", status=400, body=NOT_FOUND, headers=QUERY_NOT_FOUND), "gone"),
    "queue gone, JSON __type only": (Fault("status", status=400, body=NOT_FOUND), "gone"),
    "queue gone, query-style code as __type": (
        Fault("status", status=400, body=json_error("AWS.SimpleQueueService.NonExistentQueue")),
        "gone"),
    "access denied, awsQueryCompatible header": (
        Fault("status", status=403, body=json_error("coral#AccessDeniedException"),
              headers={"x-amzn-query-error": "AccessDenied;Sender"}), "stop"),
    "unknown key id": (
        Fault("status", status=403, body=json_error("InvalidClientTokenId")), "stop"),
    "wrong secret": (
        Fault("status", status=403, body=json_error(
            "SignatureDoesNotMatch", "The request signature we calculated does not match")),
        "stop"),
    "JSON ThrottlingException": (
        Fault("status", status=400, body=json_error("coral.availability#ThrottlingException")),
        "retry"),
    "SQS RequestThrottled, query header": (
        Fault("status", status=400, body=json_error("com.amazonaws.sqs#RequestThrottled"),
              headers={"x-amzn-query-error": "RequestThrottled;Sender"}), "retry"),
    "SQS KmsThrottled": (Fault("status", status=400, body=json_error("KmsThrottled")), "retry"),
    "SQS OverLimit (in-flight limit)": (
        Fault("status", status=403, body=json_error("OverLimit"),
              headers={"x-amzn-query-error": "AWS.SimpleQueueService.OverLimit;Sender"}),
        "retry"),
    "RequestTimeout": (Fault("status", status=400, body=json_error("RequestTimeout")), "retry"),
    "InternalError 500": (Fault("status", status=500, body=json_error("InternalError")), "retry"),
    "ServiceUnavailable 503": (
        Fault("status", status=503, body=json_error("ServiceUnavailable")), "retry"),
    # static keys (these tests'): nothing can refresh them, so stop (a role's are retried)
    "ExpiredToken, static keys": (
        Fault("status", status=400, body=json_error("ExpiredToken")), "stop"),
    "clock skew": (
        Fault("status", status=400, body=json_error(
            "InvalidSignatureException",
            "Signature expired: 20261127T101500Z is now earlier than 20261127T103000Z")),
        "retry"),
    "HTML 429": (
        Fault("status", status=429, body=HTML_429, content_type="text/html"), "retry"),
    "HTML 500": (Fault("status", status=500, body=b"<html>oops</html>", content_type="text/html"),
                 "retry"),
    "HTML 502": (Fault("status", status=502, body=b"<html>bad gateway</html>",
                       content_type="text/html"), "retry"),
    "HTML 503": (Fault("status", status=503, body=HTML_503, content_type="text/html"), "retry"),
    "HTML 504": (Fault("status", status=504, body=b"<html>timeout</html>",
                       content_type="text/html"), "retry"),
    "HTML 403 from a proxy": (
        Fault("status", status=403, body=b"<html>forbidden</html>", content_type="text/html"),
        "stop"),
    "empty 500": (Fault("status", status=500, body=b""), "retry"),
    "empty 200": (Fault("status", status=200, body=b""), "ok"),
    "200 cut short": (
        Fault("status", status=200, cut=True,
              body=b'{"Messages": [{"MessageId": "m1", "ReceiptHandle": "h1", "Body": "{}"}]}'),
        "retry"),
    "500 cut short": (Fault("status", status=500, body=json_error("InternalError"), cut=True),
                      "retry"),
    "200 not JSON": (Fault("status", status=200, body=b"<html>captive portal</html>",
                           content_type="text/html"), "retry"),
    "200 JSON but not an object": (Fault("status", status=200, body=b"[1, 2]"), "retry"),
    "200 message without a receipt handle": (
        Fault("status", status=200, body=b'{"Messages": [{"MessageId": "m1", "Body": "{}"}]}'),
        "retry"),
}  # fmt: skip


def outcome(error: BaseException | None) -> str:
    if error is None:
        return "ok"
    if isinstance(error, QueueUnavailable):
        return "retry"
    if isinstance(error, QueueError):
        return "gone" if "no longer exists" in str(error) else "stop"
    return f"not mapped: {type(error).__name__}"


pytestmark = pytest.mark.usefixtures("example_aws_keys")


def settings_for(endpoint: str, client: str) -> Settings:
    url = f"{endpoint}/000000000000/logins"
    return queue_settings(url, client, sqs_endpoint_url=endpoint, aws_region="us-east-1")


@pytest_asyncio.fixture
async def canned() -> AsyncIterator[FaultProxy]:
    async with FaultProxy("http://127.0.0.1:9").running() as server:
        yield server


async def receive_outcome(endpoint: str, client: str) -> tuple[str, str]:
    error: BaseException | None = None
    async with open_queue(settings_for(endpoint, client)) as queue:
        try:
            await queue.receive(0, 30)
        except Exception as caught:  # what the receive worker would see
            error = caught
    return outcome(error), "" if error is None else str(error)


@pytest.mark.parametrize("answer", list(ANSWERS), ids=list(ANSWERS))
async def test_both_clients_classify_an_answer_identically(answer: str, canned: FaultProxy) -> None:
    fault, expected = ANSWERS[answer]
    canned.inject(fault)
    botocore = await receive_outcome(canned.url, "botocore")
    wire = await receive_outcome(canned.url, "wire")
    assert (botocore[0], wire[0]) == (expected, expected), (botocore, wire)


# Answers of the wrong shape, to every call both clients make: never a traceback, and the
# same outcome from both. name -> (call, answer, outcome)
SHAPES: dict[str, tuple[str, Fault]] = {
    "500 with a null body": ("receive", Fault("status", status=500, body=b"null")),
    "500 with an array body": ("receive", Fault("status", status=500, body=b"[1]")),
    "400 with a JSON string body": ("receive", Fault("status", status=400, body=b'"oops"')),
    "Messages is a string": ("receive", Fault("status", status=200, body=b'{"Messages": "x"}')),
    "Messages holds numbers": ("receive", Fault("status", status=200, body=b'{"Messages": [1]}')),
    "Attributes is a list": ("receive", Fault("status", status=200, body=(
        b'{"Messages": [{"MessageId": "m", "ReceiptHandle": "h", "Attributes": [1]}]}'))),
    "delete: Failed is a number": ("delete", Fault("status", status=200, body=b'{"Failed": 5}')),
    "delete: no outcome for the entries": ("delete", Fault("status", status=200, body=b"{}")),
    "delete: empty 200": ("delete", Fault("status", status=200, body=b"")),
    "attributes: not an object": ("depths", Fault("status", status=200, body=b"[1]")),
    "attributes: not a map": ("depths", Fault("status", status=200, body=b'{"Attributes": 1}')),
    "attributes: 400 null": ("depths", Fault("status", status=400, body=b"null")),
}  # fmt: skip


async def call_outcome(endpoint: str, client: str, call: str) -> str:
    error: BaseException | None = None
    async with open_queue(settings_for(endpoint, client)) as queue:
        try:
            if call == "receive":
                await queue.receive(0, 30)
            elif call == "delete":
                await queue.delete_batch(["h1", "h2"])
            else:
                await queue.depths()
        except Exception as caught:
            error = caught
    return outcome(error)


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
async def test_answers_of_the_wrong_shape_are_retried_by_both_clients(
    shape: str, canned: FaultProxy
) -> None:
    call, fault = SHAPES[shape]
    canned.inject(fault)
    botocore = await call_outcome(canned.url, "botocore", call)
    wire = await call_outcome(canned.url, "wire", call)
    assert (botocore, wire) == ("retry", "retry")


@pytest.mark.parametrize("client", ["botocore", "wire"])
async def test_error_lines_name_the_code_and_what_was_called(
    client: str, canned: FaultProxy
) -> None:
    canned.inject(Fault("status", status=403, body=json_error("AccessDeniedException")))
    kind, message = await receive_outcome(canned.url, client)
    assert kind == "stop"
    assert "AccessDenied" in message
    assert "/000000000000/logins" in message


@pytest.mark.parametrize("client", ["botocore", "wire"])
async def test_a_gone_queue_is_named(client: str, canned: FaultProxy) -> None:
    canned.inject(Fault("status", status=400, body=NOT_FOUND, headers=QUERY_NOT_FOUND))
    _, message = await receive_outcome(canned.url, client)
    assert message.startswith(f"queue {canned.url}/000000000000/logins no longer exists")


# -- SigV4, checked on the server's side ------------------------------------------------

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
# A receipt handle as long and as odd as SQS's: base64 with '+', '/' and '='.
RECEIPT = "AQEB" + "x+y/z=" * 60 + "Zm9vYmFy+/=="


class SigningServer:
    """Answers ReceiveMessage with one message and DeleteMessageBatch with success, after
    checking each request's signature; records what it found."""

    def __init__(self) -> None:
        self.problems: list[str | None] = []
        self.targets: list[str] = []
        self.hosts: list[str] = []
        self.tokens: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.targets.append(request.headers.get("X-Amz-Target", ""))
        self.hosts.append(request.headers.get("Host", ""))
        self.tokens.append(request.headers.get("X-Amz-Security-Token", ""))
        self.problems.append(
            signature_problem(
                request.method, request.path, request.query_string, request.headers, body, SECRET
            )
        )
        if self.targets[-1].endswith("ReceiveMessage"):
            message = {"MessageId": "m1", "ReceiptHandle": RECEIPT, "Body": "{}"}
            return web.json_response({"Messages": [message]}, content_type=JSON)
        return web.json_response({"Successful": [{"Id": "0"}], "Failed": []}, content_type=JSON)


@contextlib.asynccontextmanager
async def signing_server() -> AsyncIterator[tuple[SigningServer, str]]:
    server = SigningServer()
    app = web.Application()
    app.router.add_post("/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_the_direct_clients_requests_pass_a_server_side_sigv4_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given temporary credentials (a session token) and an endpoint with a port
    monkeypatch.setenv("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEJr//////////wEaDO+token/with+odd=chars")
    async with (
        signing_server() as (server, endpoint),
        open_queue(settings_for(endpoint, "wire")) as queue,
    ):
        # When it receives a message with a long receipt handle and deletes it
        received = await queue.receive(0, 30)
        assert [e.receipt_handle for e in received] == [RECEIPT]
        await queue.delete_batch([RECEIPT])
    # Then every request carried a valid signature over the port, the token and the body
    assert server.targets == ["AmazonSQS.ReceiveMessage", "AmazonSQS.DeleteMessageBatch"]
    assert server.problems == [None, None]
    assert set(server.hosts) == {endpoint.removeprefix("http://")}
    assert set(server.tokens) == {"FwoGZXIvYXdzEJr//////////wEaDO+token/with+odd=chars"}


async def test_the_check_itself_accepts_a_good_signature_and_catches_a_bad_one() -> None:
    """The verifier is no rubber stamp: a request botocore signed passes; the same request
    with one byte of its body changed, or checked with another secret, fails."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(
        method="POST", url="http://127.0.0.1:4566/", data=b'{"a": 1}', headers={"X-Amz-Target": "t"}
    )
    SigV4Auth(Credentials("AKID", SECRET, "token"), "sqs", "us-east-1").add_auth(request)
    headers = {**dict(request.headers.items()), "Host": "127.0.0.1:4566"}
    assert signature_problem("POST", "/", "", headers, b'{"a": 1}', SECRET) is None
    assert signature_problem("POST", "/", "", headers, b'{"a": 2}', SECRET) == "signature mismatch"
    assert signature_problem("POST", "/", "", headers, b'{"a": 1}', "other") == "signature mismatch"
