"""CPU seconds per 10,000 messages of the service draining a pre-filled fauxqs queue, in
steady state (from the first receive to the last delete, the process's own CPU), and a
profile of the same run; plus the SigV4 signing micro-benchmark (botocore's SigV4Auth vs
the direct client's signer). Issue 16, item 2: the SQS side's CPU per message.

    python -m benchmarks.sqs_cpu cpu [--messages 40000] [--runs 3] [--code CHECKOUT]
    python -m benchmarks.sqs_cpu profile [--messages 40000] [--out DIR] [--rate 250] [--code ...]
    python -m benchmarks.sqs_cpu signing [--requests 20000]

`cpu --code CHECKOUT` runs another revision's service too, alternating with this one's,
for a before/after on the same machine at the same time (a checkout of the other
revision: `git worktree add --detach /tmp/base REV`, or `git archive REV | tar -x -C
/tmp/base`); the service is this file, run with `ingestor` and `benchmarks` of CHECKOUT.

`profile` runs the service under py-spy (pip install py-spy; the dev extra has it),
writes DIR/profile.txt (collapsed stacks) and DIR/profile.speedscope.json, then once more
under an in-process sampler of CPU time (DIR/cpu.txt, see `CpuSampler`: py-spy samples
wall time), and prints each one's top self-time and cumulative entries, those of
ingestor/source/ listed apart. Each run fills a queue of its own, in a PostgreSQL and
fauxqs of its own (started and stopped here); the service runs in a process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import timeit
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from benchmarks import e2e
from benchmarks.fauxqs import fauxqs_server
from benchmarks.run_ingestor import Clock, cpu_seconds
from ingestor.cli.runtime import run_async
from ingestor.demo.embedded import embedded_postgres
from ingestor.pipeline.service import run_service
from ingestor.settings import load_settings

SCRIPT = Path(__file__).resolve()


class SteadyClock(Clock):
    """The CPU at the last delete, not at the end of the process: the drain's final empty
    long poll and the shutdown are not steady state. User and system CPU apart too."""

    cpu_at_last = 0.0
    system_at_first = system_at_last = 0.0

    def on_received(self, count: int) -> None:
        if self.first is None:
            self.system_at_first = system_seconds()
        super().on_received(count)

    def on_deleted(self, result: Any) -> None:
        super().on_deleted(result)
        self.cpu_at_last = cpu_seconds()
        self.system_at_last = system_seconds()


def system_seconds() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


class CpuSampler:
    """Stacks of the main thread sampled on CPU time (SIGPROF: the process's user and
    system CPU), written as collapsed stacks like py-spy's raw format. py-spy samples
    wall time: on a shared 2-core machine a process preempted right after a send() (which
    wakes fauxqs) is sampled in the send for as long as it waits for a core."""

    def __init__(self, hertz: int) -> None:
        self.hertz = hertz
        self.stacks: collections.Counter[str] = collections.Counter()

    def __enter__(self) -> CpuSampler:
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, 1 / self.hertz, 1 / self.hertz)
        return self

    def __exit__(self, *_: object) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)

    def _sample(self, _signal: int, frame: FrameType | None) -> None:
        names = []
        while frame is not None:
            code = frame.f_code
            names.append(f"{code.co_qualname} ({code.co_filename}:{frame.f_lineno})")
            frame = frame.f_back
        self.stacks[";".join(reversed(names))] += 1

    def write(self, path: Path) -> None:
        path.write_text("".join(f"{stack} {n}\n" for stack, n in self.stacks.items()))


def service(sample: Path | None, hertz: int) -> None:
    """The service in drain mode, settings from the environment; one JSON line."""
    clock = SteadyClock(keep_lags=False)
    sampler = CpuSampler(hertz)
    with sampler if sample else contextlib.nullcontext():
        run_async(run_service(load_settings(drain=True), asyncio.Event(), clock))
    if sample:
        sampler.write(sample)
    seconds = clock.last - (clock.first or clock.last)
    report = {
        "messages": clock.deleted,
        "seconds": seconds,
        "rate": clock.deleted / seconds if seconds else 0.0,
        "cpu_seconds": clock.cpu_at_last - clock.cpu_at_first,
        "system_seconds": clock.system_at_last - clock.system_at_first,
    }
    sys.stdout.write(orjson.dumps(report).decode() + "\n")


async def one_run(
    endpoint: str,
    dsn: str,
    messages: int,
    wrap: list[str] | None = None,
    extra: list[str] | None = None,
    code: Path = e2e.ROOT,
) -> dict[str, Any]:
    """One drain of a queue of `messages`, by the service of the checkout `code`."""
    url = await e2e.fill_queue(endpoint, messages)
    await e2e.fresh_tables(dsn)
    # This file by its path; `ingestor` and `benchmarks` from `code` (first on the path).
    script = [sys.executable, str(SCRIPT), "service", *(extra or [])]
    env = {**e2e.ingestor_env(endpoint, url, dsn), "PYTHONPATH": str(code)}
    result = await run_json([*(wrap or []), *script], env, code)
    rows, distinct, rejects = await e2e.table_counts(dsn)
    assert rows == distinct, "doubled"
    assert rows + rejects == messages, "lost"
    result["cpu_per_10k"] = result["cpu_seconds"] / result["messages"] * 10_000
    return result


async def run_json(command: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """The service's JSON line (py-spy prints its own lines after it)."""
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, cwd=str(cwd)
    )
    out, _ = await process.communicate()
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"{command} exited {process.returncode}: {out.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


