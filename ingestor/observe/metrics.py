"""Prometheus metrics, fed by the pipeline's hooks (once per batch, never per message).

Each `PrometheusHooks` has its own registry rather than the process-global one, so several
can live in one process (tests, or two services in one interpreter). Labels are fixed
codes (stage names, reason codes, error class names): never a value from a message body,
so no PII and a bounded number of series. Besides its own metrics, the registry serves what
any exporter is expected to: `process_*`, `python_*` and `ingestor_build_info`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, Metric

from ingestor import __version__
from ingestor.errors import IngestorError
from ingestor.models import (
    MissingPartition,
    Processed,
    QueueDepth,
    Rejection,
    SqsBatchResult,
    WriteResult,
)
from ingestor.observe.readiness import Readiness
from ingestor.ports import Buffers, Hooks

PREFIX = "ingestor_"
FLUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1_000, 2_000, 5_000, 10_000, 50_000)
# Lag spans a quiet queue (well under a second) to a backlog hours deep.
LAG_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1_800, 3_600, 21_600, 86_400)
# What a label may look like; anything else is reported as "other" rather than exported.
_CODE = re.compile(r"[a-z0-9_]{1,48}|[A-Za-z0-9]{1,64}")


def code_label(code: str) -> str:
    """`code` if it is a plain code (reason_code, stage, error class), else "other": a
    last guard so that no free text could ever become a label."""
    return code if _CODE.fullmatch(code) else "other"


class PrometheusHooks(Hooks):
    """The service's metrics; `registry` is what /metrics serves."""

    def __init__(self) -> None:
        # A `_created` twin per counter and histogram doubles the series and no dashboard
        # or alert reads it. The switch is process-wide (prometheus-client has no other).
        disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream
        self.registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        Info(PREFIX + "build", "The running version", registry=self.registry).info(
            {"version": __version__}
        )
        self._counters()
        self._histograms()
        self._gauges()

    def _counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(PREFIX + name, doc, labels, registry=self.registry)

    def _gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(PREFIX + name, doc, labels, registry=self.registry)

    def _histogram(self, name: str, doc: str, buckets: Sequence[float]) -> Histogram:
        return Histogram(PREFIX + name, doc, buckets=buckets, registry=self.registry)

    def _counters(self) -> None:
        counter = self._counter
        self.received = counter("messages_received", "Messages received from SQS")
        self.loaded = counter(
            "messages_loaded", "Messages committed as a user_logins row (new or replacing)"
        )
        self.replaced = counter(
            "messages_replaced",
            "Loaded messages that replaced their own earlier row (a redelivery)",
        )
        self.rejected = counter(
            "messages_rejected", "Messages committed as a reject, by reason code", ["reason"]
        )
        self.deleted = counter("messages_deleted", "Committed messages deleted from SQS")
        self.delete_failures = counter(
            "delete_failures", "Committed messages whose delete failed (SQS redelivers them)"
        )
        self.released = counter(
            "messages_released", "Uncommitted messages handed back to SQS on shutdown"
        )
        self.not_released = counter(
            "messages_not_released",
            "Uncommitted messages that could not be handed back on shutdown (they come back "
            "after their visibility timeout)",
        )
        self.extended = counter(
            "visibility_extensions", "Visibility extensions of held messages (heartbeat)"
        )
        self.batches = counter("batches_flushed", "Batches committed")
        self.partitions_missing = counter(
            "partition_missing",
            "Writes of a batch with a row whose date no partition of user_logins holds, and "
            "for which this copy may add none: the batch waits and is retried (per date, "
            "per attempt)",
        )
        self.partitions_added = counter(
            "partitions_added", "Partitions of user_logins this copy added for a row's date"
        )
        self.retries = counter(
            "retries",
            "Transient failures retried, by stage (receive, write, delete, heartbeat, "
            "startup, depth) and error class",
            ["stage", "error"],
        )

    def _histograms(self) -> None:
        self.flush_seconds = self._histogram(
            "flush_duration_seconds", "Seconds to commit a batch, retries included", FLUSH_BUCKETS
        )
        self.batch_size = self._histogram(
            "batch_size_messages", "Messages per committed batch", BATCH_BUCKETS
        )
        self.lag = self._histogram(
            "lag_seconds", "Seconds from SQS SentTimestamp to the commit, per message", LAG_BUCKETS
        )

    def _gauges(self) -> None:
        self.inflight = self._gauge(
            "inflight_messages", "Messages received and not yet committed or handed back"
        )
        self.buffered = self._gauge(
            "buffer_items",
            "Items (one receive, up to 10 messages, each) waiting in an internal queue",
            ["buffer"],
        )
        self.buffer_capacity = self._gauge(
            "buffer_capacity_items", "Items an internal queue may hold", ["buffer"]
        )
        self.queue_visible = self._gauge(
            "queue_visible_messages", "SQS ApproximateNumberOfMessages (sampled)"
        )
        self.queue_in_flight = self._gauge(
            "queue_in_flight_messages",
            "SQS ApproximateNumberOfMessagesNotVisible, all consumers (sampled)",
        )
        self.ready = self._gauge(
            "ready", "1 when this copy can work (as /readyz, less its live query)"
        )

    def watch_hooks(self, failures: Mapping[str, int]) -> None:
        """Read the errors each hook raised (counted by `HookChain`) at each scrape."""
        self.registry.register(_HookFailures(failures))

    def watch(self, pipeline: Buffers) -> None:
        """Read the pipeline's in-flight count and buffers at each scrape."""
        self.inflight.set_function(lambda: len(pipeline.inflight))
        self.buffered.labels("received").set_function(lambda: pipeline.buffered().received)
        self.buffered.labels("processed").set_function(lambda: pipeline.buffered().processed)
        for buffer in ("received", "processed"):
            self.buffer_capacity.labels(buffer).set(pipeline.buffered().capacity)

    def watch_readiness(self, readiness: Readiness) -> None:
        """Read the readiness verdict at each scrape: alerts see what /readyz says."""
        self.ready.set_function(lambda: float(readiness.verdict().ready))

    def on_received(self, count: int) -> None:
        self.received.inc(count)

    def on_written(
        self, result: WriteResult, rejections: Sequence[Rejection], seconds: float
    ) -> None:
        self.loaded.inc(result.inserted + result.replaced)
        self.replaced.inc(result.replaced)
        for rejection in rejections:
            self.rejected.labels(code_label(rejection.reason_code)).inc()
        self.batches.inc()
        self.flush_seconds.observe(seconds)

    def on_committed(self, batch: Sequence[Processed]) -> None:
        self.batch_size.observe(len(batch))
        now_ms = time.time() * 1000
        observe = self.lag.observe
        for item in batch:
            observe(max(0.0, now_ms - item.sent_timestamp_ms) / 1000)

    def on_deleted(self, result: SqsBatchResult) -> None:
        self.deleted.inc(result.succeeded)
        self.delete_failures.inc(len(result.failed))

    def on_released(self, result: SqsBatchResult) -> None:
        self.released.inc(result.succeeded)

    def on_not_released(self, count: int, why: str) -> None:
        self.not_released.inc(count)

    def on_extended(self, result: SqsBatchResult) -> None:
        self.extended.inc(result.succeeded)

    def on_retry(self, stage: str, error: IngestorError, attempt: int, delay: float) -> None:
        self.retries.labels(code_label(stage), code_label(type(error).__name__)).inc()

    def on_partition_missing(self, missing: MissingPartition) -> None:
        (self.partitions_added if missing.created else self.partitions_missing).inc()

    def on_queue_depth(self, depth: QueueDepth) -> None:
        self.queue_visible.set(depth.visible)
        self.queue_in_flight.set(depth.in_flight)


class _HookFailures:
    """`ingestor_hook_failures_total{hook}`: errors an observer raised, which the pipeline
    went on without (logged once per hook)."""

    def __init__(self, failures: Mapping[str, int]) -> None:
        self._failures = failures

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            PREFIX + "hook_failures",
            "Errors raised by an observer (hook); the pipeline went on without it",
            labels=["hook"],
        )
        for hook, count in sorted(self._failures.items()):
            family.add_metric([code_label(hook)], count)
        yield family
