"""`make bench` / `make bench-quick`: every figure side by side in one run, written to
benchmarks/results/latest.{json,md,png}.

    python -m benchmarks.bench [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks import e2e, machine, partitions, simulated, stages, startup, tuning
from benchmarks.fauxqs import fauxqs_server
from benchmarks.measure import Figure
from ingestor.cli.runtime import run_async
from ingestor.demo.embedded import embedded_postgres
from ingestor.settings import Settings
from ingestor.sink.schema import migrate

RESULTS = Path(__file__).resolve().parent / "results"
# The service's defaults: the end-to-end runs (service, bare loop, floor) use them.
RECEIVERS = int(Settings.model_fields["receivers"].default)
WRITERS = int(Settings.model_fields["writers"].default)
RTT = 0.020  # the SQS double's round trip
SIGNING = "floor, of which signing deletes"


@dataclass(frozen=True)
class Sizes:
    e2e_messages: int
    e2e_runs: int
    seed_messages: int
    memory_depths: tuple[int, int]
    memory_receivers: tuple[int, int]  # at the larger depth
    latency_rate: int
    latency_seconds: float
    receivers: tuple[int, ...]
    simulated_seconds: float
    simulated_runs: int
    remote_receivers: int  # one of `receivers`: its loopback figure is the reference
    remote_runs: tuple[tuple[float, int], ...]  # (delay each way in ms, writers)
    startup_runs: int
    transform_records: int
    writer_rows: int
    stage_runs: int
    tuning_messages: int
    tuning_runs: int
    flush_intervals: tuple[float, ...]
    tuning_variants: int


FULL = Sizes(
    20_000,
    3,
    1_000,
    (20_000, 200_000),
    (RECEIVERS, 256),
    500,
    20,
    (1, 4, 16, 64, 128, 256),
    6.0,
    3,
    64,
    ((0, 4), (2, 4), (10, 2), (10, 4), (10, 8)),
    3,
    50_000,
    100_000,
    3,
    # A drain ends with its last partial batch waiting for the flush interval (0.5 s):
    # 20,000 messages took 0.5-1.1 s here, by whether that batch happened to fill. At
    # 100,000 that wait weighs a fifth as much on the settings' comparison.
    100_000,
    2,
    (0.25, 0.5, 1.0),
    len(tuning.VARIANTS),
)
QUICK = Sizes(
    3_000,
    1,
    200,
    (2_000, 20_000),
    (RECEIVERS, 256),
    200,
    5,
    (1, 64, 256),
    0.5,
    1,
    64,
    ((0, 4), (10, 4)),
    1,
    10_000,
    20_000,
    1,
    2_000,
    1,
    (0.5,),
    2,
)


@dataclass
class Report:
    quick: bool
    groups: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def group(self, title: str, figures: list[Figure]) -> None:
        self.groups.append({"title": title, "figures": [f.as_dict() for f in figures]})

    def check(self, what: str, value: float, target: str, met: bool, note: str = "") -> None:
        self.checks.append(
            {"what": what, "value": value, "target": target, "met": met, "note": note}
        )


def platform_line() -> str:
    return f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"


async def end_to_end(report: Report, endpoint: str, dsn: str, sizes: Sizes) -> None:
    """The service, the bare aiobotocore loop and the floor, each draining the same
    pre-filled queue with the service's default receivers, run in turns (one of each,
    then again) so that the machine's noise spreads over all three; then the seed."""
    count, runs = sizes.e2e_messages, {"ingestor": [], "bare": [], "floor": []}
    for _ in range(sizes.e2e_runs):
        runs["ingestor"].append(await e2e.ingestor_run(endpoint, dsn, count))
        runs["bare"].append(await e2e.bare_run(endpoint, count, RECEIVERS))
        runs["floor"].append(await e2e.floor_run(endpoint, count, RECEIVERS))
    seed = await e2e.seed_run(endpoint, dsn, sizes.seed_messages)
    figures = [
        Figure(f"ingestor ({RECEIVERS} receivers)", "msg/s", rates(runs["ingestor"])),
        Figure("bare aiobotocore receive + delete", "msg/s", rates(runs["bare"])),
        Figure("floor: bare aiohttp, pre-signed receives", "msg/s", rates(runs["floor"])),
        Figure("seed approach (boto3, pandas.to_sql)", "msg/s", [seed["rate"]]),
    ]
    report.group(f"End to end ({count:,} queued messages, fauxqs on loopback)", figures)
    ratio_bare = figures[0].median / figures[1].median
    ratio_seed = figures[0].median / figures[3].median
    report.check("end to end / bare SQS client", ratio_bare, ">= 0.85", ratio_bare >= 0.85)
    report.check("end to end / seed approach", ratio_seed, ">= 20", ratio_seed >= 20)
    cpu = {name: per_10k(results) for name, results in runs.items()}
    cpu["seed"] = per_10k([seed])
    cpu[SIGNING] = per_10k(runs["floor"], "signing_cpu_seconds")
    report.extra["cpu_seconds_per_10k"] = cpu
    report.extra["end_to_end_runs"] = {**runs, "seed": seed}
    report.group(
        "CPU per 10,000 messages, first receive to last delete (each process alone)",
        [Figure(name, "CPU ms", [per_10k([r]) * 1000 for r in runs[name]]) for name in runs],
    )


