"""Share one subscriber's downlink estimate over its video consumers (pure, time-free).

Two phases, as mediasoup does: first every consumer in priority order gets its lowest layer if
it fits, then layers are raised one step at a time, round-robin in priority order, while the
budget lasts. Priority: screen share and the pinned/chair tile, then active speakers, then the
rest by tile size. A tile never gets more than its size needs, a hidden tile gets nothing.
Hysteresis: a layer the consumer does not already have must fit with a margin, so small
fluctuations of the estimate do not make layers flap.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_LAYER_BPS = (150_000, 500_000, 1_500_000)
"""What the web client asks of its q/h/f encodings: used until a layer's rate is measured."""
SINGLE_LAYER_BPS = 1_000_000
UPGRADE_MARGIN = 1.15
TILE_SLACK = 1.2
"""A layer serves a tile up to 1.2x its own width: 320 px covers tiles up to 384 px wide."""


class Priority(enum.IntEnum):
    SCREEN = 0
    PINNED = 1
    SPEAKER = 2
    NORMAL = 3


@dataclass(frozen=True, slots=True)
class VideoDemand:
    key: str
    priority: Priority
    max_layer: int | None  # the highest layer the tile needs; None = not visible
    layer_bps: tuple[int, ...]  # measured bitrate per layer, 0 = unknown
    current: int | None = None  # the layer granted last time (for hysteresis)
    tile_area: int = 0

    def cost(self, layer: int) -> int:
        measured = self.layer_bps[layer] if layer < len(self.layer_bps) else 0
        if measured:
            return measured
        if len(self.layer_bps) == 1:
            return SINGLE_LAYER_BPS
        return DEFAULT_LAYER_BPS[min(layer, len(DEFAULT_LAYER_BPS) - 1)]


def layer_for_tile(width: int, layer_widths: Sequence[int | None]) -> int:
    """The smallest layer wide enough for a tile ``width`` device pixels wide."""
    top = len(layer_widths) - 1
    for index, layer_width in enumerate(layer_widths):
        known = layer_width or 1280 >> (top - index)  # q/h/f are 1/4, 1/2, 1 of 1280
        if width <= known * TILE_SLACK:
            return index
    return top


def allocate(budget_bps: float, demands: Sequence[VideoDemand]) -> dict[str, int | None]:
    order = sorted(demands, key=lambda d: (d.priority, -d.tile_area, d.key))
    grants: dict[str, int | None] = {d.key: None for d in demands}
    remaining = float(budget_bps)

    def margin(demand: VideoDemand, layer: int) -> float:
        new = demand.current is None or demand.current < layer
        return UPGRADE_MARGIN if new else 1.0

    for demand in order:
        if demand.max_layer is None:
            continue
        need = demand.cost(0)
        if need * margin(demand, 0) <= remaining:
            grants[demand.key] = 0
            remaining -= need
    changed = True
    while changed:  # bounded: every pass raises at least one grant, and grants are capped
        changed = False
        for demand in order:
            granted = grants[demand.key]
            if granted is None or demand.max_layer is None or granted >= demand.max_layer:
                continue
            step = granted + 1
            extra = demand.cost(step) - demand.cost(granted)
            if extra * margin(demand, step) <= remaining:
                grants[demand.key] = step
                remaining -= extra
                changed = True
    return grants
