"""The PII custody commands: `keys generate`, `reveal`, `forget`, `rekey`, `rejects list`,
`rejects replay`, `audit verify`. Each opens one connection, migrates if needed (as the
service does), and does its work with its audit row."""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingestor.custody.keys import (
    generate_key_pair,
    public_key_of,
    read_private_key,
    vault_key_id,
    write_private_key,
)
from ingestor.errors import ConfigError
from ingestor.keytext import weak_key_problem
from ingestor.settings import DEMO_HMAC_KEY, Settings
from ingestor.terminal import printable
from ingestor.transform.masking import mask_key_id

if TYPE_CHECKING:  # the commands' own modules are imported when one runs, not for `run`
    from ingestor.custody.audit import Request

Handler = Callable[[Settings, argparse.Namespace], int]


def add_commands(commands: Any) -> None:
    """Register the custody subcommands on the CLI's subparsers."""
    keys = commands.add_parser("keys", help="vault key pairs").add_subparsers(
        dest="keys_command", metavar="ACTION", required=True
    )
    generate = keys.add_parser("generate", help="write a new vault key pair")
    _private_key_flag(generate, "file to create (mode 0600) for the private key")
    reveal = commands.add_parser("reveal", help="print the values behind tokens (audited)")
    reveal.add_argument("tokens", nargs="+", metavar="TOKEN")
    _private_key_flag(reveal)
    _audit_flags(reveal, reason_required=True)
    forget = commands.add_parser("forget", help="erase values everywhere (audited)")
    forget.add_argument("tokens", nargs="*", metavar="TOKEN")
    forget.add_argument("--user-id", help="erase every value in this user's rows and rejects")
    _audit_flags(forget, reason_required=True)
    _add_rekey(commands)
    _add_rejects(commands)
    audit = commands.add_parser("audit", help="check the audit trail")
    audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True).add_parser(
        "verify", help="walk the audit trail's hash chain; exit 1 at a break"
    )


def _add_rekey(commands: Any) -> None:
    rekey = commands.add_parser("rekey", help="rotate the HMAC key over every table")
    _private_key_flag(rekey)
    rekey.add_argument(
        "--new-hmac-key-env",
        required=True,
        metavar="VAR",
        help="environment variable holding the new HMAC key (never on the command line)",
    )
    rekey.add_argument("--batch-size", type=_positive, default=10_000, help="vault rows per commit")
    rekey.add_argument(
        "--accept-unvaulted",
        action="store_true",
        help="rotate even though some rows have tokens with no vault entry (they keep "
        "tokens under the old key)",
    )
    _audit_flags(rekey, reason_required=False)


def _add_rejects(commands: Any) -> None:
    rejects = commands.add_parser("rejects", help="list or replay rejected messages")
    actions = rejects.add_subparsers(dest="rejects_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="rejects by reason")
    listing.add_argument("--reason", dest="reject_reason", help="only this reason code")
    replay = actions.add_parser("replay", help="run sealed rejects through today's rules")
    replay.add_argument("--reason", dest="reject_reason", help="only this reason code")
    _private_key_flag(replay)
    _actor_flag(replay)


def _positive(text: str) -> int:
    """An argparse type: an integer of at least 1 (a batch of 0 would rekey nothing)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _private_key_flag(parser: argparse.ArgumentParser, text: str = "") -> None:
    if text:  # one file to create
        parser.add_argument(
            "--private-key-file", type=Path, required=True, metavar="FILE", help=text
        )
        return
    parser.add_argument(
        "--private-key-file",
        type=Path,
        required=True,
        action="append",
        metavar="FILE",
        help="vault private key; repeat it for values sealed to an earlier key pair",
    )


def _opener(args: argparse.Namespace) -> Any:
    from ingestor.custody.vault import Opener  # noqa: PLC0415

    return Opener(*(read_private_key(path) for path in args.private_key_file))


def _checker(settings: Settings) -> Any:
    """What tells the loader's vault entries from forged ones: the masking key."""
    from ingestor.custody.vault import Checker  # noqa: PLC0415

    settings.require("hmac_key")
    return Checker(settings.key_bytes)


def _audit_flags(parser: argparse.ArgumentParser, *, reason_required: bool) -> None:
    parser.add_argument(
        "--reason",
        required=reason_required,
        default="HMAC key rotation",
        help="why (recorded in pii_reveal_audit; e.g. the ticket)",
    )
    _actor_flag(parser)


def _actor_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--actor",
        help="who you say you are (default: the OS user); recorded beside the database user",
    )


