"""The garbage collector around a command's start: paused by the entry point only, resumed
once with start-up's objects frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ingestor.cli import collector


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    """Whatever a test does, the test process's collector is as it was after it."""
    was_enabled = gc.isenabled()
    yield
    gc.unfreeze()
    collector._State.paused = False
    if was_enabled:
        gc.enable()
    else:
        gc.disable()


def test_pause_then_resume_freezes_what_start_up_built() -> None:
    gc.enable()
    collector.pause()
    assert not gc.isenabled()
    built = [[] for _ in range(100)]  # start-up's long-lived containers
    collector.resume()
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(built)


def test_resume_without_pause_changes_nothing() -> None:
    """A command run in-process (the tests, an embedding program) keeps its collector."""
    gc.enable()
    frozen = gc.get_freeze_count()
    collector.resume()
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen


def test_a_collector_someone_else_disabled_stays_disabled() -> None:
    gc.disable()
    frozen = gc.get_freeze_count()
    collector.pause()
    collector.resume()
    assert not gc.isenabled()
    assert gc.get_freeze_count() == frozen


def test_resume_happens_once() -> None:
    gc.enable()
    collector.pause()
    collector.resume()
    gc.unfreeze()
    frozen = gc.get_freeze_count()
    collector.resume()
    assert gc.get_freeze_count() == frozen


def test_the_exit_leaves_everything_alive_out_of_the_last_collections() -> None:
    alive = [[] for _ in range(100)]
    collector.skip_final()
    assert gc.get_freeze_count() >= len(alive)
