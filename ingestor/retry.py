"""Retrying transient failures: capped exponential backoff with full jitter."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ingestor.errors import IngestorError, TransientError
from ingestor.ports import Hooks

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before attempt n+1 is uniform in [0, min(cap, base * 2**n)] (full jitter, so
    many consumers recovering from one outage do not retry in step)."""

    base: float = 0.2
    cap: float = 15.0
    attempts: int | None = None  # None: until it works or the caller is cancelled

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2 ** min(attempt, 32)))


# Shared policies (Backoff is immutable).
RETRY_FOREVER = Backoff()


class Interrupted(Exception):
    """A stop was requested while waiting to retry: the operation was not done.
    `after_failures`: it had failed before (an outage was reported to the hooks)."""

    def __init__(self, after_failures: bool = False) -> None:
        super().__init__()
        self.after_failures = after_failures


async def retrying(
    operation: Callable[[], Awaitable[T]],
    backoff: Backoff,
    on_retry: Callable[[TransientError, int, float], None] | None = None,
    stop: asyncio.Event | None = None,
) -> T:
    """Await `operation()` until it succeeds; `TransientError`s are retried with `backoff`,
    anything else propagates. The last TransientError propagates once attempts run out.
    With `stop`, a stop during a pause between tries raises `Interrupted` (a try already
    under way is never cut short)."""
    attempt = 0
    while True:
        try:
            return await operation()
        except TransientError as error:
            attempt += 1
            if backoff.attempts is not None and attempt >= backoff.attempts:
                raise
            delay = backoff.delay(attempt)
            if on_retry is not None:
                on_retry(error, attempt, delay)
            await _pause(delay, stop)


async def _pause(delay: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(delay)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await stop.wait()
    if stop.is_set():
        raise Interrupted


async def observed(
    stage: str,
    operation: Callable[[], Awaitable[T]],
    backoff: Backoff,
    hooks: Hooks,
    stop: asyncio.Event | None = None,
) -> T:
    """`retrying`, reporting each retry and the recovery after them to `hooks`."""
    failed = False

    def on_retry(error: TransientError, attempt: int, delay: float) -> None:
        nonlocal failed
        failed = True
        hooks.on_retry(stage, error, attempt, delay)

    try:
        result = await retrying(operation, backoff, on_retry, stop)
    except Interrupted:
        raise Interrupted(after_failures=failed) from None
    except IngestorError:
        if failed:
            hooks.on_gave_up(stage)
        raise
    if failed:
        hooks.on_recovered(stage)
    return result
