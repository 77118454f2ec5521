"""The transform stage's work for one message: parse, unwrap, validate, map, mask.

`Transformer.process` never raises: every body, however broken, becomes either a
`LoginRow` or a `Rejection` with a reason (PRODUCT.md rules 4 and 7). A body wrapped by
SNS or EventBridge (`unwrap.py`) gives the event, the key and the date; a raw body is
the event, keyed by its SQS MessageId and dated by its SentTimestamp.
"""

from __future__ import annotations

from typing import Any

import orjson

from ingestor.models import Envelope, LoginRow, Processed, Rejection, Wrapping
from ingestor.ports import Masker
from ingestor.transform.rejects import reject
from ingestor.transform.rules import Invalid, create_date, json_kind, validate
from ingestor.transform.unwrap import opener


class Transformer:
    """Turns envelopes into rows or rejections under one masker, unwrapping the events
    that arrive in an SNS or EventBridge envelope as `wrapping` says. Each `Processed`
    also carries the vault entries its message made (none without a vault)."""

    __slots__ = ("_mask_device_id", "_mask_ip", "_masker", "_open", "_take", "digest")

    def __init__(self, masker: Masker, wrapping: Wrapping = "auto") -> None:
        self._masker = masker
        self.digest = masker.digest_body
        self._take = masker.take
        # The row's two PII fields, as the rules validate them (`Fields`): their masking
        # functions fetched once, for the hot path.
        self._mask_ip = masker.masking("ip")
        self._mask_device_id = masker.masking("device_id")
        self._open = opener(wrapping)

    def process(self, envelope: Envelope) -> Processed:
        try:
            outcome: LoginRow | Rejection = self._row(envelope)
        except Invalid as problem:
            outcome = self._reject(envelope, problem)
        except Exception as bug:  # a bug must not cost the batch; keep the message as a reject
            outcome = self._internal_error(envelope, bug)
        return Processed(
            outcome.message_id,  # the envelope's key, when the event came in one
            envelope.receipt_handle,
            outcome,
            envelope.sent_timestamp_ms,
            envelope.receive_count,
            self._take(),
        )

    def _row(self, envelope: Envelope) -> LoginRow:
        event = _parse(envelope.body)
        key, day = envelope.message_id, None
        if self._open is not None and (opened := self._open(event)) is not None:
            event, key, day = opened.unwrapped()
        fields = validate(event)
        return LoginRow(
            key,
            fields.user_id,
            fields.device_type,
            None if fields.ip is None else self._mask_ip(fields.ip),
            None if fields.device_id is None else self._mask_device_id(fields.device_id),
            fields.locale,
            fields.app_version,
            create_date(envelope.sent_timestamp_ms) if day is None else day,
        )

    def _reject(self, envelope: Envelope, problem: Invalid) -> Rejection:
        try:
            return self._described(envelope, problem)
        except Exception as bug:
            return self._internal_error(envelope, bug)

    def _internal_error(self, envelope: Envelope, bug: Exception) -> Rejection:
        reason = f"transform failed: {type(bug).__name__}"
        return reject(envelope, self._masker, "internal_error", reason, body_kind="unknown")

    def _described(self, envelope: Envelope, problem: Invalid) -> Rejection:
        if isinstance(problem, _NotAnObject):
            return reject(
                envelope, self._masker, problem.code, problem.reason, body_kind=problem.kind
            )
        body = _parse(envelope.body)  # parsed (and unwrapped) again only on this rare path
        opened = None if self._open is None else self._open(body)
        return reject(
            envelope, self._masker, problem.code, problem.reason, parsed=body, opened=opened
        )


class _NotAnObject(Invalid):
    def __init__(self, code: str, reason: str, kind: str) -> None:
        super().__init__(code, reason)
        self.kind = kind


def _parse(body: str | bytes) -> dict[str, Any]:
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise _undecodable(body, error) from None
    if not isinstance(event, dict):
        kind = json_kind(event)
        raise _NotAnObject("not_object", f"body is a JSON {kind}, not an object", kind)
    return event


def _undecodable(body: str | bytes, error: orjson.JSONDecodeError) -> _NotAnObject:
    try:
        body.decode("utf-8") if isinstance(body, bytes) else body.encode("utf-8")
    except UnicodeError:
        return _NotAnObject("not_utf8", "body is not valid UTF-8 text", "not_utf8")
    # orjson's message gives the position and the kind of error, never the body's text.
    return _NotAnObject("not_json", f"body is not valid JSON ({error.msg})", "not_json")
