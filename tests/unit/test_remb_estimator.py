"""sfu/remb_estimator.py gives the estimates of aiortc's RemoteBitrateEstimator, whose per-packet
parts it replaces in the Publisher (issue 11)."""

from __future__ import annotations

from aiortc.rate import OveruseEstimator, RemoteBitrateEstimator
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.remb_estimator import MinPeriodOveruseEstimator, new_remote_estimator
from tests.unit.test_rate_counter import steady_stream_estimates


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(-50, 200).map(float), st.floats(-1e3, 1e3)),
                max_size=200))
def test_min_frame_period_as_aiortc(deltas: list[float]) -> None:
    ours, theirs = MinPeriodOveruseEstimator(), OveruseEstimator()
    for delta in deltas:
        assert ours.update_min_frame_period(delta) == theirs.update_min_frame_period(delta)
    assert ours.ts_delta_hist == theirs.ts_delta_hist


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 9000), st.integers(50, 1200)),
                min_size=1, max_size=600))
def test_estimates_as_aiortc(steps: list[tuple[int, int, int]]) -> None:
    """Random arrival gaps, send-time steps and sizes: the same REMB values, packet by packet."""
    ours, theirs = new_remote_estimator(), RemoteBitrateEstimator()
    now, abs_send = 1000, 0
    for gap, send_step, size in steps:
        now += gap
        abs_send = (abs_send + send_step) & 0xFFFFFF
        assert ours.add(now, abs_send, size, 99) == theirs.add(now, abs_send, size, 99)


def test_a_steady_stream_gives_the_same_estimates() -> None:
    """A 1 Mbit/s stream with a pause and a burst (the estimator does update on it)."""
    got, want = steady_stream_estimates(new_remote_estimator(), RemoteBitrateEstimator())
    assert got == want
    assert any(value is not None for value in got)
