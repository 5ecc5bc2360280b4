"""The comparison's bookkeeping in ``diemcau bench forward --against janus`` (no Janus needed:
the runs themselves are a benchmark, never part of the tests)."""

from __future__ import annotations

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
