"""What an SQS answer means, for both clients (aiobotocore's and the direct one): retry,
stop, or the queue is gone. One classification, as botocore's standard retry mode makes
it, so the two clients can never disagree.

An error's code comes from the answer as botocore's JSON-protocol parser reads it: the
`x-amzn-query-error` header's code when SQS sends one (its "awsQueryCompatible" codes,
such as `AWS.SimpleQueueService.NonExistentQueue`), else the `__type` without its
namespace, else the HTTP status. Then:
- throttling and transient codes, and HTTP 429, 500, 502, 503, 504 and 509: retry;
- expired credentials, and a signature refused because of the clock: refresh the
  credentials, then retry;
- the queue does not exist: stop, saying so;
- anything else (access denied, a wrong key, a bad request): stop.
An answer that is not an answer (a body cut short, not JSON, not an object, a message
without its handle) is transient: a proxy or a reset connection, not SQS's verdict.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from ingestor.errors import QueueError, QueueGone, QueueUnavailable, StaleCredentials
from ingestor.terminal import printable

# botocore.retries.standard's throttling codes, and SQS's own.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "KmsThrottled",  # SQS: the queue's KMS key is throttled
        # SQS: too many messages in flight (120,000); deletes by others make room.
        "OverLimit",
        "AWS.SimpleQueueService.OverLimit",
    }
)
# botocore.retries.standard's transient codes, and the 5xx codes AWS sends in a body.
TRANSIENT_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)
# botocore's standard transient statuses, with 429 and 509 of its legacy mode.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504, 509})
EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})
SKEW_CODES = frozenset({"RequestTimeTooSkewed", "RequestInTheFuture"})
SIGNATURE_CODES = frozenset({"InvalidSignatureException", "SignatureDoesNotMatch"})
# What AWS says when a signature's time is off (the request is "expired" or "in the future").
_SKEW_WORDS = ("signature expired", "earlier than", "later than", "in the future")
GONE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
RECEIPT_GONE = "ReceiptHandleIsInvalid"
MESSAGE_LIMIT = 200  # characters of an answer's message quoted in an error line


class MalformedAnswer(QueueUnavailable):
    """SQS's answer was not an answer: cut short, not a JSON object, a message without its
    handle. A proxy or a reset connection, worth a retry."""


def classify(
    code: str, status: int, message: str, call: str, queue_url: str
) -> QueueError | QueueUnavailable:
    """The ingestor's error for an SQS error answer to `call` on `queue_url`."""
    said = f"{code}: {message}" if message else code
    if code in GONE_CODES:
        return QueueGone(f"queue {queue_url} no longer exists (SQS: {code})")
    if code in EXPIRED_CODES:
        return StaleCredentials(
            f"SQS refused the credentials of {call} as expired ({said})", expired=True
        )
    if code in SKEW_CODES or _clock_problem(code, message):
        return StaleCredentials(
            f"SQS refused the signature of {call}: the host's clock is off? ({said})"
        )
    if code in THROTTLING_CODES or code in TRANSIENT_CODES or status in TRANSIENT_STATUSES:
        return QueueUnavailable(f"SQS could not do {call} on {queue_url} ({said}, HTTP {status})")
    return QueueError(f"SQS refused {call} on {queue_url} ({said}, HTTP {status})")


def _clock_problem(code: str, message: str) -> bool:
    lowered = message.lower()
    return code in SIGNATURE_CODES and any(words in lowered for words in _SKEW_WORDS)


def parse_error(status: int, headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
    """(code, message) of an error answer, read as botocore's JSON-protocol parser reads
    it (see the module's docstring); the message is shortened and made printable."""
    try:
        details = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        details = {}  # an HTML page from a proxy: its status says it all
    if not isinstance(details, dict):  # JSON, but not an error: not an answer
        raise MalformedAnswer(f"SQS answered HTTP {status} with JSON that is not an object")
    code = str(details.get("__type") or status).split(":", 1)[0].rsplit("#", 1)[-1]
    query = headers.get("x-amzn-query-error", "").split(";")
    if len(query) == 2 and query[0]:  # "<code>;<Sender|Receiver>", as botocore reads it
        code = query[0]
    message = details.get("message", details.get("Message", ""))
    return code, printable(str(message), MESSAGE_LIMIT)


def unreachable(call: str, where: str, error: BaseException) -> QueueUnavailable:
    """A call that got no answer (a connection refused or reset, a timeout, a cut body)."""
    return QueueUnavailable(f"no SQS answers at {where} ({call}: {describe(error)})")


def describe(error: BaseException) -> str:
    """An exception in a few words: its class and, when it has one, its text."""
    text = printable(str(error), MESSAGE_LIMIT)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
