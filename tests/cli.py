"""The CLI as a user or a scheduler runs it: a subprocess, its exit code and its output."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


async def ingestor(env: dict[str, str], *args: str, within: float = 180.0) -> Ran:
    """`python -m ingestor ARGS` with `env`, to its end (at most `within` seconds)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingestor", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()  # nothing a test starts outlives it
        await process.wait()
        raise
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


async def drain(env: dict[str, str], within: float = 180.0) -> tuple[int, str]:
    """`run --drain`: its exit code and its log (stderr)."""
    ran = await ingestor(env, "run", "--drain", within=within)
    return ran.code, ran.err
