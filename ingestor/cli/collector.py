"""The cyclic garbage collector around a command's start and exit (`python -m ingestor`).

Start-up (the imports of pydantic, aiohttp, botocore and asyncpg, the settings) builds
about a hundred thousand objects that live as long as the process and frees almost
none of them. The collector, run every few hundred allocations, walks them again and
again for nothing: some 40 ms of CPU before a batch run's first receive. At the exit,
the interpreter's last collections walk all of them once more, only to free memory the
operating system takes back at once: 100 ms and more between the end of a drain and
the process's exit.

So the entry point pauses the collector before its imports, every command resumes it
when it starts its work (`run_async`), with what start-up built frozen (left out of
every later walk: the service's collections stay small too), and the exit freezes
whatever is left. (A command that never gets to `run_async`, `--help` or `keys
generate`, is over in a moment.) The start-up's few cyclic leftovers (a few thousand
objects, under a megabyte) stay for the life of the process. Reference counting frees
everything else as usual, and the exit still runs every atexit handler, flushes and
closes the log handlers, and joins threads: only the collector's walks are skipped.

While the service runs, messages are in flight for a fraction of a second each:
received, transformed, batched, committed, deleted. Each leaves a few containers the
collector tracks (its envelope, its outcome, the row), and reference counting frees them
all; none is part of a cycle. At the default threshold (a collection of the youngest
objects after every 700 allocations more than frees) the collector walked them some 170
times a second at 128 receivers against the SQS double, and every tenth walk went on
through the older ones: a sixth of the process's CPU, walks through all of them that
held the loop for up to 11 ms (45 ms without start-up's objects frozen), and receives
that came back late. So `resume` also raises that threshold to `YOUNG`: the same run
then collected nothing at all, and at 256 receivers a few times a second, each in about
a millisecond. Garbage in a cycle (rare here) is still found, after `YOUNG` allocations
rather than 700: 9 MB more at the peak in a loop that made nothing but cyclic garbage
(an exception kept with its traceback, and two objects pointing at each other, two
million times).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# Tracked allocations (less frees) between two collections of the youngest generation.
YOUNG = 50_000


class _State:
    paused = False  # by `pause`, not by someone else (a test, an embedding program)


def pause() -> None:
    """Before the imports: no collection until `resume`."""
    if gc.isenabled():
        gc.disable()
        _State.paused = True


def resume() -> None:
    """Collect again, without ever walking what exists now and seldom in the steady
    state (`YOUNG`); only if `pause` paused it."""
    if _State.paused:
        _State.paused = False
        _for_the_service()
        gc.enable()


def _for_the_service() -> None:
    gc.freeze()
    gc.set_threshold(YOUNG, *gc.get_threshold()[1:])


@contextlib.contextmanager
def as_in_the_service() -> Iterator[None]:
    """The collector as `resume` leaves it for the service, for a program that runs the
    pipeline in its own process (a benchmark); afterwards, its threshold as it was and
    nothing frozen."""
    before = gc.get_threshold()
    _for_the_service()
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def skip_final() -> None:
    """At the exit: the interpreter's last collections leave out everything alive now."""
    gc.freeze()