async def cpu(endpoint: str, dsn: str, messages: int, runs: int, other: Path | None) -> None:
    """`runs` drains by this checkout's service; with `other`, as many by that checkout's,
    alternating (this, other, this, ...), so that both see the same machine."""
    codes = {"this checkout": e2e.ROOT, **({f"{other}": other} if other else {})}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in codes}
    for _ in range(runs):
        for name, code in codes.items():
            result = await one_run(endpoint, dsn, messages, code=code)
            print(
                f"  {name}: {result['messages']:,} messages, {result['rate']:,.0f} msg/s, "
                f"{result['cpu_seconds']:.2f} CPU s ({result['system_seconds']:.2f} system), "
                f"{result['cpu_per_10k']:.3f} CPU s per 10,000",
                flush=True,
            )
            results[name].append(result)
    for name, done in results.items():
        per_10k = [r["cpu_per_10k"] for r in done]
        rates = [r["rate"] for r in done]
        print(
            f"{name}: CPU s per 10,000 messages: median {statistics.median(per_10k):.3f} "
            f"(min {min(per_10k):.3f}, max {max(per_10k):.3f}; runs "
            f"{', '.join(f'{v:.3f}' for v in per_10k)}); "
            f"rate median {statistics.median(rates):,.0f} msg/s"
        )


async def profile(endpoint: str, dsn: str, messages: int, out: Path, rate: int, code: Path) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before the runs
    for form, name in (("raw", "profile.txt"), ("speedscope", "profile.speedscope.json")):
        wrap = [spy, "record", "--rate", str(rate), "--format", form, "-o", str(out / name)]
        result = await one_run(endpoint, dsn, messages, [*wrap, "--"], code=code)
        print(f"  py-spy {form}: {result['cpu_per_10k']:.3f} CPU s per 10,000 (under py-spy)")
    sampled = ["--sample", str(out / "cpu.txt"), "--rate", str(rate)]
    result = await one_run(endpoint, dsn, messages, extra=sampled, code=code)
    print(f"  CPU sampler: {result['cpu_per_10k']:.3f} CPU s per 10,000 (sampled)")
    print("\n== py-spy (wall time of active threads) ==")
    print_top(out / "profile.txt")
    print("\n== SIGPROF sampler (CPU time, main thread) ==")
    print_top(out / "cpu.txt")


