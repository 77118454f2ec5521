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
    was_enabled, threshold = gc.isenabled(), gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
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


def test_resume_makes_collections_of_young_objects_rare() -> None:
    gc.enable()
    gc.set_threshold(700, 10, 10)
    collector.pause()
    collector.resume()
    assert gc.get_threshold() == (collector.YOUNG, 10, 10)


def test_in_flight_messages_no_longer_set_off_collections() -> None:
    """What a pipeline holds at once (a few containers a message, freed by reference
    counting) stays under the threshold: no collection while they come and go."""
    gc.enable()
    collector.pause()
    collector.resume()
    collections = gc.get_stats()[0]["collections"]
    for _ in range(50):
        in_flight = [({"user_id": str(n)}, [n], (n, str(n))) for n in range(4_000)]
        del in_flight
    assert gc.get_stats()[0]["collections"] == collections


def test_as_in_the_service_is_undone_afterwards() -> None:
    gc.enable()
    gc.set_threshold(700, 10, 10)
    frozen = gc.get_freeze_count()
    with collector.as_in_the_service():
        assert gc.get_threshold() == (collector.YOUNG, 10, 10)
        assert gc.get_freeze_count() > frozen
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_resume_without_pause_changes_nothing() -> None:
    """A command run in-process (the tests, an embedding program) keeps its collector."""
    gc.enable()
    frozen = gc.get_freeze_count()
    threshold = gc.get_threshold()
    collector.resume()
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen
    assert gc.get_threshold() == threshold


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