def rates(runs: list[dict[str, Any]]) -> list[float]:
    return [r["rate"] for r in runs]


def per_10k(runs: list[dict[str, Any]], key: str = "cpu_seconds") -> float:
    return sum(r[key] for r in runs) / sum(r["messages"] for r in runs) * 10_000


async def stage_figures(report: Report, dsn: str, sizes: Sizes) -> None:
    transform = stages.transform_figures(sizes.transform_records, sizes.stage_runs)
    report.group("Transform stage (one core)", transform)
    report.check(
        "transform stage",
        transform[0].median,
        ">= 100,000 records/s",
        transform[0].median >= 100_000,
    )
    writer = await stages.writer_figures(
        dsn, [500, 2_000, 10_000], sizes.writer_rows, sizes.stage_runs
    )
    writer.append(
        await stages.erased_writer_figure(dsn, 1_000, sizes.writer_rows, sizes.stage_runs)
    )
    report.group("Writer (staging + merge into indexed user_logins) vs bare COPY", writer)
    at_10k = next(f for f in writer if f.name == "writer, batches of 10,000")
    report.check(
        "writer, batches of 10,000", at_10k.median, ">= 100,000 rows/s", at_10k.median >= 100_000
    )
    await partitioned_writer(report, dsn, sizes)
    batch = Settings.model_fields["batch_size"].default
    report.extra["stage_cpu_seconds_per_10k"] = {
        "transform": figure(transform, "transform stage, CPU per 10,000").median / 1000,
        "writer": figure(writer, f"writer, batches of {batch:,}, CPU per 10,000").median / 1000,
        "writer_batch_size": batch,
    }


async def partitioned_writer(report: Report, dsn: str, sizes: Sizes) -> None:
    """The writer into 24 monthly partitions beside the plain table (`partitions.py`)."""
    figures = await partitions.partition_figures(dsn, sizes.writer_rows, sizes.stage_runs)
    report.group(f"Writer: {partitions.PARTITIONED} vs the plain table", figures)
    new_rows = partitions.KINDS[0][0]
    plain = figure(figures, f"{new_rows}: {partitions.PLAIN}").median
    split = figure(figures, f"{new_rows}: {partitions.PARTITIONED}").median
    report.check(
        f"writer into {partitions.PARTITIONED} / plain table, new rows",
        split / plain,
        "reported",
        True,
        f"{split:,.0f} vs {plain:,.0f} rows/s",
    )


def figure(figures: list[Figure], name: str) -> Figure:
    return next(f for f in figures if f.name == name)