def _generate(settings: Settings, args: argparse.Namespace) -> int:
    private, public = generate_key_pair()
    key_id = vault_key_id(public)
    write_private_key(args.private_key_file, private, key_id)
    print(f"INGESTOR_VAULT_PUBLIC_KEY={base64.b64encode(public).decode()}")
    print(f"key id: {key_id}")
    print(f"private key written to {args.private_key_file} (mode 0600): keep it offline")
    return 0


def _request(args: argparse.Namespace, reason: str | None = None) -> Request:
    from ingestor.custody.audit import Request  # noqa: PLC0415

    try:
        return Request.of(reason or args.reason, args.actor)
    except ValueError as error:
        raise ConfigError("--reason", str(error)) from None


def _reveal(settings: Settings, args: argparse.Namespace) -> int:
    from ingestor.custody.reveal import reveal  # noqa: PLC0415

    opener = _opener(args)
    request = _request(args)
    checker = _checker(settings)
    results = _run(settings, lambda c: reveal(c, opener, checker, args.tokens, request), keyed=True)
    for item in results:
        if item.problem is None:
            print(f"{printable(item.token)}\t{item.field}\t{printable(item.value or '')}")
        else:
            print(f"{printable(item.token)}: {printable(item.problem)}", file=sys.stderr)
    return 0 if all(item.problem is None for item in results) else 1


def _forget(settings: Settings, args: argparse.Namespace) -> int:
    from ingestor.custody.erasure import forget  # noqa: PLC0415

    if bool(args.tokens) == (args.user_id is not None):
        raise ConfigError("forget", "give TOKENs or --user-id (one or the other)")
    settings.require("hmac_key")  # the ledger and the users' digests are keyed with it
    request = _request(args)
    key = settings.key_bytes
    erased = _run(
        settings, lambda c: forget(c, key, request, tokens=args.tokens, user_id=args.user_id)
    )
    print(
        f"erased {erased.tokens} tokens: {erased.vault_rows} vault rows deleted, "
        f"{erased.rows} rows and {erased.rejects} rejects given tombstones"
    )
    for line in _forget_notes(erased):
        print(line, file=sys.stderr)
    for token in erased.not_found:
        print(
            f"{printable(token)}: not found (not in the vault, a row or a reject)", file=sys.stderr
        )
    nothing = args.user_id is not None and not (erased.tokens or erased.rejects)
    if nothing:
        print("no row or reject of this user_id holds a value: nothing erased", file=sys.stderr)
    return 1 if erased.not_found or nothing else 0


def _forget_notes(erased: Any) -> list[str]:
    notes = []
    if erased.unvaulted:
        notes.append(
            f"{erased.unvaulted} of them had no vault entry (loaded while the vault was off): "
            "their rows and rejects hold tombstones now, and the vault had nothing to delete"
        )
    if erased.shared:
        notes.append(
            f"{erased.shared} of them are held by other users too: erased for this user only, "
            "their vault rows stay (forget TOKEN erases a value everywhere)"
        )
    return notes


def _rekey(settings: Settings, args: argparse.Namespace) -> int:
    from ingestor.custody.rekey import rekey  # noqa: PLC0415

    settings.require_production_key()
    checker = _checker(settings)  # the current key: it vouches for the entries moved
    new_key = _new_hmac_key(settings, args.new_hmac_key_env)
    opener = _opener(args)
    request = _request(args)
    options = {"batch_size": args.batch_size, "accept_unvaulted": args.accept_unvaulted}
    done = _run(
        settings,
        lambda c: rekey(c, opener, checker, new_key, request, **options),
        keyed=True,
        also=(mask_key_id(new_key),),  # a rotation already finished moved the record
    )
    print(f"rekeyed {done.values} values: {done.rows} rows, {done.rejects} rejects rewritten")
    if done.unvaulted_rows:
        print(
            f"{done.unvaulted_rows} rows hold tokens with no vault entry (loaded with the "
            "vault off): they keep tokens under the old key",
            file=sys.stderr,
        )
    print("now restart the service with the new INGESTOR_HMAC_KEY")
    if done.older_erasures:
        print(
            f"{done.older_erasures} erasures on record were made under an earlier key: a "
            "message from before them still in the queue or its DLQ keeps its tombstones in "
            "the tables if it comes back, but its values may be vaulted again, and the same "
            "values in a new message load under the new key (docs/pii-and-keys.md: limits)",
            file=sys.stderr,
        )
    if done.refused_entries:
        print(
            f"{done.refused_entries} vault entries do not match their tokens (sealed by "
            "someone with write access to pii_vault, or made with another masking key): "
            "they and their rows keep their old tokens (in pii_vault, the rows still "
            "under the old mask_key_id)",
            file=sys.stderr,
        )
        return 1
    return 0


