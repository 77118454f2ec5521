"""Throughput against the SQS double, by number of receivers, beside the latency bound
receivers x 10 / RTT: how many receivers a real region needs."""

from __future__ import annotations

import asyncio
import time

from benchmarks.measure import Figure
from benchmarks.sqs_double import SqsDouble
from benchmarks.stages import KEY, envelopes
from ingestor.hooks import Hooks
from ingestor.masking import HmacMasker
from ingestor.pipeline import Pipeline, PipelineConfig
from ingestor.postgres import PostgresSink, close_pool, create_pool
from ingestor.transform import Transformer


async def drain_rate(dsn: str, receivers: int, round_trip: float, seconds: float) -> float:
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
            buffer_messages=10_000,
            writers=2,
        )
        pipeline = Pipeline(
            queue, PostgresSink(pool), Transformer(HmacMasker(KEY)), config, Hooks()
        )
        started = time.perf_counter()
        await pipeline.run(asyncio.Event())
        elapsed = time.perf_counter() - started
    finally:
        await close_pool(pool)
    assert queue.deleted == count
    return count / elapsed


async def simulated_figures(
    dsn: str, receivers: list[int], round_trip: float, seconds: float, times: int
) -> list[tuple[int, float, Figure]]:
    """(receivers, bound, measured figure) for each number of receivers."""
    results = []
    for count in receivers:
        runs = [await drain_rate(dsn, count, round_trip, seconds) for _ in range(times)]
        bound = count * 10 / round_trip
        results.append(
            (
                count,
                bound,
                Figure(f"SQS double {round_trip * 1000:.0f} ms, {count} receivers", "msg/s", runs),
            )
        )
    return results
