"""Allocator and audio-only gate: given estimates and tile sizes -> layers."""

from __future__ import annotations

import pytest

from sfu.policy.allocator import Priority, VideoDemand, allocate, layer_for_tile
from sfu.policy.audio_only import AudioOnlyGate

RATES = (150_000, 500_000, 1_500_000)


def demand(key: str, max_layer: int | None = 2, priority: Priority = Priority.NORMAL,
           current: int | None = None, area: int = 0) -> VideoDemand:
    return VideoDemand(key, priority, max_layer, RATES, current, area)


@pytest.mark.parametrize(("budget", "expected"), [
    (100_000, None),      # not even the lowest layer fits
    (200_000, 0),
    (700_000, 1),
    (1_600_000, 1),       # f's extra 1 M fits, but not with the 15 % upgrade margin
    (1_800_000, 2),
    (10_000_000, 2),
])
def test_one_consumer_gets_the_best_layer_that_fits(budget: float, expected: int | None) -> None:
    assert allocate(budget, [demand("a")]) == {"a": expected}


@pytest.mark.parametrize(("width", "layer"), [(160, 0), (384, 0), (385, 1), (640, 1),
                                              (768, 1), (769, 2), (1920, 2)])
def test_tile_width_caps_the_layer(width: int, layer: int) -> None:
    assert layer_for_tile(width, (320, 640, 1280)) == layer


def test_small_tile_never_gets_the_full_layer() -> None:
    small = demand("small", max_layer=layer_for_tile(300, (320, 640, 1280)))
    assert allocate(50_000_000, [small]) == {"small": 0}


def test_hidden_tile_gets_nothing() -> None:
    assert allocate(50_000_000, [demand("hidden", max_layer=None)]) == {"hidden": None}


def test_priority_order_pinned_then_speaker_then_bigger_tiles() -> None:
    demands = [
        demand("small", area=100), demand("big", area=10_000),
        demand("speaker", priority=Priority.SPEAKER), demand("chair", priority=Priority.PINNED),
    ]
    grants = allocate(2_400_000, demands)
    # Phase 1: everyone gets q (4 x 150 k = 600 k). Phase 2 raises in priority order, round
    # robin: chair h (+350), speaker h (+350), big h (+350), small h (+350) = 2.0 M; then chair
    # would need +1 M for f: does not fit.
    assert grants == {"chair": 1, "speaker": 1, "big": 1, "small": 1}
    assert allocate(700_000, demands) == dict.fromkeys(("chair", "speaker", "big", "small"), 0)
    grants = allocate(1_050_000, demands)  # room for one step up: the chair's
    assert grants == {"chair": 1, "speaker": 0, "big": 0, "small": 0}


def test_lowest_layers_go_by_priority_when_short() -> None:
    demands = [demand("n1"), demand("n2"), demand("chair", priority=Priority.PINNED)]
    assert allocate(350_000, demands) == {"chair": 0, "n1": 0, "n2": None}


def test_hysteresis_keeps_a_layer_without_margin() -> None:
    # With f already granted, 1.6 M keeps it; a consumer without it does not get it at 1.6 M.
    assert allocate(1_600_000, [demand("a", current=2)]) == {"a": 2}
    assert allocate(1_600_000, [demand("a", current=1)]) == {"a": 1}


def test_unmeasured_single_layer_uses_default_cost() -> None:
    single = VideoDemand("s", Priority.NORMAL, 0, (0,))
    assert allocate(900_000, [single]) == {"s": None}
    assert allocate(1_200_000, [single]) == {"s": 0}


def test_gate_enters_after_the_estimate_stays_low() -> None:
    gate = AudioOnlyGate(threshold_bps=2_000_000, enter_after_s=0.5)
    assert not gate.update(1_500_000, 0.0)
    assert not gate.update(1_500_000, 0.4)
    assert gate.update(1_400_000, 0.5) and gate.audio_only
    assert gate.entered_at == 0.5


def test_gate_ignores_a_single_dip() -> None:
    gate = AudioOnlyGate(enter_after_s=0.5)
    for t, estimate in [(0.0, 1_000_000), (0.3, 3_000_000), (0.6, 1_000_000), (0.9, 1_000_000)]:
        gate.update(estimate, t)
    assert not gate.audio_only


def test_gate_recovers_only_after_five_seconds_above_the_recovery_level() -> None:
    gate = AudioOnlyGate(threshold_bps=2_000_000, recover_factor=1.25, recover_after_s=5.0,
                         enter_after_s=0.0)
    gate.update(1_000_000, 0.0)
    assert gate.audio_only
    gate.update(2_400_000, 1.0)  # above threshold but below 2.5 M: not enough
    gate.update(2_600_000, 2.0)
    gate.update(2_600_000, 6.9)
    assert gate.audio_only
    gate.update(2_100_000, 7.0)  # dips: the 5 s start again
    gate.update(2_600_000, 8.0)
    assert not gate.update(2_600_000, 12.9)
    assert gate.update(2_600_000, 13.0) and not gate.audio_only


def test_gate_without_estimate_changes_nothing() -> None:
    gate = AudioOnlyGate()
    assert not gate.update(None, 0.0) and not gate.audio_only
