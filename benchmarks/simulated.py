"""Throughput against the SQS double, by number of receivers, beside the latency bound
receivers x 10 / RTT: how many receivers a real region needs. And the same pipeline with
its database behind a delaying proxy (`delay_proxy.py`): a database that is not on
loopback, and which number of writers then does best."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from benchmarks.delay_proxy import proxied_dsn
from benchmarks.measure import Figure
from benchmarks.sqs_double import SqsDouble
from benchmarks.stages import KEY, envelopes
from ingestor.cli import collector
from ingestor.custody.ledger import ErasureLedger
from ingestor.models import Processed
from ingestor.pipeline.supervisor import Pipeline, PipelineConfig
from ingestor.ports import Hooks
from ingestor.sink.postgres import PostgresSink, close_pool, create_pool
from ingestor.transform.masking import HmacMasker
from ingestor.transform.transformer import Transformer

# Above this share of one core, the process (pipeline, transform and client together) is
# the limit, not the round trip: the bound no longer applies.
SATURATED = 0.90
BODIES = 20_000  # distinct bodies the double cycles through


@dataclass(frozen=True)
class Simulated:
    receivers: int
    bound: float
    figure: Figure
    cpu_share: float

    @property
    def saturated(self) -> bool:
        return self.cpu_share >= SATURATED


class Commits(Hooks):
    """When each batch committed (and the process's CPU time then), and when a receive
    last returned messages."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int, float]] = []  # (time, committed so far, CPU)
        self.last_receive = 0.0

    def on_received(self, count: int) -> None:
        if count:
            self.last_receive = time.perf_counter()

    def on_committed(self, batch: Sequence[Processed]) -> None:
        done = self.marks[-1][1] if self.marks else 0
        self.marks.append((time.perf_counter(), done + len(batch), time.process_time()))

    def steady(self) -> tuple[float, float] | None:
        """(messages committed per second, share of one core used) from the first commit
        to the last one while the queue still had messages: the pipeline's pace, without
        the start (pool, first batch) and the end of a drain (the last partial batch
        waits for its flush interval, the last deletes), fixed costs that would weigh on a
        short run."""
        window = [mark for mark in self.marks if mark[0] <= self.last_receive]
        if len(window) < 2:  # a run too short for a steady state (the quick mode's)
            return None
        (start, first, cpu_start), (end, last, cpu_end) = window[0], window[-1]
        return (last - first) / (end - start), (cpu_end - cpu_start) / (end - start)


async def _empty_tables(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("TRUNCATE user_logins, ingestor_rejects")
    finally:
        await connection.close()


async def drain_rate(
    dsn: str,
    receivers: int,
    round_trip: float,
    seconds: float,
    writers: int = PipelineConfig().writers,
) -> tuple[float, float]:
    """(messages/s in the steady state, share of one core this process used meanwhile),
    the double serving for `seconds` (or up to the bound's worth of messages)."""
    await _empty_tables(dsn)
    count = max(500, int(receivers * 10 / round_trip * seconds))
    queue = SqsDouble([e.body for e in envelopes(BODIES)], round_trip, count, seconds)
    pool = await create_pool(dsn, writers + 1)  # as the service sizes it
    try:
        # The service's defaults, in drain mode, but for the receivers and writers.
        config = PipelineConfig(receivers=receivers, drain=True, writers=writers)
        commits = Commits()
        masker = HmacMasker(KEY)
        sink = PostgresSink(pool, ErasureLedger(masker))
        pipeline = Pipeline(queue, sink, Transformer(masker), config, commits)
        # The garbage collector as `python -m ingestor` sets it (`cli/collector.py`).
        with collector.as_in_the_service():
            started, cpu = time.perf_counter(), time.process_time()
            await pipeline.run(asyncio.Event())
            elapsed = time.perf_counter() - started
    finally:
        await close_pool(pool)
    assert queue.deleted == queue.served, f"{queue.served - queue.deleted} not deleted"
    steady = commits.steady()
    if steady is None:
        return queue.served / elapsed, (time.process_time() - cpu) / elapsed
    return steady


async def simulated_figures(
    dsn: str, receivers: list[int], round_trip: float, seconds: float, times: int
) -> list[Simulated]:
    """The measured figure beside its bound, for each number of receivers."""
    results = []
    for count in receivers:
        runs = [await drain_rate(dsn, count, round_trip, seconds) for _ in range(times)]
        name = f"SQS double {round_trip * 1000:.0f} ms, {count} receivers"
        figure = Figure(name, "msg/s", [rate for rate, _ in runs])
        cpu_share = statistics.median(share for _, share in runs)
        results.append(Simulated(count, count * 10 / round_trip, figure, cpu_share))
    return results


@dataclass(frozen=True)
class Remote:
    delay_ms: float
    writers: int
    figure: Figure
    cpu_share: float


async def remote_figures(
    dsn: str,
    receivers: int,
    round_trip: float,
    seconds: float,
    times: int,
    runs: Sequence[tuple[float, int]],
) -> list[Remote]:
    """The double's figure with the database behind the delaying proxy, for each
    (delay each way in ms, writers) of `runs`."""
    results = []
    for delay_ms, writers in runs:
        async with proxied_dsn(dsn, delay_ms) as remote:
            measured = [
                await drain_rate(remote, receivers, round_trip, seconds, writers)
                for _ in range(times)
            ]
        name = f"database +{delay_ms:g} ms each way, {writers} writers"
        figure = Figure(name, "msg/s", [rate for rate, _ in measured])
        share = statistics.median(share for _, share in measured)
        results.append(Remote(delay_ms, writers, figure, share))
    return results
