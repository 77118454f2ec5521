"""What the commands share: the event loop they run on and the settings a live progress
line needs. It imports no command, so any command may import it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from ingestor.cli import collector
from ingestor.observe.progress import LIVE_DEPTH_INTERVAL
from ingestor.settings import Settings

T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed, else on the default event loop. The command's
    work starts here: so does the garbage collector, if the entry point paused it."""
    collector.resume()
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def faster_depth_sampling(settings: Settings) -> Settings:
    """Settings that sample the queue's depth often enough for a live progress line."""
    interval = settings.queue_depth_interval
    if not interval:
        return settings
    return settings.model_copy(update={"queue_depth_interval": min(interval, LIVE_DEPTH_INTERVAL)})
