"""user_logins range-partitioned by create_date: what the table is, and the partitions a
batch needs.

A message's create_date never changes (PRODUCT.md rule 1), so a redelivery always lands
in the partition of its first delivery, and a unique index on (message_id, create_date)
is as strong as one on message_id alone. The sink reads the table's `Layout` once to
choose its merge's conflict target.

A row whose date no partition holds (and no DEFAULT partition either) is the table's
layout, not the row: never a reject. The sink then adds the partition, with the interval
and alignment of its nearest neighbour, when its role may (it owns the table and may
CREATE in its schema) and pg_partman does not manage the table; otherwise the batch is
retried until someone adds it (`PartitionMissing`). The README says why.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any, Literal

import asyncpg

from ingestor.models import MissingPartition
from ingestor.sink.queries import MIGRATION_LOCK, query
from ingestor.terminal import printable

NAME_LIMIT = 63  # PostgreSQL's identifier length


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    lower: dt.date | None  # None: MINVALUE
    upper: dt.date | None  # None: MAXVALUE

    def holds(self, day: dt.date) -> bool:
        return (self.lower is None or self.lower <= day) and (
            self.upper is None or day < self.upper
        )

    def distance(self, day: dt.date) -> int:
        """Days from `day` to this partition (0 when it holds it)."""
        if self.holds(day):
            return 0
        edges = [edge for edge in (self.lower, self.upper) if edge is not None]
        return min(abs((edge - day).days) for edge in edges)


Kind = Literal["missing", "plain", "partitioned", "other"]


@dataclass(frozen=True, slots=True)
class Layout:
    """What the table is. `kind`: "missing", "plain", "partitioned" (by range on its date
    column: supported) or "other" (partitioned some other way: not supported)."""

    table: str
    kind: Kind
    schema: str = ""
    partition_key: str = ""  # as PostgreSQL prints it: "RANGE (create_date)"
    partitions: tuple[Partition, ...] = ()
    has_default: bool = False
    owner: bool = False  # this role owns the table (or is a member of its owner)
    may_create_in_schema: bool = False
    partman: bool = False  # pg_partman manages it

    @property
    def partitioned(self) -> bool:
        return self.kind == "partitioned"

    def holds(self, day: dt.date) -> bool:
        return self.has_default or any(p.holds(day) for p in self.partitions)

    def uncovered(self, days: set[dt.date]) -> list[dt.date]:
        return sorted(day for day in days if not self.holds(day))

    def creator_problem(self) -> str | None:
        """Why this role may not add a partition; None when it may."""
        if self.partman:
            return f"pg_partman manages {self.table}: its maintenance adds partitions"
        if not self.owner:
            return f"this role does not own {self.table}"
        if not self.may_create_in_schema:
            return f"this role may not CREATE in schema {self.schema}"
        return None

    def policy(self) -> str:
        """What becomes of a row whose date no partition holds, in a sentence."""
        if self.has_default:
            return "a date no other partition holds goes to the DEFAULT partition"
        problem = self.creator_problem()
        if problem is None:
            return "a date with no partition gets one from the service"
        return f"a date with no partition waits for one ({problem})"

    def unsupported(self) -> str:
        return (
            f"{self.table} is {self.describe()}: ingestor loads a table that is not "
            "partitioned, or range-partitioned by create_date alone (a unique index must "
            "hold the partition key, and only the date is the message's own)"
        )

    def describe(self) -> str:
        if self.kind != "partitioned":
            return {"plain": "not partitioned", "missing": "missing"}.get(
                self.kind, f"partitioned by {self.partition_key}"
            )
        default = "a DEFAULT partition" if self.has_default else "no DEFAULT partition"
        return f"partitioned by {self.partition_key}: {len(self.partitions)} partitions, {default}"


async def read_layout(connection: Any, table: str, date_column: str = "create_date") -> Layout:
    """The table's layout, from the catalogs (its partitions only when partitioned)."""
    found = await connection.fetchrow(query("table_layout"), table)
    if found is None:
        return Layout(table, "missing")
    base = Layout(
        table,
        _kind(found, date_column),
        schema=found["schema"],
        partition_key=found["partition_key"] or "",
        has_default=found["has_default"],
        owner=found["owner"],
        may_create_in_schema=found["may_create_in_schema"],
    )
    if not base.partitioned:
        return base
    rows = await connection.fetch(query("partition_bounds"), table)
    partitions = tuple(
        Partition(r["name"], _finite(r["lower"]), _finite(r["upper"]))
        for r in rows
        if not r["is_default"]
    )
    managed = await connection.fetchval(query("partman_managed"), f"{base.schema}.{table}")
    return replace(base, partitions=partitions, partman=bool(managed))


def _finite(bound: dt.date | None) -> dt.date | None:
    """A bound of 'infinity' (asyncpg's date.max) or '-infinity' is no bound."""
    return None if bound in (dt.date.min, dt.date.max) else bound


def _kind(found: Any, date_column: str) -> Kind:
    if found["relkind"] != "p":
        return "plain"
    if found["strategy"] == "r" and found["key_column"] == date_column:
        return "partitioned"
    return "other"


