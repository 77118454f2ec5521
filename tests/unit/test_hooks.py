"""Hooks: every event reaches every observer, and an observer that raises never reaches a
stage: it is logged once, by name, and counted."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest
from prometheus_client import generate_latest

from ingestor.models import SqsBatchResult
from ingestor.observe.hooks import EVENTS, HookChain, Stats
from ingestor.observe.metrics import PrometheusHooks
from ingestor.pipeline.supervisor import Pipeline, PipelineConfig
from ingestor.ports import Hooks
from ingestor.transform.masking import HmacMasker
from ingestor.transform.transformer import Transformer
from tests.fakes import FakeQueue, FakeSink, envelopes


class Broken(Hooks):
    """An observer with a bug in two events."""

    def on_received(self, count: int) -> None:
        raise RuntimeError("observer bug")

    def on_deleted(self, result: SqsBatchResult) -> None:
        raise KeyError("another")


def recorder() -> tuple[Hooks, list[str]]:
    """A hook that overrides every event of `Hooks` and records which it heard."""
    heard: list[str] = []

    def record(event: str) -> Any:
        return lambda self, *args: heard.append(event)

    methods = {name: record(name) for name in EVENTS}
    return type("Recorder", (Hooks,), methods)(), heard


def test_the_events_are_read_off_the_hooks_class() -> None:
    public = sorted(name for name in dir(Hooks) if not name.startswith("_"))
    assert sorted(EVENTS) == public
    assert {"on_received", "on_written", "on_not_released", "on_transaction_shrunk"} <= set(EVENTS)


def test_every_event_reaches_every_hook_without_forwarding_code() -> None:
    first, heard_first = recorder()
    second, heard_second = recorder()
    chain = HookChain(first, HookChain(second))  # a chain given to a chain is flattened
    for event in EVENTS:
        arguments = Hooks.__dict__[event].__code__.co_argcount - 1
        getattr(chain, event)(*[None] * arguments)
    assert heard_first == list(EVENTS)
    assert heard_second == list(EVENTS)


def test_a_raising_hook_is_logged_once_by_name_counted_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stats = Stats()
    chain = HookChain(Broken(), stats)
    with caplog.at_level(logging.ERROR, logger="ingestor"):
        for _ in range(3):
            chain.on_received(5)
        chain.on_deleted(SqsBatchResult(2))
    assert stats.received == 15  # the hook after the broken one heard every event
    assert stats.deleted == 2
    assert chain.failures == {"Broken": 4}
    lines = [r.getMessage() for r in caplog.records if "hook" in r.getMessage()]
    assert len(lines) == 1
    assert "hook Broken failed on on_received (RuntimeError: observer bug)" in lines[0]


def test_hook_failures_are_a_metric() -> None:
    metrics = PrometheusHooks()
    chain = HookChain(Broken(), metrics)
    metrics.watch_hooks(chain.failures)
    chain.on_received(1)
    chain.on_received(1)
    text = generate_latest(metrics.registry).decode()
    assert 'ingestor_hook_failures_total{hook="Broken"} 2.0' in text
    assert "ingestor_messages_received_total 2.0" in text


async def test_a_pipeline_with_a_broken_observer_loads_everything() -> None:
    good = orjson.dumps({"user_id": "u", "ip": "10.0.0.1"}).decode()
    queue, sink = FakeQueue(envelopes([good] * 100)), FakeSink()
    config = PipelineConfig(receivers=2, receive_wait_seconds=1, batch_size=30, drain=True)
    hooks: Any = Broken()  # given bare, not in a chain: the pipeline chains it itself
    runner = Pipeline(queue, sink, Transformer(HmacMasker(b"p" * 32)), config, hooks)
    await asyncio.wait_for(runner.run(asyncio.Event()), 10)
    assert len(sink.rows) == 100
    assert len(queue.deleted) == 100


def test_a_chain_wrapping_a_watched_chain_counts_where_the_metric_looks() -> None:
    # The service wraps telemetry's chain (which the metrics watch) in one more chain
    metrics = PrometheusHooks()
    watched = HookChain(metrics)
    metrics.watch_hooks(watched.failures)
    outer = HookChain(watched, Broken())
    outer.on_received(1)
    text = generate_latest(metrics.registry).decode()
    assert 'ingestor_hook_failures_total{hook="Broken"} 1.0' in text
