"""How the defaults were chosen: the service draining the same queue with one setting
changed at a time around the defaults (receivers, batch size, writers, buffer), and the
commit latency at two flush intervals. The README's "Defaults" section quotes these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks import e2e
from benchmarks.measure import Figure


@dataclass(frozen=True)
class Variant:
    name: str
    settings: dict[str, str]


# Each line changes one setting from the defaults (the first line).
VARIANTS = (
    Variant("defaults", {}),
    Variant("receivers 2", {"receivers": "2"}),
    Variant("receivers 8", {"receivers": "8"}),
    Variant("receivers 16", {"receivers": "16"}),
    Variant("batch size 500", {"batch_size": "500"}),
    Variant("batch size 5,000", {"batch_size": "5000"}),
    Variant("writers 1", {"writers": "1"}),
    Variant("buffer 1,000", {"buffer_messages": "1000"}),
    Variant("buffer 20,000", {"buffer_messages": "20000"}),
)


async def variant_figures(
    endpoint: str, dsn: str, messages: int, runs: int, variants: int = len(VARIANTS)
) -> tuple[list[Figure], list[Figure]]:
    """(throughput figures, peak RSS figures), one of each of the first `variants`."""
    rates, memory = [], []
    for variant in VARIANTS[:variants]:
        results = [
            await e2e.ingestor_run(endpoint, dsn, messages, **variant.settings) for _ in range(runs)
        ]
        rates.append(Figure(variant.name, "msg/s", [r["rate"] for r in results]))
        memory.append(Figure(variant.name, "MB", [r["max_rss_mb"] for r in results]))
    return rates, memory


async def flush_latency(
    endpoint: str, dsn: str, rate: int, seconds: float, intervals: tuple[float, ...]
) -> list[dict[str, Any]]:
    """Commit latency at a fixed offered load for each flush interval."""
    return [
        {
            "flush_interval": interval,
            **await e2e.latency_run(endpoint, dsn, rate, seconds, flush_interval=str(interval)),
        }
        for interval in intervals
    ]
