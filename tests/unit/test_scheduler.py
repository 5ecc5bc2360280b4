"""The worker's scheduler (sfu/scheduler.py): periodic timers on the event loop, no tasks."""

import asyncio

import pytest

from sfu.scheduler import Scheduler


async def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_timer_repeats_until_cancelled() -> None:
    scheduler = Scheduler()
    calls: list[int] = []
    timer = scheduler.every(0.01, lambda: calls.append(1), "t")
    await wait_until(lambda: len(calls) >= 3)
    timer.cancel()
    assert not timer.active and len(scheduler) == 0
    seen = len(calls)
    other = scheduler.every(0.01, lambda: None, "other")  # time passes by another timer's beats
    await wait_until(lambda: other.fired >= 3)
    assert len(calls) == seen


async def test_a_raising_callback_keeps_its_timer() -> None:
    scheduler = Scheduler()

    def broken() -> None:
        raise RuntimeError("boom")

    timer = scheduler.every(0.01, broken, "broken")
    await wait_until(lambda: timer.fired >= 2)
    assert timer.active
    scheduler.close()


async def test_cancel_from_inside_the_callback_and_close() -> None:
    scheduler = Scheduler()
    timers = []
    timers.append(scheduler.every(0.01, lambda: timers[0].cancel(), "once"))
    keep = scheduler.every(0.01, lambda: None, "keep")
    await wait_until(lambda: keep.fired >= 3)
    assert timers[0].fired == 1 and not timers[0].active
    scheduler.close()
    assert not keep.active and len(scheduler) == 0
    with pytest.raises(RuntimeError):
        scheduler.every(0.01, lambda: None)
    with pytest.raises(ValueError):
        Scheduler().every(0, lambda: None)


async def test_timers_of_one_interval_share_beats() -> None:
    """Timers made at different moments fire on the same beats (one wake-up for all)."""
    scheduler = Scheduler()
    timers: dict[str, object] = {}
    beats: dict[str, list[int]] = {"first": [], "second": []}

    def callback(name: str):
        return lambda: beats[name].append(timers[name].last_beat)  # type: ignore[attr-defined]

    timers["first"] = scheduler.every(0.02, callback("first"), "first")
    await asyncio.sleep(0.007)
    timers["second"] = scheduler.every(0.02, callback("second"), "second")
    await wait_until(lambda: len(beats["second"]) >= 3 and len(beats["first"]) >= 4)
    scheduler.close()
    assert set(beats["second"]) <= set(beats["first"]), beats


async def test_a_timer_made_inside_a_callback_runs_on_the_same_beat() -> None:
    scheduler = Scheduler()
    made: list[object] = []
    calls: list[int] = []
    maker = scheduler.every(0.01, lambda: made or made.append(
        scheduler.every(0.01, lambda: calls.append(1), "made")), "maker")
    await wait_until(lambda: len(calls) >= 3)
    assert maker.fired >= 4 and len(scheduler) == 2
    assert len(scheduler._beats) == 1 and scheduler._beats[0.01].handle is not None
    scheduler.close()
    assert not scheduler._beats
