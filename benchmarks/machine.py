"""How fast this machine is, apart from ingestor: so that a figure with a fixed target
(CPU seconds per 10,000 messages, start-up in seconds, messages per second against the
SQS double) can be read beside the machine it was measured on.

- A fixed pure-Python workload (integer loop, dict and str work, as an interpreter-bound
  service does), its CPU time, at the start and at the end of the run: machines of the
  same kind differ by two times or more here, and one machine drifts while it runs.
- The import floor: a fresh interpreter importing the packages the design fixes
  (aiobotocore, asyncpg, pydantic-settings, orjson, uvloop) and nothing of ingestor's,
  spawn to exit. No start-up of the service can be shorter.
"""

from __future__ import annotations

import asyncio
import sys
import time

from benchmarks.e2e import ROOT

# The packages of the design (README's "Design decisions"), as the service imports them.
DESIGN_PACKAGES = "import aiobotocore.session, asyncpg, pydantic_settings, orjson, uvloop"


def reference_cpu_ms(rounds: int = 5) -> float:
    """CPU milliseconds of the fixed workload: the least of `rounds` passes."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        _workload()
        best = min(best, time.process_time() - started)
    return best * 1000


def _workload() -> int:
    counts: dict[str, int] = {}
    total = 0
    for number in range(200_000):
        total += number * 3 % 7
        key = f"k{number % 512}"
        counts[key] = counts.get(key, 0) + len(key)
    return total + len(counts)


async def import_floor_ms(runs: int) -> list[float]:
    """Spawn-to-exit milliseconds of `python -c DESIGN_PACKAGES`, `runs` times."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", DESIGN_PACKAGES, cwd=str(ROOT)
        )
        if await process.wait() != 0:
            raise RuntimeError(f"{sys.executable} -c {DESIGN_PACKAGES!r} failed")
        times.append((time.perf_counter() - started) * 1000)
    return times
