"""How fast this machine is, apart from ingestor: so that a figure with a fixed target
(CPU seconds per 10,000 messages, start-up in seconds, messages per second against the
SQS double) can be read beside the machine it was measured on.

- A fixed pure-Python workload (integer loop, dict and str work, as an interpreter-bound
  service does), its CPU time, at the start and at the end of the run: machines of the
  same kind differ by two times or more here, and one machine drifts while it runs.
- The import floor: a fresh interpreter importing the libraries a run imports (botocore,
  asyncpg, pydantic-settings, orjson, uvloop) and nothing of ingestor's, spawn to exit.
  No start-up of the service can be shorter. (A run on the direct SQS client does not
  import aiobotocore, nor aiohttp: only the `INGESTOR_SQS_CLIENT=botocore` fallback does.)
"""

from __future__ import annotations

import asyncio
import sys
import time

from benchmarks.e2e import ROOT

# The libraries a run imports (of the design's, README's "Design decisions", and botocore,
# which resolves the AWS settings), as the service imports them.
RUN_PACKAGES = "import botocore.session, asyncpg, pydantic_settings, orjson, uvloop"


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
    """Spawn-to-exit milliseconds of `python -c RUN_PACKAGES`, `runs` times."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", RUN_PACKAGES, cwd=str(ROOT)
        )
        if await process.wait() != 0:
            raise RuntimeError(f"{sys.executable} -c {RUN_PACKAGES!r} failed")
        times.append((time.perf_counter() - started) * 1000)
    return times