def cpu_targets(report: Report) -> None:
    """The service's CPU per 10,000 messages against the floor plus the stages' own costs,
    and against a fixed budget."""
    cpu, stage = report.extra["cpu_seconds_per_10k"], report.extra["stage_cpu_seconds_per_10k"]
    service, floor = cpu["ingestor"], cpu["floor"]
    budget = 1.3 * floor + stage["transform"] + stage["writer"]
    report.check(
        "service CPU s per 10,000 messages / (1.3 x floor + transform + writer)",
        service / budget,
        "<= 1",
        service <= budget,
        f"{service:.3f} s against 1.3 x {floor:.3f} + {stage['transform']:.3f} + "
        f"{stage['writer']:.3f} = {budget:.3f} s (stages from their benchmarks: "
        f"transform, writer at batches of {stage['writer_batch_size']:,})",
    )
    report.check(
        "service CPU s per 10,000 messages",
        service,
        "<= 0.45 s",
        service <= 0.45,
        f"floor {floor:.3f} s (of which signing deletes {cpu[SIGNING]:.3f}), "
        f"bare aiobotocore loop {cpu['bare']:.3f} s",
    )


async def batch_runs(report: Report, endpoint: str, dsn: str, sizes: Sizes) -> None:
    """The real `python -m ingestor run --drain` on an empty queue: start-up, and the
    end of a drain; and what the command's imports cost."""
    startup.compile_bytecode()
    runs = [await startup.batch_run(endpoint, dsn) for _ in range(sizes.startup_runs)]
    first_receive = Figure(
        "process start to first receive", "ms", [r["startup_seconds"] * 1000 for r in runs]
    )
    over = Figure(
        "run --drain of an empty queue, over the drain wait",
        "ms",
        [r["over_drain_wait_seconds"] * 1000 for r in runs],
    )
    floor = Figure(
        "import floor: the libraries a run imports, alone, spawn to exit",
        "ms",
        await machine.import_floor_ms(sizes.startup_runs),
    )
    report.group(
        "Batch run: the real command line (`python -m ingestor run --drain`)",
        [first_receive, over, floor],
    )
    report.check(
        "process start to first receive (s)",
        first_receive.median / 1000,
        "<= 0.5 s",
        first_receive.median <= 500,
        f"the import floor ({machine.RUN_PACKAGES.removeprefix('import ')}, spawn to "
        f"exit) is {floor.median:.0f} ms of it on this machine",
    )
    report.check(
        "run --drain of an empty queue, over the drain wait (s)",
        over.median / 1000,
        "<= 0.5 s",
        over.median <= 500,
        f"wall {statistics.median(r['wall_seconds'] for r in runs):.2f} s, drain wait "
        f"{runs[0]['drain_wait_seconds']:.0f} s: start-up to the first receive, then "
        f"{statistics.median(r['end_seconds'] for r in runs) * 1000:.0f} ms from the end of "
        "the wait to the exit",
    )
    report.extra["batch_runs"] = runs
    report.extra["import_time"] = [
        await startup.import_times(startup.HELP),
        await startup.import_times(startup.RUN),
    ]


UP_TO_BOUND = 128  # receivers that must reach 90% of the bound whatever the CPU


async def simulated_sqs(report: Report, dsn: str, sizes: Sizes) -> None:
    rows = await simulated.simulated_figures(
        dsn, list(sizes.receivers), RTT, sizes.simulated_seconds, sizes.simulated_runs
    )
    report.group(f"Simulated SQS, {RTT * 1000:.0f} ms round trip", [row.figure for row in rows])
    report.extra["simulated_bound"] = {str(row.receivers): row.bound for row in rows}
    report.extra["simulated_cpu_share"] = {str(row.receivers): row.cpu_share for row in rows}
    report.extra["simulated_loopback"] = {str(row.receivers): row.figure.median for row in rows}
    for row in rows:
        share = row.figure.median / row.bound
        note = f"{row.figure.median:,.0f} of {row.bound:,.0f} msg/s, CPU {row.cpu_share:.0%}"
        # Issue 16: 90% of the bound up to 128 receivers; past them, 90% of the bound
        # until one core saturates (a saturated core is then the limit, not the service).
        beyond = row.receivers > UP_TO_BOUND
        report.check(
            f"SQS double 20 ms, {row.receivers} receivers / (receivers x 10 / RTT)",
            share,
            ">= 0.90 or one core saturated" if beyond else ">= 0.90",
            share >= 0.90 or (beyond and row.saturated),
            note + (" (one core saturated)" if row.saturated else ""),
        )
    saturated = [row.receivers for row in rows if row.saturated]
    report.extra["simulated_saturates_at"] = saturated[0] if saturated else None
    await saturation(report, dsn, sizes)


