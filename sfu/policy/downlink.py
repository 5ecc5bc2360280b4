"""What one subscriber receives: its audio-only state, each video consumer's layer, and probes.

Pure policy (time passed in, no I/O): the Subscriber shell feeds it the current estimate and its
consumers every tick and applies the decision. The estimate is the subscriber's own
(transport-cc, send-side) or its REMB; either way it cannot rise much above what we send, so the
policy asks for a probe whenever it wants to know whether more would fit
(docs/architecture.md#probing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sfu.policy.allocator import UPGRADE_MARGIN, Priority, VideoDemand, allocate, layer_for_tile
from sfu.policy.audio_only import AudioOnlyGate
from sfu.types import PauseReason

if TYPE_CHECKING:  # the shells' objects are read, never imported at run time
    from sfu.consumer import Consumer

AUDIO_RESERVE_BPS = 48_000
"""Per audio consumer: Opus at ~32 kbit/s plus RTP/SRTP/UDP overhead."""
PROBE_INTERVAL_S = 2.0
MAX_PROBE_INTERVAL_S = 30.0
"""A probe that fails (the link is full) doubles the wait for the next one, up to 30 s: probing
an overfull link every 2 s makes layers flap. While audio-only the wait stays short."""
PROBE_HEADROOM = 1.3
"""Probe above what the wanted layers cost: the allocator grants a new layer only with its 15 %
upgrade margin (plus audio), so a probe at 1.1x would prove too little to ever get it."""
MAX_PROBE_BPS = 10_000_000
RETRY_WITHOUT_PROBES_S = 15.0
"""A REMB-only receiver cannot be probed (its estimate climbs at most 8 %/s, to 1.5x what
arrives: a 300 ms probe does not move it) and gets no video while audio-only, so its REMB can never
show the link recovered: like the uplink, video is retried after a while."""


@dataclass(frozen=True, slots=True)
class Tile:
    width: int
    height: int
    visible: bool


@dataclass
class Decision:
    targets: dict[Consumer, tuple[int | None, PauseReason | None]]
    audio_only: bool
    reason: str | None  # "bandwidth" | "user" | None
    changed: bool  # the audio-only state (or its reason) changed: tell the client
    probe_bps: int | None = None


@dataclass
class DownlinkPolicy:
    gate: AudioOnlyGate = field(default_factory=AudioOnlyGate)
    user_audio_only: bool = False
    tiles: dict[str, Tile] = field(default_factory=dict)  # by publishing participant id
    pinned: set[str] = field(default_factory=set)
    speakers: set[str] = field(default_factory=set)
    # Last-N (sfu/policy/last_n.py): whose video this subscriber receives; None: everyone's.
    forwarded: frozenset[str] | None = None
    can_probe: bool = False
    _last_probe: float = float("-inf")
    _probe_interval: float = PROBE_INTERVAL_S
    _reported: tuple[bool, str | None] = (False, None)

    def probe_outcome(self, succeeded: bool) -> None:
        """A probe's verdict: back off after failures, probe freely after a success."""
        if succeeded:
            self._probe_interval = PROBE_INTERVAL_S
        else:
            self._probe_interval = min(self._probe_interval * 2, MAX_PROBE_INTERVAL_S)

    def _demand(self, consumer: Consumer) -> VideoDemand:
        producer = consumer.producer
        owner = producer.participant_id
        tile = self.tiles.get(owner)
        top = len(producer.layers) - 1
        if not self.forwards(owner):
            max_layer: int | None = None
        elif tile is None:
            max_layer = top  # no layout reported (e.g. a non-browser client)
        elif not tile.visible:
            max_layer = None
        else:
            # Publishers do not report their layers' widths: layer_for_tile assumes q/h/f.
            max_layer = layer_for_tile(tile.width, (None,) * len(producer.layers))
        if producer.source == "screen":
            # Shown large to everyone: the top layer whatever the camera tile's size.
            priority = Priority.SCREEN
            if max_layer is not None:
                max_layer = top
        elif owner in self.pinned:
            priority = Priority.PINNED
        elif owner in self.speakers:
            priority = Priority.SPEAKER
        else:
            priority = Priority.NORMAL
        return VideoDemand(
            key=str(id(consumer)),
            priority=priority,
            max_layer=max_layer,
            layer_bps=tuple(layer.bitrate_bps for layer in producer.layers),
            current=consumer.target_layer if consumer.pause_reason is None else None,
            tile_area=tile.width * tile.height if tile else 0,
        )

    def forwards(self, owner: str) -> bool:
        """Is ``owner``'s video among those this subscriber receives (last-N)?"""
        return self.forwarded is None or owner in self.forwarded

    def _hidden(self, consumer: Consumer) -> PauseReason:
        """Why a consumer without a layer to fill is paused (not for lack of bandwidth)."""
        if self.forwards(consumer.producer.participant_id):
            return PauseReason.NOT_VISIBLE
        return PauseReason.NOT_IN_LAST_N

    def decide(
        self, estimate_bps: float | None, consumers: Sequence[Consumer], now: float,
        congested: bool = True, audio_consumers: int | None = None,
    ) -> Decision:
        """Targets for the video ``consumers`` given; audio ones only share the budget:
        ``audio_consumers`` of them (None: those in ``consumers``)."""
        self.gate.update(estimate_bps, now, congested)
        if (self.gate.audio_only and not self.can_probe and self.gate.entered_at is not None
                and now - self.gate.entered_at >= RETRY_WITHOUT_PROBES_S):
            self.gate.audio_only = False  # retry video: the next REMB measures it again
            self.gate.entered_at = None
            self.gate._below_since = None
        audio_only = self.user_audio_only or self.gate.audio_only
        reason = "user" if self.user_audio_only else ("bandwidth" if audio_only else None)
        video = [c for c in consumers if c.producer.is_video and not c.producer.muted]
        audio_count = (len(consumers) - len(video) if audio_consumers is None
                       else audio_consumers)
        targets: dict[Consumer, tuple[int | None, PauseReason | None]] = {}
        demands = {c: self._demand(c) for c in video}
        if audio_only:
            # Outside last-N stays NOT_IN_LAST_N (out of the producer's fan-out): the shell
            # does not look at such a consumer again until the set changes.
            targets = {c: (None, PauseReason.BANDWIDTH if self.forwards(
                c.producer.participant_id) else PauseReason.NOT_IN_LAST_N) for c in video}
        elif estimate_bps is None:
            # No estimate yet: lowest layers, which start fast; the estimate follows.
            targets = {c: (0, None) if d.max_layer is not None else (None, self._hidden(c))
                       for c, d in demands.items()}
        else:
            budget = estimate_bps - audio_count * AUDIO_RESERVE_BPS
            if not congested:
                # An estimate that is no measured limit must not pause video: with nothing
                # flowing no estimate could ever rise. The lowest layers at least (with the
                # allocator's upgrade margin), as when there is no estimate yet.
                budget = max(budget, sum(UPGRADE_MARGIN * d.cost(0) for d in demands.values()
                                         if d.max_layer is not None))
            grants = allocate(budget, list(demands.values()))
            for consumer, demand in demands.items():
                layer = grants[demand.key]
                why = self._hidden(consumer) if demand.max_layer is None else PauseReason.BANDWIDTH
                targets[consumer] = (layer, why if layer is None else None)
        decision = Decision(targets, audio_only, reason, (audio_only, reason) != self._reported)
        self._reported = (audio_only, reason)
        decision.probe_bps = self._probe(estimate_bps, demands.values(), audio_only, now)
        return decision

    def _probe(self, estimate_bps: float | None, demands: Iterable[VideoDemand], audio_only: bool,
               now: float) -> int | None:
        """A probe target when we need to know whether more would fit, at most every 2 s."""
        interval = PROBE_INTERVAL_S if audio_only else self._probe_interval
        if not self.can_probe or self.user_audio_only or now - self._last_probe < interval:
            return None
        if estimate_bps is None:
            return None  # no feedback yet: the connection may not even be up
        wanted = sum(d.cost(d.max_layer) for d in demands
                     if d.max_layer is not None) + AUDIO_RESERVE_BPS
        if audio_only or estimate_bps < self.gate.threshold_bps:
            # Below the threshold we must know whether the link is: probe at the level that
            # would bring (or keep) video (without probing the rule traps:
            # docs/architecture.md#probing).
            wanted = max(wanted, self.gate.recover_bps)
        target = int(min(wanted * PROBE_HEADROOM, MAX_PROBE_BPS))
        if estimate_bps >= target:
            return None
        self._last_probe = now
        return target
