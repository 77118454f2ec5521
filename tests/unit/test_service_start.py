"""The service's start-up: the database's side (preparation, then the pool) runs beside
the queue's first answer, and a failure is still the one the steps' order gives."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import SecretStr

from ingestor.errors import ConfigError, PermanentError, QueueGone
from ingestor.models import QueueAttributes, QueueDepth
from ingestor.pipeline import service
from ingestor.ports import Hooks
from ingestor.settings import Settings
from tests.conftest import TEST_KEY
from tests.waiting import wait_until

SETTINGS = Settings(
    queue_url="http://127.0.0.1:9/q",
    database_url=SecretStr("postgresql://u@127.0.0.1:9/d"),
    hmac_key=SecretStr(TEST_KEY),
)
ATTRIBUTES = QueueAttributes(depth=QueueDepth(0, 0), visibility_timeout=30)
WITHIN = 10.0  # seconds: a generous bound for steps that must not wait on each other


class FakePool:
    closed = False


class Steps:
    """Stand-ins for the three start-up steps: each waits for its `go` event (set at
    once by default), then answers with its outcome; the order they begin in is kept."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.go = {name: asyncio.Event() for name in ("prepare", "queue", "pool")}
        self.outcome: dict[str, Any] = {"prepare": "hk-1", "queue": ATTRIBUTES}
        self.began: list[str] = []
        self.ended: list[str] = []
        self.pool = FakePool()
        self.outcome["pool"] = self.pool
        monkeypatch.setattr(service, "_prepare_database", lambda *_: self._step("prepare"))
        monkeypatch.setattr(service, "_queue_at_start", lambda *_: self._step("queue"))
        monkeypatch.setattr(service, "start_pool", lambda *_: self._step("pool"))
        monkeypatch.setattr(service, "close_pool", self._close)

    def release(self, *names: str) -> None:
        for name in names or tuple(self.go):
            self.go[name].set()

    async def _step(self, name: str) -> Any:
        self.began.append(name)
        try:
            await self.go[name].wait()
        finally:
            self.ended.append(name)
        outcome = self.outcome[name]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def _close(self, pool: FakePool) -> None:
        pool.closed = True


def start() -> asyncio.Task[tuple[QueueAttributes, Any]]:
    return asyncio.create_task(service._start(SETTINGS, None, Hooks()))  # type: ignore[arg-type]


async def began(steps: Steps, *names: str) -> None:
    await wait_until(lambda: set(names) <= set(steps.began), WITHIN, f"{names} to begin")


async def ended(steps: Steps, name: str) -> None:
    await wait_until(lambda: name in steps.ended, WITHIN, f"{name} to end")


async def test_the_queue_answers_while_the_database_is_prepared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps = Steps(monkeypatch)
    task = start()
    await began(steps, "prepare", "queue")  # neither has finished: they overlap
    steps.release("queue")
    await ended(steps, "queue")
    assert "pool" not in steps.began  # each connection needs the migrated tables
    steps.release("prepare", "pool")
    assert await asyncio.wait_for(task, WITHIN) == (ATTRIBUTES, steps.pool)


async def test_a_missing_queue_is_reported_once_the_database_is_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps = Steps(monkeypatch)
    steps.outcome["queue"] = QueueGone("queue q does not exist")
    task = start()
    steps.release("queue")
    await ended(steps, "queue")
    assert not task.done()  # as before: the database's preparation comes first
    steps.release("prepare")
    with pytest.raises(QueueGone, match="does not exist"):
        await asyncio.wait_for(task, WITHIN)
    assert sorted(steps.ended) == sorted(steps.began)  # nothing left running
    assert not steps.pool.closed  # the pool's step was cancelled before it opened one


async def test_when_both_fail_the_database_s_failure_is_the_one_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps = Steps(monkeypatch)
    steps.outcome["queue"] = QueueGone("queue q does not exist")
    steps.outcome["prepare"] = ConfigError("INGESTOR_HMAC_KEY", "is hk-2 but ...")
    task = start()
    steps.release("queue")
    await ended(steps, "queue")
    steps.release("prepare")
    with pytest.raises(ConfigError, match="INGESTOR_HMAC_KEY"):
        await asyncio.wait_for(task, WITHIN)
    assert "pool" not in steps.began


async def test_a_failed_preparation_cancels_the_queue_s_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps = Steps(monkeypatch)
    steps.outcome["prepare"] = PermanentError("password authentication failed")
    task = start()
    await began(steps, "prepare", "queue")
    steps.release("prepare")
    with pytest.raises(PermanentError, match="password"):
        await asyncio.wait_for(task, WITHIN)
    assert steps.ended.count("queue") == 1  # cancelled, and waited for
    assert not steps.go["queue"].is_set()


async def test_a_pool_already_open_is_closed_when_the_queue_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps = Steps(monkeypatch)
    steps.outcome["queue"] = QueueGone("queue q does not exist")
    task = start()
    steps.release("prepare", "pool")
    await ended(steps, "pool")
    steps.release("queue")
    with pytest.raises(QueueGone):
        await asyncio.wait_for(task, WITHIN)
    assert steps.pool.closed


async def test_a_stop_during_start_up_cancels_every_step_and_closes_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps = Steps(monkeypatch)
    stop = asyncio.Event()
    waiting = asyncio.create_task(service._until_stopped(start(), stop))
    steps.release("prepare", "pool")
    await ended(steps, "pool")
    stop.set()
    assert await asyncio.wait_for(waiting, WITHIN) is None
    # _until_stopped returns once the clean-up is done
    assert steps.pool.closed
    assert steps.ended.count("queue") == 1