async def saturation(report: Report, dsn: str, sizes: Sizes) -> None:
    """The most receivers again with 4 times the default writers (each writer keeps its
    own deletes in flight, so 4 times the delete calls at once): where the process's one
    core, not the deletes, is the limit. No target: it says where one core saturates."""
    receivers, writers = max(sizes.receivers), 4 * WRITERS
    runs = [
        await simulated.drain_rate(dsn, receivers, RTT, sizes.simulated_seconds, writers)
        for _ in range(sizes.simulated_runs)
    ]
    name = f"SQS double 20 ms, {receivers} receivers, {writers} writers"
    report.group("Simulated SQS: more writers", [Figure(name, "msg/s", [r for r, _ in runs])])
    report.extra["saturation"] = {
        "receivers": receivers,
        "writers": writers,
        "rate": statistics.median(r for r, _ in runs),
        "cpu_share": statistics.median(c for _, c in runs),
    }


async def remote_database(report: Report, dsn: str, sizes: Sizes) -> None:
    """The double's figure with the database behind the delaying proxy. The reference is
    the proxy at 0 ms (same run, same writers): only the delay differs, the proxy's own
    CPU (on the same 2 cores) is in both. The direct figure (no proxy) is in the note."""
    receivers = sizes.remote_receivers
    rows = await simulated.remote_figures(
        dsn, receivers, RTT, sizes.simulated_seconds, sizes.simulated_runs, sizes.remote_runs
    )
    report.group(
        f"Database not on loopback: SQS double 20 ms, {receivers} receivers, through a proxy",
        [row.figure for row in rows],
    )
    direct = report.extra["simulated_loopback"][str(receivers)]
    reference = next(r for r in rows if r.delay_ms == 0 and r.writers == WRITERS).figure.median
    for row in rows:
        if row.writers != WRITERS or row.delay_ms == 0:
            continue
        share = row.figure.median / reference
        report.check(
            f"database +{row.delay_ms:g} ms each way / +0 ms ({receivers} receivers)",
            share,
            ">= 0.90",
            share >= 0.90,
            f"{row.figure.median:,.0f} vs {reference:,.0f} msg/s through the proxy at 0 ms "
            f"({row.figure.median / direct:.0%} of {direct:,.0f} without the proxy), "
            f"CPU {row.cpu_share:.0%}",
        )
    slowest = max(row.delay_ms for row in rows)
    best = max((row for row in rows if row.delay_ms == slowest), key=lambda r: r.figure.median)
    report.extra["remote_best_writers"] = {
        "delay_ms": slowest,
        "writers": best.writers,
        "rate": best.figure.median,
        "of_reference": best.figure.median / reference,
    }


async def latency_memory_scale(report: Report, endpoint: str, dsn: str, sizes: Sizes) -> None:
    latency = await e2e.latency_run(endpoint, dsn, sizes.latency_rate, sizes.latency_seconds)
    report.extra["latency"] = latency
    await memory(report, endpoint, dsn, sizes)
    scale = [await e2e.scale_out_run(endpoint, dsn, sizes.e2e_messages, n) for n in (1, 2)]
    report.extra["scale_out"] = scale
    report.group(
        f"Scale out ({os.cpu_count()} cores)",
        [Figure(f"{r['processes']} process(es)", "msg/s", [r["rate"]]) for r in scale],
    )
    report.check(
        "scale out: lost + doubled",
        sum(r["lost"] + r["doubled"] for r in scale),
        "0",
        all(r["lost"] == 0 == r["doubled"] for r in scale),
    )


