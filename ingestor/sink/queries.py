"""The SQL the ingestor runs, kept in `ingestor/sink/sql/*.sql` and loaded once."""

from __future__ import annotations

from functools import cache
from importlib import resources

# pg_advisory_xact_lock key of the migrations, and of adding a partition: "ingestor" as a
# number, so other applications' locks differ.
MIGRATION_LOCK = 0x696E676573746F72


@cache
def query(name: str) -> str:
    """The text of `ingestor/sink/sql/<name>.sql`."""
    return resources.files("ingestor.sink.sql").joinpath(f"{name}.sql").read_text()


def migrations() -> list[tuple[str, str]]:
    """(name, sql) of every migration, in the order they apply."""
    folder = resources.files("ingestor.sink.sql").joinpath("migrations")
    files = sorted(f.name for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), folder.joinpath(name).read_text()) for name in files]
