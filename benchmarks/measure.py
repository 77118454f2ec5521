"""Repeat a measurement and summarise it: median, min and max of several runs."""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Figure:
    name: str
    unit: str
    runs: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "median": self.median, "min": min(self.runs), "max": max(self.runs)}


def repeat(name: str, unit: str, times: int, run: Callable[[], float]) -> Figure:
    return Figure(name, unit, [run() for _ in range(times)])


async def repeat_async(
    name: str, unit: str, times: int, run: Callable[[], Awaitable[float]]
) -> Figure:
    return Figure(name, unit, [await run() for _ in range(times)])