async def memory(report: Report, endpoint: str, dsn: str, sizes: Sizes) -> None:
    """Peak RSS of the service by queue depth (default receivers), and by receivers at the
    larger depth."""
    (shallow, deep), (few, many) = sizes.memory_depths, sizes.memory_receivers
    small = await e2e.ingestor_run(endpoint, dsn, shallow)
    large = await e2e.ingestor_run(endpoint, dsn, deep)
    wide = await e2e.ingestor_run(endpoint, dsn, deep, receivers=str(many))
    report.extra["memory"] = {
        f"{shallow:,} queued, {few} receivers": small["max_rss_mb"],
        f"{deep:,} queued, {few} receivers": large["max_rss_mb"],
        f"{deep:,} queued, {many} receivers": wide["max_rss_mb"],
    }
    growth = large["max_rss_mb"] / small["max_rss_mb"] - 1
    report.check(
        f"peak RSS growth, {shallow:,} -> {deep:,} queued",
        growth,
        "< 0.20",
        growth < 0.20,
        f"{small['max_rss_mb']:.0f} MB -> {large['max_rss_mb']:.0f} MB",
    )
    growth = wide["max_rss_mb"] / large["max_rss_mb"] - 1
    report.check(
        f"peak RSS growth, {few} -> {many} receivers, {deep:,} queued",
        growth,
        "<= 0.20",
        growth <= 0.20,
        f"{large['max_rss_mb']:.0f} MB -> {wide['max_rss_mb']:.0f} MB "
        f"({wide['rate']:,.0f} msg/s at {many} receivers)",
    )


async def defaults(report: Report, endpoint: str, dsn: str, sizes: Sizes) -> None:
    """One setting changed at a time around the defaults; commit latency by flush interval."""
    rates, memory = await tuning.variant_figures(
        endpoint, dsn, sizes.tuning_messages, sizes.tuning_runs, sizes.tuning_variants
    )
    report.group(f"Defaults: one setting changed ({sizes.tuning_messages:,} queued)", rates)
    report.group("Defaults: peak RSS of the same runs", memory)
    report.extra["flush_latency"] = await tuning.flush_latency(
        endpoint, dsn, sizes.latency_rate, sizes.latency_seconds, sizes.flush_intervals
    )


async def run(sizes: Sizes, quick: bool, dsn: str, endpoint: str) -> Report:
    report = Report(quick)
    started = machine.reference_cpu_ms()
    connection = await asyncpg.connect(dsn)
    await migrate(connection)
    await connection.close()
    await end_to_end(report, endpoint, dsn, sizes)
    await stage_figures(report, dsn, sizes)
    cpu_targets(report)
    await batch_runs(report, endpoint, dsn, sizes)
    await simulated_sqs(report, dsn, sizes)
    await remote_database(report, dsn, sizes)
    await latency_memory_scale(report, endpoint, dsn, sizes)
    await defaults(report, endpoint, dsn, sizes)
    report.extra["reference_cpu_ms"] = {"start": started, "end": machine.reference_cpu_ms()}
    return report


