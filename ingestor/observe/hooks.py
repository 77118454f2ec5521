"""Hooks: how metrics, logs and summaries observe the pipeline without living in its loops.

The stages call one `Hooks` object (`ports.py` lists the events) at each event; `HookChain`
fans out to several and keeps a failing observer from reaching a stage. Nothing passed to
a hook carries plaintext PII.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ingestor.errors import IngestorError, PartitionMissing
from ingestor.models import MissingPartition, Rejection, SqsBatchResult, WriteResult
from ingestor.ports import Hooks
from ingestor.terminal import printable

log = logging.getLogger("ingestor")


# The events, read off `Hooks` itself: a new event is one method there, and no more.
EVENTS: tuple[str, ...] = tuple(name for name in vars(Hooks) if name.startswith("on_"))


class HookChain(Hooks):
    """Calls every hook, in order, at each event. A hook that raises is logged once (by
    its name) and counted in `failures`; the stage that reported the event never sees the
    error, and the other hooks still run. Chains given to a chain are flattened, and the
    wrapping chain counts into the first one's `failures`."""

    def __init__(self, *hooks: Hooks) -> None:
        self.hooks: tuple[Hooks, ...] = tuple(
            inner
            for hook in hooks
            for inner in (hook.hooks if isinstance(hook, HookChain) else (hook,))
        )
        # hook name -> errors it raised; shared with a chain given to this one, so what
        # watches that chain's failures (the metrics) also sees those counted here.
        inner = [hook.failures for hook in hooks if isinstance(hook, HookChain)]
        self.failures: Counter[str] = inner[0] if inner else Counter()
        for event in EVENTS:
            setattr(self, event, self._dispatcher(event))

    def _dispatcher(self, event: str) -> Callable[..., None]:
        # Only the hooks that observe this event: most events reach one or two of them.
        calls = [(hook, getattr(hook, event)) for hook in self.hooks if _observes(hook, event)]

        def dispatch(*args: Any) -> None:
            for hook, call in calls:
                try:
                    call(*args)
                except Exception as error:  # an observer's bug must not stop a stage
                    self._failed(hook, event, error)

        return dispatch

    def _failed(self, hook: Hooks, event: str, error: Exception) -> None:
        name = type(hook).__name__
        if not self.failures[name]:
            log.error(
                "hook %s failed on %s (%s: %s); the pipeline goes on, and further failures "
                "of this hook are counted (ingestor_hook_failures_total), not logged",
                name,
                event,
                type(error).__name__,
                printable(str(error)),
                extra={"event": "hook_failed", "hook": name},
            )
        self.failures[name] += 1


def _observes(hook: Hooks, event: str) -> bool:
    return getattr(type(hook), event, None) is not getattr(Hooks, event)


@dataclass
class Stats(Hooks):
    """Counts for summaries: what was received, loaded, replaced, rejected (by reason)."""

    received: int = 0
    inserted: int = 0
    replaced: int = 0
    rejected: int = 0
    deleted: int = 0
    delete_failures: int = 0
    released: int = 0
    extended: int = 0
    batches: int = 0
    write_seconds: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)

    def on_received(self, count: int) -> None:
        self.received += count

    def on_written(
        self, result: WriteResult, rejections: Sequence[Rejection], seconds: float
    ) -> None:
        self.inserted += result.inserted
        self.replaced += result.replaced
        self.rejected += len(rejections)
        self.batches += 1
        self.write_seconds += seconds
        self.reasons.update(r.reason_code for r in rejections)

    def on_deleted(self, result: SqsBatchResult) -> None:
        self.deleted += result.succeeded
        self.delete_failures += len(result.failed)

    def on_released(self, result: SqsBatchResult) -> None:
        self.released += result.succeeded

    def on_extended(self, result: SqsBatchResult) -> None:
        self.extended += result.succeeded

    @property
    def loaded(self) -> int:
        return self.inserted + self.replaced

    def counts(self) -> dict[str, object]:
        """Every count, by name (the fields of a summary log line)."""
        return {
            "received": self.received,
            "loaded": self.loaded,
            "inserted": self.inserted,
            "replaced": self.replaced,
            "rejected": self.rejected,
            "rejected_by_reason": dict(self.reasons),
            "deleted": self.deleted,
            "delete_failures": self.delete_failures,
            "released": self.released,
            "extended": self.extended,
            "batches": self.batches,
            "write_seconds": round(self.write_seconds, 3),
        }


# One line per state change, saying what it means for someone reading the log.
STATE_LINES = {
    "starting": "starting: migrating the schema, connecting to the queue and the database",
    "running": "ready: receiving from the queue",
    "draining": "draining: stopped receiving, finishing in-flight work",
    "stopped": "stopped",
}


