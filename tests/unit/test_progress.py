"""Progress: the periodic log line and the live terminal line (counts only, never PII)."""

from __future__ import annotations

import io
import logging
import time

import orjson
import pytest

from ingestor.models import Processed, QueueDepth, Rejection, SqsBatchResult, WriteResult
from ingestor.observe.logs import JsonFormatter
from ingestor.observe.progress import (
    LiveProgress,
    ProgressLog,
    Snapshot,
    Tally,
    live_progress,
    render,
)
from ingestor.transform.masking import HmacMasker
from ingestor.transform.transformer import Transformer
from tests.fakes import envelopes
from tests.integration.helpers import pii_in_logs

TRANSFORMER = Transformer(HmacMasker(b"p" * 32))
KEY = "p" * 32
PII_BODY = orjson.dumps(
    {"user_id": "u", "ip": "198.51.100.23", "device_id": "987-65-4321"}
).decode()
BAD_BODY = orjson.dumps({"user_id": "u", "ip": "198.51.100.999", "device_id": "987-65-4321"})


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed(tally: Tally, count: int = 10) -> None:
    """One batch with PII in its bodies (and a reject), as the pipeline would report it."""
    batch: list[Processed] = [
        TRANSFORMER.process(e) for e in envelopes([PII_BODY] * (count - 1) + [BAD_BODY])
    ]
    rejects = [item.outcome for item in batch if isinstance(item.outcome, Rejection)]
    tally.on_received(count)
    tally.on_written(WriteResult(count - 1, 0, 1), rejects, 0.05)
    tally.on_committed(batch)
    tally.on_deleted(SqsBatchResult(count))
    tally.on_queue_depth(QueueDepth(visible=4321, in_flight=10))


def test_render_shows_counts_rate_lag_and_depth() -> None:
    now = Snapshot(10.0, 12_345, 12_000, 300, 12_300, 0.84, 5_000)
    earlier = Snapshot(8.0, 10_345, 0, 0, 0, None, None)
    line = render(now, now.rate_since(earlier))
    assert line == (
        "received 12,345, loaded 12,000, rejected 300, deleted 12,300, 1,000 msg/s, "
        "lag 0.8 s, queue ~5,000"
    )
    assert render(earlier, 0.0) == "received 10,345, loaded 0, rejected 0, deleted 0, 0 msg/s"


def test_the_progress_log_line_has_counts_and_no_pii(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ingestor")
    clock = Clock()
    progress = ProgressLog(clock=clock)
    feed(progress, 10)
    clock.now += 2
    progress.emit()
    (record,) = [r for r in caplog.records if getattr(r, "event", "") == "progress"]
    line = orjson.loads(JsonFormatter().format(record))
    assert (line["received"], line["loaded"], line["rejected"], line["deleted"]) == (10, 9, 1, 10)
    assert line["rate"] == 5.0
    assert line["queue_visible"] == 4321
    assert line["lag_seconds"] > 0
    assert line["message"].startswith("progress: received 10, loaded 9, rejected 1")
    assert pii_in_logs(JsonFormatter().format(record), KEY) == []


def test_the_live_line_is_redrawn_in_place_at_most_four_times_a_second() -> None:
    terminal, clock = Terminal(), Clock()
    live = LiveProgress(stream=terminal, clock=clock)
    live.on_state("running")
    clock.now += 0.3
    feed(live)
    drawn = terminal.getvalue()
    assert drawn.startswith("\rreceived 10")
    assert "\n" not in drawn
    clock.now += 0.1  # too soon: no redraw
    feed(live)
    assert terminal.getvalue() == drawn
    clock.now += 0.2
    feed(live)
    assert terminal.getvalue().rsplit("\r", 1)[-1].startswith("received 30")
    # At the end, the live line gives way to a summary line
    live.on_state("stopped")
    summary = terminal.getvalue().rsplit("\r", 1)[-1]
    assert summary.endswith("\n")
    assert "done in 0.6 s: received 30, loaded 27, rejected 3" in summary
    assert pii_in_logs(terminal.getvalue(), KEY) == []


def test_nothing_is_drawn_when_not_on_a_terminal() -> None:
    assert live_progress(io.StringIO()) is None


def test_a_log_line_first_erases_the_live_line() -> None:
    terminal, clock = Terminal(), Clock()
    handler = logging.StreamHandler(terminal)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        live = live_progress(terminal)
        assert live is not None
        live.clock = clock
        clock.now = time.monotonic() + 1  # past the first redraw interval
        feed(live)
        logging.getLogger("ingestor").warning("write failing")
    finally:
        root.removeHandler(handler)
    assert "received 10" in terminal.getvalue()
    assert terminal.getvalue().endswith("\r\x1b[Kwrite failing\n")