def previous_reference(path: Path) -> float | None:
    """The reference workload's CPU at the end of the run that wrote `path` before."""
    try:
        return float(json.loads(path.read_text())["reference_cpu_ms"]["end"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no earlier run, or one from before the reference was measured


def reference_line(extra: dict[str, Any]) -> str:
    """How fast the machine was: fixed targets depend on it (`machine.py`)."""
    reference = extra["reference_cpu_ms"]
    line = (
        f"Machine: a fixed pure-Python workload took {reference['start']:.0f} ms of CPU at "
        f"the start of this run and {reference['end']:.0f} ms at its end"
    )
    previous = extra.get("previous_reference_cpu_ms")
    if previous:
        line += f" ({previous:.0f} ms at the end of the previous run)"
    return line + ": a slower machine gives proportionally worse fixed-target figures."


def markdown(report: Report, seconds: float) -> str:
    lines = [
        f"# Benchmark results ({'quick' if report.quick else 'full'} run, {platform_line()}, "
        f"{seconds:.0f} s)",
        "",
        reference_line(report.extra),
        "",
        "| figure | median | min | max | unit |",
        "|---|---|---|---|---|",
    ]
    for group in report.groups:
        lines.append(f"| **{group['title']}** | | | | |")
        lines += [
            f"| {f['name']} | {f['median']:,.0f} | {f['min']:,.0f} | {f['max']:,.0f} "
            f"| {f['unit']} |"
            for f in group["figures"]
        ]
    lines += ["", "| target | measured | target | met | note |", "|---|---|---|---|---|"]
    lines += [
        f"| {c['what']} | {c['value']:,.3g} | {c['target']} "
        f"| {'yes' if c['met'] else 'NO'} | {c['note']} |"
        for c in report.checks
    ]
    return "\n".join(lines + extra_lines(report.extra)) + "\n"


def extra_lines(extra: dict[str, Any]) -> list[str]:
    lines = [""]
    if cpu := extra.get("cpu_seconds_per_10k"):
        each = ", ".join(f"{k} {v:.3f}" for k, v in cpu.items())
        lines.append(f"CPU seconds per 10,000 messages, first receive to last delete: {each}")
    if stage := extra.get("stage_cpu_seconds_per_10k"):
        lines.append(
            f"Stages' own CPU seconds per 10,000 (their benchmarks): transform "
            f"{stage['transform']:.3f}, writer at batches of "
            f"{stage['writer_batch_size']:,} {stage['writer']:.3f}"
        )
    if "simulated_cpu_share" in extra:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in extra["simulated_cpu_share"].items())
        at = extra.get("simulated_saturates_at")
        where = f"from {at} receivers" if at else "at none of them"
        lines.append(
            f"SQS double, process CPU share by receivers: {shares}; one core saturated {where}"
        )
    if more := extra.get("saturation"):
        lines.append(
            f"SQS double, {more['receivers']} receivers with {more['writers']} writers: "
            f"{more['rate']:,.0f} msg/s, process CPU {more['cpu_share']:.0%}"
        )
    if best := extra.get("remote_best_writers"):
        lines.append(
            f"Database +{best['delay_ms']:g} ms each way: best INGESTOR_WRITERS="
            f"{best['writers']} ({best['rate']:,.0f} msg/s)"
        )
    if memory := extra.get("memory"):
        lines.append(
            "Peak RSS (MB) by queued messages and receivers: "
            + ", ".join(f"{k}: {v:.0f}" for k, v in memory.items())
        )
    return lines + latency_lines(extra) + import_lines(extra)


def latency_lines(extra: dict[str, Any]) -> list[str]:
    lines = []
    if "latency" in extra:
        lat = extra["latency"]
        lines += [
            f"Latency SentTimestamp -> commit at {lat['offered']} msg/s offered: "
            f"p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms ({lat['messages']:,} messages)"
        ]
    lines += [
        f"Latency at {f['offered']} msg/s with INGESTOR_FLUSH_INTERVAL={f['flush_interval']}: "
        f"p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms"
        for f in extra.get("flush_latency", [])
    ]
    return lines


def import_lines(extra: dict[str, Any]) -> list[str]:
    lines = []
    for imports in extra.get("import_time", []):
        lines += [
            "",
            f"`python -X importtime {imports['command']}`: {imports['total_ms']:.0f} ms of "
            "imports; the largest by cumulative time (depth 0: imported by the command itself):",
            "",
            "| module | cumulative ms | depth |",
            "|---|---|---|",
            *(
                f"| {r['module']} | {r['cumulative_ms']:.1f} | {r['depth']} |"
                for r in imports["top"]
            ),
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: checks the benchmarks run"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    with embedded_postgres() as dsn, fauxqs_server() as endpoint:
        # On uvloop when installed, as the service runs: loop latency is part of the figures.
        report = run_async(run(QUICK if args.quick else FULL, args.quick, dsn, endpoint))
    seconds = time.perf_counter() - started
    RESULTS.mkdir(exist_ok=True)
    name = "quick" if args.quick else "latest"
    report.extra["previous_reference_cpu_ms"] = previous_reference(RESULTS / f"{name}.json")
    payload = {
        "machine": platform_line(),
        "quick": report.quick,
        "seconds": seconds,
        "groups": report.groups,
        "checks": report.checks,
        **report.extra,
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown(report, seconds))
    if e2e.SEED_PYTHON.exists():
        subprocess.run(
            [
                str(e2e.SEED_PYTHON),
                str(Path(__file__).parent / "chart.py"),
                str(RESULTS / f"{name}.json"),
            ],
            check=True,
        )
    print((RESULTS / f"{name}.md").read_text())


if __name__ == "__main__":
    main()
