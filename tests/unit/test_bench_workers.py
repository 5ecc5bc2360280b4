"""``bench workers``' A/B bookkeeping (bench/workers.py): the step order alternates the
configurations, and a worker is compared with the media work it took over."""

from __future__ import annotations

from bench.workers import _median, media_us_per_packet, step_order


def test_steps_alternate_configurations_and_reverse_every_other_pair() -> None:
    assert step_order([1, 2], [1, 2], 3) == [
        (1, 1), (2, 1), (1, 2), (2, 2),
        (2, 1), (1, 1), (2, 2), (1, 2),
        (1, 1), (2, 1), (1, 2), (2, 2)]
    # never all of one configuration first, then the other (what --pairs 1 used to mean)
    assert step_order([1, 2], [1, 2, 3], 1) == [(1, 1), (2, 1), (1, 2), (2, 2), (1, 3), (2, 3)]


def test_media_cost_leaves_out_a_separate_signaling_process() -> None:
    row = {"server": {"forwarded_packets_per_s": 8000.0},
           "server_cpu_pct_by_process": {"signaling": 0.8, "worker0": 14.0, "worker1": 2.0}}
    assert media_us_per_packet(row) == 20.0  # (14 + 2) % of a core / 8000 packets/s
    one = {"server": {"forwarded_packets_per_s": 8000.0},
           "server_cpu_pct_by_process": {"signaling": 16.0}}
    assert media_us_per_packet(one) == 20.0  # one process: it is the media process
    assert media_us_per_packet({"server": {"forwarded_packets_per_s": 0.0},
                                "server_cpu_pct_by_process": {"signaling": 1.0}}) is None


def test_median() -> None:
    assert _median([3.0, None, 1.0, 2.0]) == 2.0
    assert _median([4.0, 1.0]) == 2.5
    assert _median([None]) is None
