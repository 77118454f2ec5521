"""SQS bodies as SNS and EventBridge deliver them, built from the fields AWS documents:
an SNS notification to an SQS subscriber (raw message delivery off) and an EventBridge
event to an SQS target. Signatures and URLs are placeholders: nothing checks them."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

TOPIC = "arn:aws:sns:eu-west-1:111122223333:logins"
PUBLISHED = "2023-11-14T22:13:20.123Z"  # the day of tests.fakes.SENT_MS


def sns(
    event: dict[str, Any] | str,
    message_id: str | None = None,
    timestamp: str = PUBLISHED,
    **extra: Any,
) -> str:
    """The SQS body SNS delivers for `event` (a dict is published as its JSON text)."""
    message = event if isinstance(event, str) else orjson.dumps(event).decode()
    notification: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Message": message,
        "Timestamp": timestamp,
        "SignatureVersion": "2",
        "Signature": "c2lnbmF0dXJl",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0.pem",
        "UnsubscribeURL": f"https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={TOPIC}:1",
        **extra,
    }
    return orjson.dumps(notification).decode()


def eventbridge(
    event: Any, event_id: str | None = None, time: str = "2023-11-14T22:13:20Z", **extra: Any
) -> str:
    """The SQS body an EventBridge rule delivers for `event` (its `detail`)."""
    wrapped: dict[str, Any] = {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": "User Login",
        "source": "com.example.auth",
        "account": "111122223333",
        "time": time,
        "region": "eu-west-1",
        "resources": [],
        "detail": event,
        **extra,
    }
    return orjson.dumps(wrapped).decode()


def without(body: str, *names: str) -> str:
    """`body` (a JSON object) without the fields `names`."""
    parsed = orjson.loads(body)
    for name in names:
        del parsed[name]
    return orjson.dumps(parsed).decode()


def replaced(body: str, **fields: Any) -> str:
    """`body` (a JSON object) with `fields` set."""
    return orjson.dumps({**orjson.loads(body), **fields}).decode()
