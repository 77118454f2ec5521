"""`ingestor rejects list` and `rejects replay`: look at the rejects, and run them again
through today's rules (after a rule fix) from their sealed original bodies.

Two kinds of reject can be replayed. One with a sealed original body (the vault was on)
is opened with the private key and goes through today's transform. A valid row the
database refused (`db_<SQLSTATE>`, its body the masked row itself) is written again as it
is, once the table accepts it. Both go through the same sink as the service: one that passes
becomes a row (and leaves the rejects table in the same transaction); one that still fails
is stored again with today's reason. Loading is an upsert by message id, so replaying twice
loads each message once. A message that today's rules key differently (an event now taken
out of its SNS or EventBridge envelope is keyed by the envelope's id) leaves its old reject
once its new row or reject is written. Nothing is sent to or deleted from the queue.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ingestor.custody.audit import Request, record
from ingestor.custody.vault import EntryRefused, Opener, SealedError
from ingestor.models import LOGIN_COLUMNS, Envelope, LoginRow, Processed, WriteResult
from ingestor.ports import Sink
from ingestor.sink.isolation import Batch, split_outcomes, vault_entries, write_isolating
from ingestor.sink.queries import query
from ingestor.table import USER_LOGINS
from ingestor.transform.transformer import Transformer

log = logging.getLogger("ingestor")


@dataclass(frozen=True, slots=True)
class ReasonCount:
    reason_code: str
    count: int
    replayable: int
    first: dt.datetime
    last: dt.datetime


async def summary(connection: Any, reason: str | None) -> list[ReasonCount]:
    rows = await connection.fetch(query("rejects_summary"), reason)
    return [ReasonCount(**dict(row)) for row in rows]


@dataclass(frozen=True, slots=True)
class Replay:
    """What replay works with: the private key's opener, today's transform, the sink."""

    opener: Opener
    transformer: Transformer
    sink: Sink
    batch_size: int = 1_000


async def replay(
    connection: Any,
    replay: Replay,
    request: Request,
    reason: str | None,
    on_batch: Callable[[WriteResult], None] = lambda result: None,
) -> WriteResult:
    """Replay every sealed reject (of `reason`, if given); the total result."""
    # Audited before the first batch loads, so a run that fails part-way is on record.
    await record(connection, request, "replay", [], f"start: reason {reason or 'any'}")
    total, after = WriteResult(0, 0, 0), ""
    while rows := await connection.fetch(
        query("rejects_to_replay"), reason, after, replay.batch_size
    ):
        result = await _replay_batch(connection, rows, replay)
        total, after = total + result, rows[-1]["message_id"]
        on_batch(result)
    detail = f"done: reason {reason or 'any'}: loaded {total.inserted + total.replaced}, "
    await record(connection, request, "replay", [], detail + f"still rejected {total.rejected}")
    return total


async def _replay_batch(connection: Any, rows: list[Any], replay: Replay) -> WriteResult:
    stored = [(row["message_id"], item) for row in rows if (item := _openable(row, replay))]
    batch = [item for _, item in stored]
    if not batch:
        return WriteResult(0, 0, 0)
    loaded, rejects = split_outcomes(batch)
    context = Batch(batch, replay.transformer.digest, vault_entries(batch))
    result, _ = await write_isolating(replay.sink, loaded, rejects, context)
    # After the write: a failure in between leaves the old reject, which a replay redoes.
    moved = [key for key, item in stored if item.message_id != key]
    if moved:
        await connection.execute(query("delete_moved_rejects"), moved)
    return result


def _openable(row: Any, replay: Replay) -> Processed | None:
    """The reject processed again; None (left as it is, with a warning) when it is sealed
    to a key pair whose private key was not given, or when its stored form is malformed
    (a row edited by hand, a body that is not the row it should be)."""
    try:
        return _processed(row, replay)
    except SealedError as error:
        problem = str(error)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        # The class only: the message of a failed parse may quote the stored text.
        problem = f"its stored body is malformed ({type(error).__name__})"
    log.warning(
        "reject %s left as it is: %s",
        row["message_id"],
        problem,
        extra={"event": "replay_skipped"},
    )
    return None


def stored_row(fields: dict[str, Any]) -> LoginRow:
    """A refused row from its stored body (`isolation.refused_row`). A column the body
    lacks is NULL, as in a row loaded before that column was added to the registry; its
    key and create_date must be there, and no key that is not a column (else ValueError
    or KeyError: its stored body is malformed)."""
    if USER_LOGINS.key not in fields or not set(fields) <= set(LOGIN_COLUMNS):
        raise ValueError("not a row of user_logins")
    values = {**fields, "create_date": dt.date.fromisoformat(fields["create_date"])}
    return LoginRow._make(values.get(column) for column in LOGIN_COLUMNS)


def _processed(row: Any, replay: Replay) -> Processed:
    sent_ms = int(row["sent_at"].timestamp() * 1000)
    if row["body_kind"] == "row":  # a refused row: already masked, write it as it was
        login = stored_row(orjson.loads(row["body"]))
        return Processed(row["message_id"], "", login, sent_ms, row["receive_count"])
    body = replay.opener.open(row["sealed_body"], row["key_id"])
    # The keyed digest the loader stored beside it vouches for the sealed body: anyone who
    # can write to ingestor_rejects can seal a body of their own to the public key.
    if replay.transformer.digest(body) != row["body_digest"]:
        raise EntryRefused("its sealed body does not match its digest (sealed by someone else?)")
    envelope = Envelope(row["message_id"], "", body, sent_ms, row["receive_count"])
    return replay.transformer.process(envelope)