# Seconds between two warnings about rows the database refused with one SQLSTATE.
REFUSAL_LOG_INTERVAL = 60.0


class LogHooks(Hooks):
    """One log line per state change; an outage is logged when it starts and when it ends,
    not once per attempt. Several operations of a stage may fail at once (two writers'
    deletes): the outage starts with the first and ends when none is failing any more.
    Rows the database refused are a warning, once per SQLSTATE per minute."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._failing: Counter[str] = Counter()  # operations failing now, per stage
        self._clock = clock
        self._refusals_logged: dict[str, float] = {}  # reason code -> when last logged

    def on_written(
        self, result: WriteResult, rejections: Sequence[Rejection], seconds: float
    ) -> None:
        for rejection in rejections:
            if rejection.reason_code.startswith("db_") and self._due(rejection.reason_code):
                log.warning(
                    "PostgreSQL refused a row (%s); it is kept as a %s reject, and "
                    "`ingestor rejects replay` loads it once the table accepts it",
                    rejection.reason,
                    rejection.reason_code,
                    extra={"event": "row_refused", "reason_code": rejection.reason_code},
                )

    def _due(self, code: str) -> bool:
        now = self._clock()
        last = self._refusals_logged.get(code)
        if last is not None and now - last < REFUSAL_LOG_INTERVAL:
            return False
        self._refusals_logged[code] = now
        return True

    def on_partition_missing(self, missing: MissingPartition) -> None:
        """A partition added is one line; a date that waits for one is an error, once per
        date per minute while it waits (its retries are not logged again)."""
        if missing.created:
            assert missing.span is not None
            log.info(
                "added partition %s of %s for [%s, %s): a row dated %s had none",
                missing.partition,
                missing.table,
                *missing.span,
                missing.day,
                extra={"event": "partition_added", "partition": missing.partition},
            )
            return
        if not self._due(f"partition {missing.table} {missing.day}"):
            return
        fix = missing.statement()
        log.error(
            "no partition of %s holds %s and ingestor adds none (%s): batches with rows of "
            "that date wait and are retried, nothing is rejected or lost; add it%s",
            missing.table,
            missing.day,
            missing.problem,
            f", e.g. {fix}" if fix else "",
            extra={"event": "partition_missing", "table": missing.table, "day": str(missing.day)},
        )

    def on_shutdown_timeout(self, timeout: float, held: int) -> None:
        log.error(
            "shutdown timeout (%.0f s) reached; handing %d uncommitted messages back to the queue",
            timeout,
            held,
            extra={"event": "shutdown_timeout", "held": held},
        )

    def on_transaction_shrunk(self, size: int, cause: IngestorError) -> None:
        log.warning(
            "a transaction of %d messages was cancelled (%s): writing smaller ones "
            "until they commit in time, then growing back",
            size,
            cause,
            extra={"event": "transaction_shrunk", "size": size},
        )

    def on_not_released(self, count: int, why: str) -> None:
        log.warning(
            "could not hand %d messages back: %s; they come back after their visibility timeout",
            count,
            why,
            extra={"event": "release_failed", "count": count},
        )

    def on_state(self, state: str) -> None:
        line = STATE_LINES.get(state, state)
        log.info("%s", line, extra={"event": "state", "state": state})

    def on_retry(self, stage: str, error: IngestorError, attempt: int, delay: float) -> None:
        if attempt != 1:
            return  # the same operation failing again: already counted
        # Dates waiting for a partition have their own line (on_partition_missing): the
        # outage is counted, so its end is logged, but not said twice.
        told = isinstance(error, PartitionMissing) and error.days
        if not self._failing[stage] and not told:
            log.warning(
                "%s failing, retrying with backoff: %s",
                stage,
                error,
                extra={"event": "outage_start", "stage": stage},
            )
        self._failing[stage] += 1

    def on_recovered(self, stage: str) -> None:
        if self._settle(stage):
            log.info("%s recovered", stage, extra={"event": "outage_end", "stage": stage})

    def on_gave_up(self, stage: str) -> None:
        log.warning(
            "%s gave up after its retries", stage, extra={"event": "gave_up", "stage": stage}
        )
        self._settle(stage)

    def _settle(self, stage: str) -> bool:
        """One failing operation of `stage` ended; True when it was the last one."""
        if not self._failing[stage]:
            return False
        self._failing[stage] -= 1
        return not self._failing[stage]

    def on_deleted(self, result: SqsBatchResult) -> None:
        if not result.failed:
            return
        codes = Counter(code for _, code in result.failed)
        log.warning(
            "%d deletes failed after commit (the rows are safe; SQS will redeliver "
            "and the upsert keeps one row): %s",
            len(result.failed),
            dict(codes),
            extra={"event": "delete_failed"},
        )
