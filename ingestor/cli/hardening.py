"""Process hardening at start-up: no core dumps.

A core dump holds the process's memory: the HMAC key, the database password, and in the
custody commands the vault's private key and opened values. It would land on a disk or
in a crash collector. RLIMIT_CORE=0 stops the kernel writing one; PR_SET_DUMPABLE=0 also
stops core handlers piped from /proc/sys/kernel/core_pattern and other processes of the
same user from reading this one's memory (ptrace, /proc/<pid>/mem).
"""

from __future__ import annotations

import contextlib
import ctypes
import sys

PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def disable_core_dumps() -> None:
    """Best effort on every platform; each step that is not available is skipped."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource  # noqa: PLC0415 - Unix only

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
