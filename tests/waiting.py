"""Waiting for a condition, never for a fixed time: tests that need something to have
happened poll for it, with a deadline that fails the test with a reason."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

Condition = Callable[[], bool | Awaitable[bool]]


async def wait_until(
    condition: Condition, within: float, what: str = "the condition", every: float = 0.05
) -> None:
    """Return once `condition()` (sync or async) is true; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out after {within:.0f}s waiting for {what}"
        await asyncio.sleep(every)
