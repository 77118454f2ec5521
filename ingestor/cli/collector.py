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
"""

from __future__ import annotations

import gc


class _State:
    paused = False  # by `pause`, not by someone else (a test, an embedding program)


def pause() -> None:
    """Before the imports: no collection until `resume`."""
    if gc.isenabled():
        gc.disable()
        _State.paused = True


def resume() -> None:
    """Collect again, without ever walking what exists now; only if `pause` paused it."""
    if _State.paused:
        _State.paused = False
        gc.freeze()
        gc.enable()


def skip_final() -> None:
    """At the exit: the interpreter's last collections leave out everything alive now."""
    gc.freeze()
