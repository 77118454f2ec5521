"""When a drain is over, decided from the queue's counts with a clock the test moves:
empty at once, waiting out what another consumer holds, and giving up (exit 3) when
nothing comes for the wait, whatever the counts say (held, locked FIFO group, delayed)."""

from __future__ import annotations

from ingestor.errors import QueueUnavailable
from ingestor.models import QueueDepth
from ingestor.source.drain import CHECK_INTERVAL, DrainWatch
from tests.fakes import RecordingHooks

WAIT = 30.0


class Counts:
    """A queue whose counts the test sets; counts the looks."""

    def __init__(self, *depths: QueueDepth) -> None:
        self.depths_left = list(depths)
        self.looks = 0

    async def depths(self) -> QueueDepth:
        self.looks += 1
        depth = self.depths_left[0] if len(self.depths_left) == 1 else self.depths_left.pop(0)
        if isinstance(depth, Exception):
            raise depth
        return depth


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def watch(queue: Counts, clock: Clock, idle: bool = True) -> DrainWatch:
    return DrainWatch(queue, lambda: idle, WAIT, RecordingHooks(), clock)


async def test_an_empty_queue_is_one_look() -> None:
    queue = Counts(QueueDepth(0, 0))
    drain = watch(queue, Clock())
    assert await drain.over()
    assert (queue.looks, drain.held) == (1, None)


async def test_nothing_is_asked_while_this_process_still_holds_messages() -> None:
    queue = Counts(QueueDepth(0, 0))
    assert not await watch(queue, Clock(), idle=False).over()
    assert queue.looks == 0


async def test_messages_held_elsewhere_are_waited_for_then_given_up_on() -> None:
    queue, clock = Counts(QueueDepth(0, 40)), Clock()
    drain = watch(queue, clock)
    assert not await drain.over()
    clock.now += WAIT - 1
    assert not await drain.over()
    clock.now += 1
    assert await drain.over()
    assert drain.held == QueueDepth(0, 40)


async def test_a_receive_that_brings_messages_restarts_the_wait() -> None:
    queue, clock = Counts(QueueDepth(0, 40)), Clock()
    drain = watch(queue, clock)
    assert not await drain.over()
    clock.now += WAIT - 1
    drain.received()  # what was held came back and was received
    clock.now += 2
    assert not await drain.over()


async def test_visible_messages_no_receive_gets_do_not_hang_the_drain() -> None:
    # A FIFO group another consumer keeps extending: visible, never handed out
    queue, clock = Counts(QueueDepth(5, 5)), Clock()
    drain = watch(queue, clock)
    for _ in range(int(WAIT / CHECK_INTERVAL)):
        assert not await drain.over()
        clock.now += CHECK_INTERVAL
    assert await drain.over()
    assert drain.held == QueueDepth(5, 5)


async def test_delayed_messages_keep_the_drain_going() -> None:
    queue, clock = Counts(QueueDepth(0, 0, 3), QueueDepth(0, 0, 0)), Clock()
    drain = watch(queue, clock)
    assert not await drain.over()
    clock.now += CHECK_INTERVAL
    assert await drain.over()
    assert drain.held is None


async def test_the_counts_are_asked_at_most_once_a_second() -> None:
    queue, clock = Counts(QueueDepth(0, 1)), Clock()
    drain = watch(queue, clock)
    for _ in range(16):  # 16 receivers, each after its empty receive
        await drain.over()
    assert queue.looks == 1


async def test_a_failed_look_is_not_the_end() -> None:
    queue = Counts(QueueUnavailable("no SQS answers"), QueueDepth(0, 0))  # type: ignore[arg-type]
    clock = Clock()
    drain = watch(queue, clock)
    assert not await drain.over()
    clock.now += CHECK_INTERVAL
    assert await drain.over()
