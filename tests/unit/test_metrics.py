"""PrometheusHooks: what the counters, histograms and gauges say after hook events."""

from __future__ import annotations

import platform
import sys
import time

import orjson
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import ingestor
from ingestor.errors import DatabaseUnavailable, QueueUnavailable
from ingestor.models import Processed, QueueDepth, Rejection, SqsBatchResult, WriteResult
from ingestor.observe.metrics import PrometheusHooks, code_label
from ingestor.observe.readiness import Readiness
from ingestor.pipeline.supervisor import Pipeline, PipelineConfig
from ingestor.transform.masking import HmacMasker
from ingestor.transform.transformer import Transformer
from tests.fakes import FakeQueue, FakeSink, envelopes

TRANSFORMER = Transformer(HmacMasker(b"m" * 32))
PII = {"ip": "203.0.113.77", "device_id": "123-45-6789"}


def value(metrics: PrometheusHooks, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def outcomes(bodies: list[str]) -> list[Processed]:
    return [TRANSFORMER.process(e) for e in envelopes(bodies)]


def rejections(batch: list[Processed]) -> list[Rejection]:
    return [item.outcome for item in batch if isinstance(item.outcome, Rejection)]


def test_counts_follow_a_batch_through_receive_commit_and_delete() -> None:
    metrics = PrometheusHooks()
    good = orjson.dumps({"user_id": "u", **PII}).decode()
    batch = outcomes([good] * 7 + ["not json", '{"user_id": 5}', "[1]"])
    metrics.on_received(10)
    metrics.on_written(WriteResult(5, 2, 3), rejections(batch), 0.12)
    metrics.on_committed(batch)
    metrics.on_deleted(SqsBatchResult(9, (("h", "ReceiptHandleIsInvalid"),)))
    assert value(metrics, "ingestor_messages_received_total") == 10
    assert value(metrics, "ingestor_messages_loaded_total") == 7
    assert value(metrics, "ingestor_messages_replaced_total") == 2
    assert value(metrics, "ingestor_messages_rejected_total", reason="not_json") == 1
    assert value(metrics, "ingestor_messages_rejected_total", reason="not_object") == 1
    assert value(metrics, "ingestor_messages_rejected_total", reason="invalid_user_id") == 1
    assert value(metrics, "ingestor_messages_deleted_total") == 9
    assert value(metrics, "ingestor_delete_failures_total") == 1
    assert value(metrics, "ingestor_batches_flushed_total") == 1
    assert value(metrics, "ingestor_flush_duration_seconds_count") == 1
    assert value(metrics, "ingestor_batch_size_messages_sum") == 10
    # The lag is per message: the fakes' SentTimestamp is in 2023, so every one is long
    assert value(metrics, "ingestor_lag_seconds_count") == 10
    old = time.time() - 1_700_000_000
    assert value(metrics, "ingestor_lag_seconds_sum") >= 10 * (old - 5)


def test_retries_heartbeat_release_and_queue_depth() -> None:
    metrics = PrometheusHooks()
    metrics.on_retry("write", DatabaseUnavailable("connection refused"), 1, 0.2)
    metrics.on_retry("write", DatabaseUnavailable("connection refused"), 2, 0.4)
    metrics.on_retry("receive", QueueUnavailable("timeout"), 1, 0.2)
    metrics.on_extended(SqsBatchResult(40))
    metrics.on_released(SqsBatchResult(12))
    metrics.on_queue_depth(QueueDepth(visible=1234, in_flight=56))
    retries = "ingestor_retries_total"
    assert value(metrics, retries, stage="write", error="DatabaseUnavailable") == 2
    assert value(metrics, retries, stage="receive", error="QueueUnavailable") == 1
    assert value(metrics, "ingestor_visibility_extensions_total") == 40
    assert value(metrics, "ingestor_messages_released_total") == 12
    assert value(metrics, "ingestor_queue_visible_messages") == 1234
    assert value(metrics, "ingestor_queue_in_flight_messages") == 56


def test_gauges_read_the_pipeline_at_each_scrape() -> None:
    metrics = PrometheusHooks()
    pipeline = Pipeline(
        FakeQueue(), FakeSink(), TRANSFORMER, PipelineConfig(buffer_messages=200), metrics
    )
    metrics.watch(pipeline)
    assert value(metrics, "ingestor_inflight_messages") == 0
    pipeline.inflight.add(["h1", "h2", "h3"], 0.0)
    pipeline._received.put_nowait(envelopes(["{}"] * 10))
    assert value(metrics, "ingestor_inflight_messages") == 3
    assert value(metrics, "ingestor_buffer_items", buffer="received") == 1
    assert value(metrics, "ingestor_buffer_items", buffer="processed") == 0
    assert value(metrics, "ingestor_buffer_capacity_items", buffer="processed") == 10


def test_two_instances_do_not_share_a_registry() -> None:
    first, second = PrometheusHooks(), PrometheusHooks()
    first.on_received(3)
    assert value(first, "ingestor_messages_received_total") == 3
    assert value(second, "ingestor_messages_received_total") == 0


def test_labels_are_codes_and_the_exposition_holds_no_pii() -> None:
    assert code_label("invalid_ip") == "invalid_ip"
    assert code_label("db_23514") == "db_23514"
    assert code_label("QueueUnavailable") == "QueueUnavailable"
    assert code_label("203.0.113.77") == "other"
    assert code_label("bad value: 123-45-6789") == "other"
    metrics = PrometheusHooks()
    bodies = [orjson.dumps({"user_id": "u", **PII, "ip": "203.0.113.77x"}).decode()]
    bodies.append(orjson.dumps({"user_id": "u", "ip": "not-an-ip 203.0.113.77"}).decode())
    batch = outcomes(bodies)
    metrics.on_written(WriteResult(0, 0, 2), rejections(batch), 0.01)
    text = generate_latest(metrics.registry).decode()
    assert value(metrics, "ingestor_messages_rejected_total", reason="invalid_ip") == 2
    assert "203.0.113.77" not in text
    assert "123-45-6789" not in text


def exposition(metrics: PrometheusHooks) -> dict[str, set[str]]:
    """The sample names of /metrics, by family."""
    return {
        family.name: {sample.name for sample in family.samples}
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
    }


def test_an_exporter_serves_process_python_and_build_metrics() -> None:
    metrics = PrometheusHooks()
    metrics.on_received(1)
    families = exposition(metrics)
    assert value(metrics, "ingestor_build_info", version=ingestor.__version__) == 1
    assert value(metrics, "python_info", **python_labels()) == 1
    assert value(metrics, "python_gc_objects_collected_total", generation="0") >= 0
    if sys.platform == "linux":  # the process collector reads /proc
        assert value(metrics, "process_resident_memory_bytes") > 0
        assert value(metrics, "process_start_time_seconds") > 0
    samples = {name for names in families.values() for name in names}
    assert not [name for name in samples if name.endswith("_created")]


def python_labels() -> dict[str, str]:
    info = sys.version_info
    return {
        "implementation": platform.python_implementation(),
        "major": str(info.major),
        "minor": str(info.minor),
        "patchlevel": str(info.micro),
        "version": platform.python_version(),
    }


def test_ready_follows_the_readiness_verdict() -> None:
    metrics, readiness = PrometheusHooks(), Readiness()
    metrics.watch_readiness(readiness)
    assert value(metrics, "ingestor_ready") == 0  # starting
    readiness.on_state("running")
    assert value(metrics, "ingestor_ready") == 1
    readiness.on_retry("write", DatabaseUnavailable("connection refused"), 1, 0.2)
    assert value(metrics, "ingestor_ready") == 0
    readiness.on_recovered("write")
    assert value(metrics, "ingestor_ready") == 1
    readiness.on_state("draining")
    assert value(metrics, "ingestor_ready") == 0
