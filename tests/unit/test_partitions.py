"""The partition a date needs, from its neighbours' interval and alignment; and how a
missing one is reported (log lines, metrics)."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from ingestor.errors import PartitionMissing
from ingestor.models import MissingPartition
from ingestor.observe.hooks import LogHooks
from ingestor.observe.metrics import PrometheusHooks
from ingestor.sink.partitions import Layout, Partition, Span, span_for

D = dt.date


def layout(*bounds: tuple[D | None, D | None], **flags: bool) -> Layout:
    parts = tuple(Partition(f"p{i}", lower, upper) for i, (lower, upper) in enumerate(bounds))
    values = {"owner": True, "may_create_in_schema": True, **flags}
    return Layout("user_logins", "partitioned", "public", "RANGE (create_date)", parts, **values)


MONTHLY = layout((D(2024, 1, 1), D(2024, 2, 1)), (D(2024, 2, 1), D(2024, 3, 1)))


@pytest.mark.parametrize(
    ("table", "day", "expected"),
    [
        # a later month, an earlier one, one years ahead: calendar months
        (MONTHLY, D(2024, 3, 31), Span(D(2024, 3, 1), D(2024, 4, 1), monthly=True)),
        (MONTHLY, D(2023, 12, 1), Span(D(2023, 12, 1), D(2024, 1, 1), monthly=True)),
        (MONTHLY, D(2027, 7, 4), Span(D(2027, 7, 1), D(2027, 8, 1), monthly=True)),
        # quarters aligned on their first month
        (
            layout((D(2024, 1, 1), D(2024, 4, 1))),
            D(2024, 8, 15),
            Span(D(2024, 7, 1), D(2024, 10, 1), monthly=False),
        ),
        # weeks starting on Monday, days
        (
            layout((D(2024, 1, 1), D(2024, 1, 8))),
            D(2024, 1, 24),
            Span(D(2024, 1, 22), D(2024, 1, 29), monthly=False),
        ),
        (
            layout((D(2024, 1, 1), D(2024, 1, 2))),
            D(2023, 12, 30),
            Span(D(2023, 12, 30), D(2023, 12, 31), monthly=False),
        ),
        # months that start on the 15th
        (
            layout((D(2024, 1, 15), D(2024, 2, 15))),
            D(2024, 3, 1),
            Span(D(2024, 2, 15), D(2024, 3, 15), monthly=False),
        ),
        # a gap narrower than the interval is filled, not overlapped
        (
            layout((D(2024, 1, 1), D(2024, 2, 10)), (D(2024, 2, 20), D(2024, 3, 1))),
            D(2024, 2, 12),
            Span(D(2024, 2, 10), D(2024, 2, 20), monthly=False),
        ),
        # the nearest neighbour's interval wins; MINVALUE below is not overlapped
        (
            layout((None, D(2024, 1, 1)), (D(2024, 1, 1), D(2024, 1, 2))),
            D(2024, 1, 5),
            Span(D(2024, 1, 5), D(2024, 1, 6), monthly=False),
        ),
    ],
)
def test_the_partition_a_day_needs_follows_its_nearest_neighbour(
    table: Layout, day: D, expected: Span
) -> None:
    assert span_for(table, day) == expected


def test_no_partition_with_both_bounds_gives_no_interval() -> None:
    assert span_for(layout((None, D(2024, 1, 1))), D(2024, 5, 1)) is None
    assert span_for(layout(), D(2024, 5, 1)) is None


def test_names_say_the_first_day() -> None:
    assert Span(D(2024, 3, 1), D(2024, 4, 1), monthly=True).name("user_logins") == (
        "user_logins_p2024_03"
    )
    assert Span(D(2024, 3, 4), D(2024, 3, 11), monthly=False).name("user_logins") == (
        "user_logins_p2024_03_04"
    )
    assert len(Span(D(2024, 3, 4), D(2024, 3, 5), False).name("x" * 63)) <= 63


def test_who_may_add_a_partition() -> None:
    assert MONTHLY.creator_problem() is None
    assert "does not own" in str(layout(owner=False).creator_problem())
    assert "CREATE in schema public" in str(layout(may_create_in_schema=False).creator_problem())
    assert "pg_partman manages" in str(layout(partman=True).creator_problem())
    assert MONTHLY.holds(D(2024, 2, 29))
    assert not MONTHLY.holds(D(2024, 3, 1))
    assert layout(has_default=True).holds(D(1999, 1, 1))


WAITING = MissingPartition(
    "user_logins",
    D(2024, 3, 5),
    "user_logins_p2024_03",
    (D(2024, 3, 1), D(2024, 4, 1)),
    problem="this role does not own user_logins",
)
ADDED = MissingPartition(
    "user_logins", D(2024, 3, 5), "user_logins_p2024_03", (D(2024, 3, 1), D(2024, 4, 1)), True
)


def test_the_statement_a_waiting_date_suggests() -> None:
    assert WAITING.statement() == (
        "CREATE TABLE user_logins_p2024_03 PARTITION OF user_logins "
        "FOR VALUES FROM ('2024-03-01') TO ('2024-04-01')"
    )
    assert MissingPartition("user_logins", D(2024, 3, 5), problem="x").statement() == ""


def test_a_waiting_date_is_one_error_line_per_minute_and_a_partition_added_an_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    hooks = LogHooks(clock=lambda: now[0])
    caplog.set_level(logging.INFO, "ingestor")
    for attempt in (1, 2, 3):  # retried: said once
        hooks.on_partition_missing(WAITING)
        hooks.on_retry(
            "write", PartitionMissing("no partition", "user_logins", (WAITING.day,)), attempt, 0.1
        )
    now[0] = 61.0
    hooks.on_partition_missing(WAITING)  # still waiting a minute later: said again
    hooks.on_partition_missing(ADDED)
    hooks.on_recovered("write")
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["ERROR", "ERROR", "INFO", "INFO"]
    error = lines[0][1]
    assert "no partition of user_logins holds 2024-03-05" in error
    assert "this role does not own user_logins" in error
    assert "nothing is rejected or lost" in error
    assert WAITING.statement() in error
    assert lines[2][1] == (
        "added partition user_logins_p2024_03 of user_logins for [2024-03-01, 2024-04-01): "
        "a row dated 2024-03-05 had none"
    )
    assert lines[3][1] == "write recovered"


def test_an_unexplained_routing_failure_is_an_outage_line(caplog: pytest.LogCaptureFixture) -> None:
    # PostgreSQL found no partition where ingestor reads one: no date was reported, so the
    # outage line says it
    caplog.set_level(logging.INFO, "ingestor")
    LogHooks().on_retry(
        "write", PartitionMissing("no partition of user_logins", "user_logins"), 1, 0.1
    )
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "no partition of user_logins" in caplog.records[0].getMessage()


def test_metrics_count_dates_waiting_and_partitions_added() -> None:
    metrics = PrometheusHooks()
    metrics.on_partition_missing(WAITING)
    metrics.on_partition_missing(WAITING)
    metrics.on_partition_missing(ADDED)
    value = metrics.registry.get_sample_value
    assert value("ingestor_partition_missing_total") == 2
    assert value("ingestor_partitions_added_total") == 1
