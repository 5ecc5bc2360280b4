"""The comparison's bookkeeping in ``diemcau bench forward --against janus`` (no Janus needed:
the runs themselves are a benchmark, never part of the tests)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from bench import janus_forward
from bench.janus_forward import busy_share, format_run, starved_run, window_figures


def test_a_starved_run_gets_no_ratio() -> None:
    full = {"server": "janus", "subscribers": 16, "received_packets_per_s": 16 * 168.0}
    short = {"server": "diemcau", "subscribers": 16, "received_packets_per_s": 16 * 150.0}
    assert not starved_run(full) and full["delivery"] > 1
    assert starved_run(short) and short["delivery"] < 0.95
    assert starved_run({"server": "janus", "subscribers": 4})  # failed: no figure at all


def test_window_figures_are_cpu_time_per_received_packet() -> None:
    figures = window_figures(10.0, 0.5, 25_000, 0.8, (100, 1000), (250, 1200))
    assert figures["cpu_us_per_received_packet"] == 20.0
    assert figures["server_cpu_percent"] == 5.0 and figures["loadgen_cpu_percent"] == 8.0
    assert figures["machine_busy_share"] == 0.75 == busy_share((100, 1000), (250, 1200))
    line = format_run({"server": "diemcau", "subscribers": 16, **figures})
    assert "20.00 us/pkt" in line and "busy 75 %" in line
    assert "failed: boom" in format_run({"server": "janus", "subscribers": 16, "error": "boom"})


def test_server_cpu_pins_each_server_alone_and_the_load_elsewhere(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    mine = os.sched_getaffinity(0)
    if len(mine) < 2:
        pytest.skip("needs two cores")
    core = min(mine)
    seen: list[tuple[str, set[int] | None, set[int]]] = []

    def fake(name: str, us: float) -> Any:
        def run(n: int, duration: float, server_cpus: set[int] | None) -> dict[str, Any]:
            seen.append((name, server_cpus, os.sched_getaffinity(0)))
            packets = n * 1680  # 10 s at 168 packets/s to each subscriber
            figures = window_figures(10.0, us * packets / 1e6, packets, 0.5, (0, 0), (1, 10))
            return {"server": name, "subscribers": n, **figures}
        return run

    monkeypatch.setattr(janus_forward, "diemcau_run", fake("diemcau", 10.0))
    monkeypatch.setattr(janus_forward, "janus_run", fake("janus", 25.0))
    assert janus_forward.compare([16], 1.0, pairs=1, server_cpu=core) == 0
    assert [(name, cpus) for name, cpus, _ in seen] == [("diemcau", {core}), ("janus", {core})]
    assert all(load == mine - {core} for _, _, load in seen)  # the load off the servers' core
    assert os.sched_getaffinity(0) == mine  # restored
    out = capsys.readouterr().out
    assert f"servers pinned to core {core}" in out and "0.400" in out
    assert janus_forward.compare([16], 1.0, pairs=1, server_cpu=max(mine) + 1) == 2
