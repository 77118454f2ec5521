"""Progress: a periodic log line for operators, and a live line on a terminal for people.

Both are hooks that count (once per batch) plus something that renders the counts: a
background task every `INGESTOR_PROGRESS_INTERVAL` seconds for the log line, the hook
events themselves (at most 4 times a second) for the terminal. Nothing here ever sees a
message body: only counts, rates, the lag of the latest commit and the sampled depth.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from ingestor.models import Processed, QueueDepth, Rejection, WriteResult
from ingestor.observe.hooks import Stats

log = logging.getLogger("ingestor")
LIVE_REFRESH = 0.25  # seconds between redraws of the terminal line
LIVE_DEPTH_INTERVAL = 1.0  # seconds between depth samples while a person is watching
_CLEAR_TO_END = "\x1b[K"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The counts at one moment (monotonic seconds)."""

    at: float
    received: int
    loaded: int
    rejected: int
    deleted: int
    lag_seconds: float | None
    queue_visible: int | None

    def rate_since(self, earlier: Snapshot) -> float:
        """Messages received per second between `earlier` and this snapshot."""
        seconds = self.at - earlier.at
        return (self.received - earlier.received) / seconds if seconds > 0 else 0.0


def render(now: Snapshot, rate: float) -> str:
    """One line of progress, for a log or a terminal."""
    parts = [
        f"received {now.received:,}",
        f"loaded {now.loaded:,}",
        f"rejected {now.rejected:,}",
        f"deleted {now.deleted:,}",
        f"{rate:,.0f} msg/s",
    ]
    if now.lag_seconds is not None:
        parts.append(f"lag {now.lag_seconds:,.1f} s")
    if now.queue_visible is not None:
        parts.append(f"queue ~{now.queue_visible:,}")
    return ", ".join(parts)


@dataclass
class Tally(Stats):
    """`Stats` plus the lag of the latest commit (its oldest message) and the last
    sampled queue depth."""

    lag_seconds: float | None = None
    queue_visible: int | None = None
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def on_committed(self, batch: Sequence[Processed]) -> None:
        if batch:
            oldest_ms = min(item.sent_timestamp_ms for item in batch)
            self.lag_seconds = max(0.0, time.time() - oldest_ms / 1000)

    def on_queue_depth(self, depth: QueueDepth) -> None:
        self.queue_visible = depth.visible

    def snapshot(self) -> Snapshot:
        return Snapshot(
            self.clock(),
            self.received,
            self.loaded,
            self.rejected,
            self.deleted,
            self.lag_seconds,
            self.queue_visible,
        )


@dataclass
class ProgressLog(Tally):
    """A log line every `interval` seconds while the service runs (see `run`)."""

    def __post_init__(self) -> None:
        self._last = self.snapshot()

    async def run(self, interval: float) -> None:
        """Log a progress line every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.emit()

    def emit(self) -> None:
        now = self.snapshot()
        rate = now.rate_since(self._last)
        self._last = now
        self.lag_seconds = None  # a line shows a lag only if something committed since the last
        log.info(
            "progress: %s",
            render(now, rate),
            extra={
                "event": "progress",
                "received": now.received,
                "loaded": now.loaded,
                "rejected": now.rejected,
                "deleted": now.deleted,
                "rate": round(rate, 1),
                "lag_seconds": None if now.lag_seconds is None else round(now.lag_seconds, 3),
                "queue_visible": now.queue_visible,
            },
        )


@dataclass
class LiveProgress(Tally):
    """A line redrawn in place (`\\r`) on a terminal, then a summary line at the end
    (unless `summary` is off: a caller that prints its own)."""

    stream: TextIO | None = None
    summary: bool = True

    def __post_init__(self) -> None:
        self._started = self._drawn = self.snapshot()
        self._showing = False

    def on_received(self, count: int) -> None:
        super().on_received(count)
        self._maybe_draw()

    def on_written(
        self, result: WriteResult, rejections: Sequence[Rejection], seconds: float
    ) -> None:
        super().on_written(result, rejections, seconds)
        self._maybe_draw()

    def on_state(self, state: str) -> None:
        if state == "running":
            self._started = self.snapshot()
        elif state == "stopped":
            self.finish()

    def _maybe_draw(self) -> None:
        now = self.snapshot()
        if now.at - self._drawn.at >= LIVE_REFRESH:
            self._write(f"\r{render(now, now.rate_since(self._started))}{_CLEAR_TO_END}")
            self._drawn, self._showing = now, True

    def clear(self) -> None:
        """Erase the live line (before a log line is written over it)."""
        if self._showing:
            self._write(f"\r{_CLEAR_TO_END}")
            self._showing = False

    def finish(self) -> None:
        """Replace the live line with a summary (or with nothing)."""
        if not self.summary:
            self.clear()
            return
        now = self.snapshot()
        seconds = now.at - self._started.at
        summary = (
            f"done in {seconds:,.1f} s: {render(now, now.rate_since(self._started))}, "
            f"{self.replaced:,} replaced a redelivered row"
        )
        self.clear()
        self._write(summary + "\n")

    def _write(self, text: str) -> None:
        if self.stream is not None:
            self.stream.write(text)
            self.stream.flush()


class ClearsLiveLine(logging.Filter):
    """Put on a log handler that writes to the same terminal: erases the live line before
    each record, so log lines never run into it (the next redraw brings it back)."""

    def __init__(self, live: LiveProgress) -> None:
        super().__init__()
        self._live = live

    def filter(self, record: logging.LogRecord) -> bool:
        self._live.clear()
        return True


def live_progress(stream: TextIO, *, summary: bool = True) -> LiveProgress | None:
    """A live line on `stream` if it is a terminal (and erased before each log line);
    None otherwise: logs alone cover a service without a person watching."""
    if not stream.isatty():
        return None
    live = LiveProgress(stream=stream, summary=summary)
    for handler in logging.getLogger().handlers:
        handler.addFilter(ClearsLiveLine(live))
    return live
