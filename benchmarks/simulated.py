"""Throughput against the SQS double, by number of receivers, beside the latency bound
receivers x 10 / RTT: how many receivers a real region needs."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.measure import Figure
from benchmarks.sqs_double import SqsDouble
from benchmarks.stages import KEY, envelopes
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
    """When each batch committed, and when a receive last returned messages."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int]] = []  # (time, messages committed so far)
        self.last_receive = 0.0

    def on_received(self, count: int) -> None:
        if count:
            self.last_receive = time.perf_counter()

    def on_committed(self, batch: Sequence[Processed]) -> None:
        done = self.marks[-1][1] if self.marks else 0
        self.marks.append((time.perf_counter(), done + len(batch)))

    def steady_rate(self) -> float | None:
        """Messages committed per second from the first commit to the last one while the
        queue still had messages: the pipeline's pace, without the start (pool, first
        batch) and the end of a drain (the last partial batch waits for its flush
        interval, the last deletes), fixed costs that would weigh on a short run."""
        window = [mark for mark in self.marks if mark[0] <= self.last_receive]
        if len(window) < 2:  # a run too short for a steady state (the quick mode's)
            return None
        (start, first), (end, last) = window[0], window[-1]
        return (last - first) / (end - start)


async def drain_rate(
    dsn: str, receivers: int, round_trip: float, seconds: float
) -> tuple[float, float]:
    """(messages/s in the steady state, share of one core this process used meanwhile)."""
    bound = receivers * 10 / round_trip
    count = max(500, int(bound * seconds))
    batch = [e for e in envelopes(count)]
    queue = SqsDouble(batch, round_trip)
    pool = await create_pool(dsn, 3)
    try:
        config = PipelineConfig(
            receivers=receivers,
            drain=True,
            batch_size=2000,
            flush_interval=0.5,
            buffer_messages=5_000,
            writers=2,
        )
        commits = Commits()
        masker = HmacMasker(KEY)
        sink = PostgresSink(pool, ErasureLedger(masker))
        pipeline = Pipeline(queue, sink, Transformer(masker), config, commits)
        started, cpu = time.perf_counter(), time.process_time()
        await pipeline.run(asyncio.Event())
        elapsed = time.perf_counter() - started
        cpu_share = (time.process_time() - cpu) / elapsed
    finally:
        await close_pool(pool)
    assert queue.deleted == count
    steady = commits.steady_rate()
    return (count / elapsed if steady is None else steady), cpu_share


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
