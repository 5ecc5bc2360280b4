"""The ramp's verdict: a capacity only when the load generator was not the bottleneck."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.ramp import cpu_split, generator_bound, rss_per_participant, verdict
from loadtest.server import BenchError


def step(n: int, breaches: list[str] | None = None, gen: float = 30.0,
         bound: bool = False) -> dict[str, Any]:
    return {"participants": n, "breaches": breaches or [], "loadgen_cpu_pct": gen,
            "generator_bound": bound, "rss_per_participant_mib": 2.5,
            "server": {"cpu_pct": 50.0, "rss_mb": 200.0}}


def test_the_capacity_is_the_last_step_that_kept_every_objective() -> None:
    result = verdict([step(4), step(8), step(12, ["loss 0.9% > 0.5%"])], "loss")
    assert result["capacity"] == 8 and result["capacity_called"]
    assert not result["capacity_is_lower_bound"] and result["recommended_room_limit"] == 6
    assert result["at_capacity"]["participants"] == 8
    assert result["at_capacity"]["loadgen_cpu_pct"] == 30.0


def test_no_capacity_is_called_when_the_generator_was_the_bottleneck() -> None:
    result = verdict([step(4), step(8, ["delay p95 40 ms > 30 ms"], 95.0, bound=True)],
                     "the load generator was the bottleneck")
    assert not result["capacity_called"] and result["generator_limited"]
    assert result["recommended_room_limit"] is None and result["capacity_is_lower_bound"]
    assert result["capacity"] == 4  # quality held that far


def test_a_ramp_that_never_broke_gives_a_lower_bound() -> None:
    result = verdict([step(4), step(8)], "max participants")
    assert result["capacity"] == 8 and result["capacity_is_lower_bound"]
    assert result["capacity_called"]


def test_generator_bound_is_over_80_percent_of_its_cores() -> None:
    assert not generator_bound(79.0, 1) and generator_bound(81.0, 1)
    assert not generator_bound(150.0, 2) and generator_bound(170.0, 2)
    assert not generator_bound(None, 1)


def test_cpu_split_gives_the_server_one_core_and_the_generator_the_rest() -> None:
    assert cpu_split(None, {0, 1}) == (None, {0, 1})
    assert cpu_split(0, {0, 1, 2}) == ({0}, {1, 2})
    with pytest.raises(BenchError):
        cpu_split(5, {0, 1})
    with pytest.raises(BenchError):
        cpu_split(0, {0})


def test_memory_per_participant_is_the_growth_per_participant_in_mib() -> None:
    assert rss_per_participant(100e0 + 2**20 * 50 / 1e6, 100.0, 50) == 1.0
    assert rss_per_participant(None, 100.0, 5) is None
    assert rss_per_participant(120.0, 100.0, 0) is None


def test_no_capacity_is_called_when_other_work_starved_the_server_as_it_broke() -> None:
    from loadtest.ramp import starved

    broken = step(12, ["loss 3% > 0.5%"])
    broken["server_starved"] = starved(0.6)
    result = verdict([step(4), step(8), broken], "loss")
    assert result["machine_limited"] and not result["capacity_called"]
    assert result["capacity"] == 8 and result["recommended_room_limit"] is None
    fine = step(12, ["loss 3% > 0.5%"])
    fine["server_starved"] = starved(0.05)
    assert verdict([step(4), step(8), fine], "loss")["capacity_called"]
    assert not starved(None)


def test_run_delay_is_read_from_schedstat_and_zero_for_a_gone_process() -> None:
    from loadtest.run import run_delay_share
    from loadtest.server import process_wait_s

    assert process_wait_s() >= 0.0
    assert process_wait_s(2**22 + 12345) == 0.0  # no such process: nothing, no exception
    assert run_delay_share(1.0, 3.0) == 0.75 and run_delay_share(0.0, 0.0) is None
    assert run_delay_share(1.0, None) is None


async def test_the_pacer_calls_every_participant_until_removed() -> None:
    import asyncio

    from loadtest.pacer import Pacer

    pacer = Pacer(0.002)
    calls: dict[str, int] = {"a": 0, "b": 0}
    a, b = object(), object()

    def fail(_now: float) -> None:
        calls["b"] += 1
        raise RuntimeError("one participant's bug")

    pacer.add(a, lambda now: calls.__setitem__("a", calls["a"] + 1))
    pacer.add(b, fail)
    for _ in range(200):
        if calls["a"] >= 5:
            break
        await asyncio.sleep(0.005)
    assert calls["a"] >= 5 and calls["b"] >= 5 and pacer.errors >= 5  # b's bug stops nobody
    pacer.remove(a)
    pacer.remove(b)
    assert len(pacer) == 0
    seen = calls["a"]
    await asyncio.sleep(0.02)
    assert calls["a"] == seen
    await pacer.close()


def test_a_process_tree_counts_the_children_too() -> None:
    import os
    import subprocess
    import sys

    from loadtest.server import process_tree, tree_usage

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in process_tree(os.getpid())
        usage = tree_usage(os.getpid())
        assert usage["cpu_s"] > 0 and usage["rss_mb"] > 10 and usage["wait_s"] >= 0
    finally:
        child.kill()
        child.wait(10)
