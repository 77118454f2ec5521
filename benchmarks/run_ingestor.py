"""Run ingestor's service (drain mode) in this process, as `python -m ingestor run --drain`
does, and print one JSON line: messages, seconds from the first receive to the last delete,
the process's CPU seconds over the same span (read at those two moments: start-up,
migrations, the drain's final empty long poll and the shutdown are not in it), and its
peak RSS. Settings from the environment."""

from __future__ import annotations

from ingestor.cli import collector

collector.pause()  # before the imports, as `python -m ingestor` does (collector.py)

import asyncio  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import orjson  # noqa: E402

from ingestor.cli.runtime import run_async  # noqa: E402
from ingestor.models import Processed, SqsBatchResult  # noqa: E402
from ingestor.pipeline.service import run_service  # noqa: E402
from ingestor.ports import Hooks  # noqa: E402
from ingestor.settings import load_settings  # noqa: E402


class Clock(Hooks):
    def __init__(self, keep_lags: bool) -> None:
        self.keep_lags = keep_lags  # only when asked: the list grows with the queue
        self.first: float | None = None
        self.last = 0.0
        self.deleted = 0
        self.cpu_at_first = 0.0
        self.cpu_at_last = 0.0
        self.lags: list[float] = []

    def on_received(self, count: int) -> None:
        if self.first is None:
            self.first = time.time()  # wall clock: comparable across processes
            self.cpu_at_first = cpu_seconds()

    def on_committed(self, batch: Sequence[Processed]) -> None:
        if not self.keep_lags:
            return
        now_ms = time.time() * 1000
        self.lags.extend(now_ms - item.sent_timestamp_ms for item in batch)

    def on_deleted(self, result: SqsBatchResult) -> None:
        self.deleted += result.succeeded
        self.last = time.time()
        self.cpu_at_last = cpu_seconds()  # once per batch of deletes: about 1 µs


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: Linux carries ru_maxrss across
    exec, so a child of a large parent reports the parent's size (the benchmark driver,
    which holds every body it queued, grows with the queue depth)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def main() -> None:
    clock = Clock(keep_lags="--lags" in sys.argv)
    settings = load_settings(drain=True)
    run_async(run_service(settings, asyncio.Event(), clock))
    seconds = clock.last - (clock.first or clock.last)
    report = {
        "messages": clock.deleted,
        "started_at": clock.first,
        "ended_at": clock.last,
        "seconds": seconds,
        "rate": clock.deleted / seconds if seconds else 0.0,
        "cpu_seconds": clock.cpu_at_last - clock.cpu_at_first,
        "max_rss_mb": peak_rss_mb(),
        "lags_ms": sorted(clock.lags),
    }
    sys.stdout.write(orjson.dumps(report).decode() + "\n")


if __name__ == "__main__":
    main()