def frame_name(frame: str) -> str:
    """'function (path/to/module.py:line)' -> 'function (module path)', line dropped."""
    function, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3.", "/ingestor/", "/benchmarks/"):
        if marker in path:
            tail = path.partition(marker)[2]
            path = tail if marker.startswith(("site", "/lib")) else marker[1:] + tail
            break
    return f"{function} ({path})"


def print_top(collapsed: Path, top: int = 25) -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "importlib._bootstrap" in stack:
            continue  # imports at start-up: not steady state
        frames = [frame_name(f) for f in stack.split(";")]
        samples = int(count)
        total += samples
        own[frames[-1]] += samples
        for name in set(frames):
            inclusive[name] += samples
    source = [n for n in inclusive if "ingestor/source/" in n]
    print(f"{total} samples")
    table("self time", own.most_common(top), total)
    table("cumulative", inclusive.most_common(top), total)
    table("cumulative, ingestor/source/", [(n, inclusive[n]) for n in source], total, top)


def table(title: str, rows: list[tuple[str, int]], total: int, top: int = 100) -> None:
    print(f"\n{title}:")
    for name, samples in sorted(rows, key=lambda r: -r[1])[:top]:
        print(f"  {samples / total:6.1%}  {name}")


def signing(requests: int) -> None:
    """µs per request: botocore's SigV4Auth as the wire client used it before (an
    AWSRequest per call), vs `sigv4.Signer`: a DeleteMessageBatch of 10 receipt handles,
    with a session token. Best of 5."""
    # Here, not at the top: `service` may run in a checkout from before the signer.
    from ingestor.source.sigv4 import Signer  # noqa: PLC0415
    from ingestor.source.sqs_wire import _STATIC_HEADERS  # noqa: PLC0415

    url, region = "https://sqs.eu-west-1.amazonaws.com/", "eu-west-1"
    queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/logins"
    handles = [f"AQEB{i:04d}" + "x+y/z=" * 60 for i in range(10)]
    entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
    body = orjson.dumps({"QueueUrl": queue, "Entries": entries})
    credentials = ReadOnlyCredentials("ASIAEXAMPLE", "secret/key+example", "token" * 80, None)
    target = "AmazonSQS.DeleteMessageBatch"

    def botocore_sign() -> None:
        request = AWSRequest(
            method="POST", url=url, data=body, headers={**_STATIC_HEADERS, "X-Amz-Target": target}
        )
        SigV4Auth(credentials, "sqs", region).add_auth(request)
        dict(request.headers.items())

    signer = Signer(url, region, "sqs", _STATIC_HEADERS)

    def signer_sign() -> None:
        signer.headers(target, body, credentials)

    for name, sign in (("botocore SigV4Auth", botocore_sign), ("sigv4.Signer", signer_sign)):
        best = min(timeit.repeat(sign, number=requests, repeat=5)) / requests
        print(f"  {name}: {best * 1e6:.1f} µs per request ({len(body)} bytes of body)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["cpu", "profile", "signing", "service"])
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "sqs_profile")
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--sample", type=Path, help="(service) sample CPU time into this file")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument(
        "--code",
        type=Path,
        help="(cpu) another checkout (git worktree or archive) whose service runs too, "
        "alternating with this one's; (profile) the checkout to profile",
    )
    args = parser.parse_args()
    if args.what == "service":
        return service(args.sample, args.rate)
    if args.what == "signing":
        return signing(args.requests)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    with embedded_postgres() as dsn, fauxqs_server() as endpoint:
        if args.what == "cpu":
            run_async(cpu(endpoint, dsn, args.messages, args.runs, args.code))
        else:
            code = args.code or e2e.ROOT
            run_async(profile(endpoint, dsn, args.messages, args.out, args.rate, code))
    return None


if __name__ == "__main__":
    main()
