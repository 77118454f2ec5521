"""`python -m ingestor [run|migrate|check|demo|keys|reveal|forget|rekey|rejects]`.

Exit codes: 0 success; 1 a runtime failure that retrying cannot fix; 2 a bad setting
(one line naming the variable); 3 a drain that ended before the queue was empty (run it
again).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from ingestor import __version__
from ingestor.cli.custody import HANDLERS, add_commands
from ingestor.cli.hardening import disable_core_dumps
from ingestor.cli.runtime import faster_depth_sampling, run_async
from ingestor.errors import ConfigError, DrainIncomplete, IngestorError
from ingestor.observe.hooks import HookChain, LogHooks, Stats
from ingestor.observe.logs import configure
from ingestor.observe.progress import live_progress
from ingestor.settings import Settings, env_name, load_settings

log = logging.getLogger("ingestor")

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_INCOMPLETE = 0, 1, 2, 3


# The settings each command cannot do without: all of them are checked at once.
REQUIRED: dict[str, tuple[str, ...]] = {
    "run": ("queue_url", "database_url", "hmac_key"),
    "check": ("queue_url", "database_url", "hmac_key"),
    "migrate": ("database_url",),
}


def _flag_help(text: str, field: str) -> str:
    return f"{text} [env: {env_name(field)}]"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingestor",
        description="Load login events from SQS into PostgreSQL with ip and device_id masked. "
        "Settings come from INGESTOR_* variables (see README); flags override them.",
    )
    parser.add_argument("--version", action="version", version=f"ingestor {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run the service (the default command)")
    run.add_argument(
        "--drain",
        action="store_true",
        default=None,
        help=_flag_help("exit 0 once the queue is empty and everything is committed", "drain"),
    )
    migrate = commands.add_parser("migrate", help="create or upgrade the tables, then exit")
    migrate.add_argument(
        "--partition-by",
        choices=("none", "month"),
        default=None,
        help=_flag_help(
            "create a missing user_logins range-partitioned by month on create_date "
            "(an existing table is left as it is)",
            "partition_by",
        ),
    )
    commands.add_parser("check", help="verify settings, queue and database; exit 0 if all is well")
    demo = commands.add_parser(
        "demo", help="load synthetic events through embedded PostgreSQL and SQS servers"
    )
    demo.add_argument(
        "--events", type=int, default=None, help=_flag_help("events to seed", "demo_events")
    )
    demo.add_argument(
        "--seed", type=int, default=None, help=_flag_help("random seed of the events", "demo_seed")
    )
    add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    disable_core_dumps()  # before any key or opened value is in memory
    command = args.command or "run"
    overrides = {
        "drain": getattr(args, "drain", None),
        "demo_events": getattr(args, "events", None),
        "demo_seed": getattr(args, "seed", None),
        "partition_by": getattr(args, "partition_by", None),
    }
    try:
        settings = load_settings(REQUIRED.get(command, ()), **overrides)
        configure(settings.log_level, settings.log_format)
        if command in HANDLERS:
            return HANDLERS[command](settings, args)
        return COMMANDS[command](settings)
    except ConfigError as error:
        for line in error.lines:
            print(f"ingestor: configuration error: {line}", file=sys.stderr)
        return EXIT_CONFIG
    except IngestorError as error:
        log.error("stopped: %s", error, extra={"event": "fatal", "error": type(error).__name__})
        return EXIT_FAILURE


def _run(settings: Settings) -> int:
    from ingestor.pipeline.service import run_service  # noqa: PLC0415 - keeps --help fast

    settings.require("queue_url", "database_url", "hmac_key")
    settings.require_production_key()
    stats = Stats()
    live = live_progress(sys.stderr) if settings.drain else None
    if live is not None:  # a person is watching: sample the remaining depth more often
        settings = faster_depth_sampling(settings)
    hooks = HookChain(*(hook for hook in (live, LogHooks(), stats) if hook is not None))

    async def service() -> None:
        stop = _stop_on_signals()
        log.info(
            "starting: %s mode, %d receivers, %d writers, batches of %d",
            "drain" if settings.drain else "service",
            settings.receivers,
            settings.writers,
            settings.batch_size,
            extra={"event": "start"},
        )
        await run_service(settings, stop, hooks)

    try:
        run_async(service())
    except DrainIncomplete as error:
        log.warning("drain incomplete: %s", error, extra={"event": "incomplete"})
        return EXIT_INCOMPLETE
    if live is None:  # on a terminal, the live line's summary is the one
        log_summary(stats)
    return EXIT_OK


def log_summary(stats: Stats) -> None:
    """One line at the end of a run; in JSON, every count is a field of it."""
    log.info(
        "done: received %d, loaded %d (%d new, %d replaced a redelivered row), rejected %d",
        stats.received,
        stats.loaded,
        stats.inserted,
        stats.replaced,
        stats.rejected,
        extra={"event": "summary", **stats.counts()},
    )


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT; a second signal exits at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning(
                "second signal: exiting now; SQS redelivers what was not committed",
                extra={"event": "exit_now"},
            )
            raise SystemExit(EXIT_FAILURE)
        log.info(
            "%s received: finishing in-flight work",
            signal.Signals(signum).name,
            extra={"event": "stop_requested"},
        )
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    return stop


def _migrate(settings: Settings) -> int:
    from ingestor.pipeline.assembly import run_migrations  # noqa: PLC0415

    settings.require("database_url")
    applied = run_async(run_migrations(settings))
    print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    return EXIT_OK


def _check(settings: Settings) -> int:
    from ingestor.cli.check import run_checks  # noqa: PLC0415

    code, lines = run_async(run_checks(settings))
    print("\n".join(lines))
    return code


def _demo(settings: Settings) -> int:
    from ingestor.demo.run import run_demo  # noqa: PLC0415

    return run_demo(settings)


COMMANDS: dict[str, Callable[[Settings], int]] = {
    "run": _run,
    "migrate": _migrate,
    "check": _check,
    "demo": _demo,
}
