"""`make bench` / `make bench-quick`: every figure side by side in one run, written to
benchmarks/results/latest.{json,md,png}.

    python -m benchmarks.bench [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks import e2e, simulated, stages, tuning
from benchmarks.fauxqs import fauxqs_server
from benchmarks.measure import Figure
from ingestor.cli.runtime import run_async
from ingestor.demo.embedded import embedded_postgres
from ingestor.sink.schema import migrate

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Sizes:
    e2e_messages: int
    e2e_runs: int
    seed_messages: int
    memory_depths: tuple[int, int]
    latency_rate: int
    latency_seconds: float
    receivers: tuple[int, ...]
    simulated_seconds: float
    transform_records: int
    writer_rows: int
    stage_runs: int
    tuning_messages: int
    tuning_runs: int
    flush_intervals: tuple[float, ...]
    tuning_variants: int


FULL = Sizes(
    20_000, 3, 1_000, (20_000, 200_000), 500, 20, (1, 4, 16, 64), 6.0, 50_000, 100_000, 3,
    20_000, 2, (0.25, 0.5, 1.0), len(tuning.VARIANTS),
)  # fmt: skip
QUICK = Sizes(
    3_000, 1, 200, (2_000, 20_000), 200, 5, (1, 4, 16), 0.5, 10_000, 20_000, 1,
    2_000, 1, (0.5,), 2,
)  # fmt: skip


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


def machine() -> str:
    return f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"


async def end_to_end(report: Report, endpoint: str, dsn: str, sizes: Sizes) -> None:
    receivers = 8
    ingestor = [
        await e2e.ingestor_run(endpoint, dsn, sizes.e2e_messages, receivers=str(receivers))
        for _ in range(sizes.e2e_runs)
    ]
    bare = [
        await e2e.bare_run(endpoint, sizes.e2e_messages, receivers) for _ in range(sizes.e2e_runs)
    ]
    seed = await e2e.seed_run(endpoint, dsn, sizes.seed_messages)
    figures = [
        Figure("ingestor", "msg/s", [r["rate"] for r in ingestor]),
        Figure("bare aiobotocore receive + delete", "msg/s", [r["rate"] for r in bare]),
        Figure("seed approach (boto3, pandas.to_sql)", "msg/s", [seed["rate"]]),
    ]
    report.group(
        f"End to end ({sizes.e2e_messages:,} queued messages, fauxqs on loopback)", figures
    )
    ratio_bare = figures[0].median / figures[1].median
    ratio_seed = figures[0].median / figures[2].median
    report.check("end to end / bare SQS client", ratio_bare, ">= 0.85", ratio_bare >= 0.85)
    report.check("end to end / seed approach", ratio_seed, ">= 20", ratio_seed >= 20)
    cpu = {
        "ingestor": per_10k(ingestor),
        "bare": per_10k(bare),
        "seed": per_10k([seed]),
    }
    report.extra["cpu_seconds_per_10k"] = cpu
    report.extra["end_to_end_runs"] = {"ingestor": ingestor, "bare": bare, "seed": seed}


def per_10k(runs: list[dict[str, Any]]) -> float:
    return sum(r["cpu_seconds"] for r in runs) / sum(r["messages"] for r in runs) * 10_000


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


async def simulated_sqs(report: Report, dsn: str, sizes: Sizes) -> None:
    rows = await simulated.simulated_figures(
        dsn, list(sizes.receivers), 0.020, sizes.simulated_seconds, 1 if sizes is QUICK else 3
    )
    report.group("Simulated SQS, 20 ms round trip", [row.figure for row in rows])
    report.extra["simulated_bound"] = {str(row.receivers): row.bound for row in rows}
    report.extra["simulated_cpu_share"] = {str(row.receivers): row.cpu_share for row in rows}
    for row in rows:
        share = row.figure.median / row.bound
        note = f"{row.figure.median:,.0f} of {row.bound:,.0f} msg/s, CPU {row.cpu_share:.0%}"
        report.check(
            f"SQS double 20 ms, {row.receivers} receivers / (receivers x 10 / RTT)",
            share,
            ">= 0.80 until one core saturates",
            share >= 0.80 or row.saturated,
            note + (" (one core saturated: the bound no longer applies)" if row.saturated else ""),
        )


async def latency_memory_scale(report: Report, endpoint: str, dsn: str, sizes: Sizes) -> None:
    latency = await e2e.latency_run(endpoint, dsn, sizes.latency_rate, sizes.latency_seconds)
    report.extra["latency"] = latency
    small = await e2e.ingestor_run(endpoint, dsn, sizes.memory_depths[0])
    large = await e2e.ingestor_run(endpoint, dsn, sizes.memory_depths[1])
    report.extra["memory"] = {
        str(sizes.memory_depths[0]): small["max_rss_mb"],
        str(sizes.memory_depths[1]): large["max_rss_mb"],
    }
    growth = large["max_rss_mb"] / small["max_rss_mb"] - 1
    report.check(
        f"peak RSS growth, {sizes.memory_depths[0]:,} -> {sizes.memory_depths[1]:,} queued",
        growth,
        "< 0.20",
        growth < 0.20,
        f"{small['max_rss_mb']:.0f} MB -> {large['max_rss_mb']:.0f} MB",
    )
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
    connection = await asyncpg.connect(dsn)
    await migrate(connection)
    await connection.close()
    await end_to_end(report, endpoint, dsn, sizes)
    await stage_figures(report, dsn, sizes)
    await simulated_sqs(report, dsn, sizes)
    await latency_memory_scale(report, endpoint, dsn, sizes)
    await defaults(report, endpoint, dsn, sizes)
    return report


def markdown(report: Report, seconds: float) -> str:
    lines = [
        f"# Benchmark results ({'quick' if report.quick else 'full'} run, {machine()}, "
        f"{seconds:.0f} s)",
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
        f"| {c['what']} | {c['value']:,.2f} | {c['target']} "
        f"| {'yes' if c['met'] else 'NO'} | {c['note']} |"
        for c in report.checks
    ]
    extra = report.extra
    if "cpu_seconds_per_10k" in extra:
        cpu = extra["cpu_seconds_per_10k"]
        lines += [
            "",
            "CPU seconds per 10,000 messages (that process alone): "
            + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()),
        ]
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
    return "\n".join(lines) + "\n"


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
    payload = {
        "machine": machine(),
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