@dataclass(frozen=True, slots=True)
class Span:
    """A partition to add: [lower, upper), named after its first day."""

    lower: dt.date
    upper: dt.date
    monthly: bool  # whole calendar months: named _pYYYY_MM, else _pYYYY_MM_DD

    def name(self, table: str) -> str:
        suffix = f"{self.lower:%Y_%m}" if self.monthly else f"{self.lower:%Y_%m_%d}"
        return f"{table[: NAME_LIMIT - len(suffix) - 4]}_p{suffix}"


def span_for(layout: Layout, day: dt.date) -> Span | None:
    """The partition that would hold `day`: the interval and alignment of the nearest
    partition with both bounds, cut where it would overlap its neighbours; None when no
    partition has both bounds (nothing to take an interval from)."""
    bounded = [
        (p.distance(day), p.lower, p.upper)
        for p in layout.partitions
        if p.lower is not None and p.upper is not None
    ]
    if not bounded:
        return None
    _, first, last = min(bounded)
    lower, upper, monthly = _step(first, last, day)
    before = [p.upper for p in layout.partitions if p.upper is not None and p.upper <= day]
    after = [p.lower for p in layout.partitions if p.lower is not None and p.lower > day]
    lower = max([lower, *before])
    upper = min([upper, *after])
    whole_months = monthly and lower.day == 1 and upper == add_months(lower, 1)
    return Span(lower, upper, whole_months)


def _step(lower: dt.date, upper: dt.date, day: dt.date) -> tuple[dt.date, dt.date, bool]:
    """[start, end) on the grid of partition [lower, upper) that holds `day`."""
    months = months_apart(lower, upper)
    if months > 0 and lower.day <= 28 and add_months(lower, months) == upper:
        offset = months_apart(lower, day) - (day.day < lower.day)
        start = add_months(lower, offset // months * months)
        return start, add_months(start, months), True
    days = (upper - lower).days
    start = lower + dt.timedelta(days=(day - lower).days // days * days)
    return start, start + dt.timedelta(days=days), False


def months_apart(first: dt.date, second: dt.date) -> int:
    return (second.year - first.year) * 12 + second.month - first.month


def add_months(day: dt.date, months: int) -> dt.date:
    """`day` moved by whole months (its day of the month at most 28)."""
    year, month = divmod(day.month - 1 + months, 12)
    return day.replace(year=day.year + year, month=month + 1)


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


async def add_partition(connection: Any, layout: Layout, span: Span) -> str:
    """Add the partition `span` to the table (inside the caller's transaction); its name."""
    name = span.name(layout.table)
    for n in range(2, 10):
        if not await connection.fetchval(query("relation_exists"), layout.schema, name):
            break
        name = f"{span.name(layout.table)}_{n}"  # a detached partition kept under that name
    args = (layout.schema, name, layout.table, span.lower, span.upper)
    await connection.execute(query("partition_args"), *args)
    await connection.execute(query("add_partition"))
    return name


async def provide(
    connection: Any, table: str, days: set[dt.date], date_column: str = "create_date"
) -> list[MissingPartition]:
    """For each of `days` that no partition holds: the partition added (when this role
    may), else why not. Empty when every day has one (another copy added it meanwhile)."""
    layout = await read_layout(connection, table, date_column)
    if not layout.partitioned or not layout.uncovered(days):
        return []
    if (problem := layout.creator_problem()) is not None:
        return [waiting(layout, day, problem) for day in layout.uncovered(days)]
    events: list[MissingPartition] = []
    async with connection.transaction():
        await connection.execute(query("partition_lock"), MIGRATION_LOCK)
        layout = await read_layout(connection, table, date_column)  # again, under the lock
        for day in layout.uncovered(days):
            if layout.holds(day):
                continue  # the partition just added for an earlier day holds it too
            span = span_for(layout, day)
            if span is None:
                events.append(waiting(layout, day, f"{table} has no partition to copy"))
                continue
            try:
                async with connection.transaction():  # a savepoint: the others go on
                    name = await add_partition(connection, layout, span)
            except asyncpg.PostgresError as error:  # the table's, never the row's
                events.append(waiting(layout, day, _failed(span.name(table), error)))
                continue
            added = Partition(name, span.lower, span.upper)
            layout = replace(layout, partitions=(*layout.partitions, added))
            events.append(MissingPartition(table, day, name, (span.lower, span.upper), True))
    return events


def _failed(name: str, error: asyncpg.PostgresError) -> str:
    """Why adding a partition failed: a statement about tables, with no row in it."""
    return (
        f"adding {name} failed (SQLSTATE {error.sqlstate}, {type(error).__name__}: "
        f"{printable(str(error), 200)})"
    )


def waiting(layout: Layout, day: dt.date, problem: str) -> MissingPartition:
    """`day` has no partition and this role adds none: why, and the one to add."""
    span = span_for(layout, day)
    if span is None:
        return MissingPartition(layout.table, day, problem=problem)
    name = span.name(layout.table)
    return MissingPartition(layout.table, day, name, (span.lower, span.upper), problem=problem)
