"""One connection's downlink estimate from REMBs that cover all, or only some, of its streams."""

from __future__ import annotations

from sfu.rtcp_router import MAX_REMB_SOURCES, REMB_SOURCE_TTL_S, RembAggregator


def test_a_browser_remb_for_the_whole_connection_replaces_the_previous_one() -> None:
    rembs = RembAggregator()
    assert rembs.add(1_500_000, frozenset({1, 2, 3}), 0.0) == 1_500_000
    assert rembs.add(900_000, frozenset({1, 2, 3}), 0.5) == 900_000
    assert rembs.add(800_000, frozenset({1, 2}), 1.0) == 800_000  # a stream went away


def test_per_stream_rembs_add_up_so_one_low_rate_stream_does_not_cap_the_connection() -> None:
    """aiortc: one REMB per receiver. A tiny stream's 20 kbit/s is not the link's capacity."""
    rembs = RembAggregator()
    rembs.add(1_200_000, frozenset({1}), 0.0)
    assert rembs.add(20_000, frozenset({2}), 0.1) == 1_220_000
    assert rembs.add(1_000_000, frozenset({1}), 0.2) == 1_020_000


def test_stale_sources_and_unknown_ssrcs() -> None:
    rembs = RembAggregator()
    rembs.add(1_000_000, frozenset({1}), 0.0)
    assert rembs.add(50_000, frozenset({2}), REMB_SOURCE_TTL_S + 0.1) == 50_000
    # a REMB naming none of our SSRCs speaks for the whole connection
    assert rembs.add(700_000, frozenset(), REMB_SOURCE_TTL_S + 0.2) == 700_000
    assert rembs.add(300_000, frozenset({5}), REMB_SOURCE_TTL_S + 0.3) == 300_000


def test_a_flood_of_ssrc_sets_stays_bounded() -> None:
    rembs = RembAggregator()
    for i in range(10 * MAX_REMB_SOURCES):
        rembs.add(1000, frozenset({i}), i * 0.001)
    assert len(rembs._sources) <= MAX_REMB_SOURCES + 1