def _new_hmac_key(settings: Settings, variable: str) -> bytes:
    """The new key, held to the same rules as INGESTOR_HMAC_KEY."""
    value = os.environ.get(variable, "").encode()
    if not value:
        raise ConfigError(variable, "must hold the new HMAC key (openssl rand -hex 32)")
    problem = weak_key_problem(value)
    if problem is None and value == DEMO_HMAC_KEY.encode() and not settings.allow_demo_key:
        problem = settings.demo_key_problem()
    if problem is not None:
        raise ConfigError(variable, problem)
    return value


def _rejects(settings: Settings, args: argparse.Namespace) -> int:
    if args.rejects_command == "list":
        return _list_rejects(settings, args.reject_reason)
    return _replay(settings, args)


def _list_rejects(settings: Settings, reason: str | None) -> int:
    from ingestor.custody.replay import summary  # noqa: PLC0415

    counts = _run(settings, lambda c: summary(c, reason))
    print(f"{'reason':<24} {'count':>8} {'replayable':>10}  last rejected")
    for item in counts:
        code = printable(item.reason_code)
        print(f"{code:<24} {item.count:>8} {item.replayable:>10}  {item.last:%F %T}")
    if not counts:
        print("no rejects")
    return 0


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from ingestor.custody.ledger import ErasureLedger  # noqa: PLC0415
    from ingestor.custody.replay import Replay, replay  # noqa: PLC0415
    from ingestor.custody.vault import Sealer, VaultingMasker  # noqa: PLC0415
    from ingestor.observe.hooks import LogHooks  # noqa: PLC0415
    from ingestor.pipeline.assembly import build_masker, open_pool  # noqa: PLC0415
    from ingestor.sink.postgres import PostgresSink  # noqa: PLC0415
    from ingestor.transform.transformer import Transformer  # noqa: PLC0415

    settings.require_production_key()
    private_key = read_private_key(args.private_key_file[0])
    opener = _opener(args)
    reason = args.reject_reason
    request = _request(args, f"replay of rejects ({reason or 'every reason'})")
    # Replay always seals: a message rejected again must keep its original body, and a row
    # it loads must have its values in the vault. Without INGESTOR_VAULT_PUBLIC_KEY set,
    # seal to the public half of the private key the rejects are opened with.
    masker = (
        build_masker(settings)
        if settings.vault_key is not None
        else VaultingMasker(
            settings.key_bytes, Sealer(public_key_of(private_key)), settings.vault_cache_size
        )
    )

    async def work(connection: Any) -> Any:
        async with open_pool(settings) as pool:
            sink = PostgresSink(pool, ErasureLedger(masker), LogHooks())
            tools = Replay(opener, Transformer(masker, settings.envelope), sink)
            return await replay(connection, tools, request, reason)

    total = _run(settings, work, keyed=True)
    print(f"replayed: loaded {total.inserted + total.replaced}, still rejected {total.rejected}")
    return 0


def _run(
    settings: Settings,
    work: Callable[[Any], Awaitable[Any]],
    *,
    keyed: bool = False,
    also: tuple[str, ...] = (),
) -> Any:
    """`work` on one connection, after migrating; `keyed`: only with the masking key the
    tables' tokens are made with (exit 2 otherwise)."""
    from ingestor.cli.runtime import run_async  # noqa: PLC0415
    from ingestor.custody import keyrecord  # noqa: PLC0415
    from ingestor.sink.postgres import connect, mapped_errors  # noqa: PLC0415
    from ingestor.sink.schema import migrate  # noqa: PLC0415

    settings.require("database_url")

    async def session() -> Any:
        connection = await connect(settings.dsn)  # no retry: a person is waiting
        try:
            async with mapped_errors():
                await migrate(connection, settings.partition_by)
                if keyed:
                    await keyrecord.verify(connection, mask_key_id(settings.key_bytes), *also)
                return await work(connection)
        finally:
            await connection.close()

    return run_async(session())


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    from ingestor.custody.audit import verify  # noqa: PLC0415

    chain = _run(settings, verify)
    print(f"audit chain intact: {chain.rows} rows, head {chain.head or '(empty)'}")
    return 0


HANDLERS: dict[str, Handler] = {
    "keys": _generate,
    "reveal": _reveal,
    "forget": _forget,
    "rekey": _rekey,
    "rejects": _rejects,
    "audit": _audit,
}
