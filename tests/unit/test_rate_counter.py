"""sfu/policy/rate_counter.py gives the figures of aiortc's RateCounter, which it replaces in the
Publisher's REMB estimator (issue 11: its per-millisecond loop was on the per-packet path)."""

from __future__ import annotations

from aiortc.rate import RateCounter as AiortcRateCounter
from aiortc.rate import RemoteBitrateEstimator
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.policy.rate_counter import RateCounter

# (gap in ms since the previous event, size, what to do): gaps cover the same millisecond,
# a few ms, around the window (1000) and beyond, and time going backwards.
EVENTS = st.lists(
    st.tuples(
        st.one_of(st.integers(-3, 12), st.integers(990, 1010), st.integers(1011, 5000)),
        st.integers(0, 1500),
        st.sampled_from(["add", "rate", "rate_add", "reset"]),
    ),
    max_size=200,
)


def _run(counter: RateCounter | AiortcRateCounter, events: list[tuple[int, int, str]],
         ) -> list[int | None]:
    now, seen = 10_000, []
    for gap, size, action in events:
        now += gap
        if action == "reset":
            counter.reset()
            continue
        if action.startswith("rate"):
            seen.append(counter.rate(now))
        if action.endswith("add"):
            counter.add(size, now)
    seen.append(counter.rate(now))
    return seen


@settings(max_examples=300, deadline=None)
@given(EVENTS, st.sampled_from([7, 1000]))
def test_same_rates_as_aiortc(events: list[tuple[int, int, str]], window: int) -> None:
    assert _run(RateCounter(window), events) == _run(AiortcRateCounter(window), events)


def test_remote_estimator_with_it_gives_the_same_estimates() -> None:
    """The Publisher's estimator with the replacement: the same REMB values on a 1 Mbit/s
    stream with a pause and a burst."""
    ours, theirs = RemoteBitrateEstimator(), RemoteBitrateEstimator()
    ours.incoming_bitrate = RateCounter(1000, 8000)  # type: ignore[assignment]
    got, want = steady_stream_estimates(ours, theirs)
    assert got == want
    assert any(x is not None for x in got)


def steady_stream_estimates(ours: RemoteBitrateEstimator, theirs: RemoteBitrateEstimator
                            ) -> tuple[list[object], list[object]]:
    """Both estimators' answers, packet by packet, to a 1 Mbit/s stream with a pause and a
    burst (the estimator does update on it)."""
    got: list[object] = []
    want: list[object] = []
    now, abs_send = 0, 0
    for i in range(3000):
        now += 3000 if i == 1500 else (1 if i % 37 == 0 else 9)
        abs_send = (abs_send + (now % 7) * 2000) & 0xFFFFFF
        size = 1100 if i % 10 else 300
        got.append(ours.add(now, abs_send, size, 1234))
        want.append(theirs.add(now, abs_send, size, 1234))
    return got, want
