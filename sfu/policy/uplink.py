"""What a publisher should send: which simulcast encodings, and whether video at all (pure).

Encodings nobody consumes are paused (the client sets ``active=false``) after a grace period, so
a layer a subscriber might switch back to is not stopped and restarted every few seconds; the
lowest one always stays on, ready for new subscribers. Below 2 Mbps of uplink (measured, not
merely unprobed: the estimate must fall under what the publisher sends) the publisher is told
to stop video; since a silent camera cannot prove the link has recovered, video is retried after
a while and the browser's own estimator probes as the encodings come back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sfu.events import PublishLayers
from sfu.policy.audio_only import CONGESTED_BELOW_SENT, AudioOnlyGate

if TYPE_CHECKING:  # the shells' objects are read, never imported at run time
    from sfu.producer import Producer

UNUSED_PAUSE_AFTER_S = 5.0
NUDGE_AFTER_S = 6.0
"""A layer a consumer wants, switched on, that has sent nothing for this long: the browser's own
estimate keeps it off (qualityLimitationReason "bandwidth"). Sending only q, its estimate cannot
rise (the app-limited trap); a false overuse on a busy machine puts it there and it never leaves
(issue 10). Switching the layer off and on again changes the encoder's maximum bitrate, on which
libwebrtc probes (ProbeController, probing on a new max allocated bitrate)."""
NUDGE_OFF_S = 1.0
MAX_NUDGE_INTERVAL_S = 15.0
"""A silent layer costs nothing to switch off and on: the cap keeps retrying often enough to leave
the trap within a meeting's first minute, rarely enough not to probe a slow uplink constantly."""
UPLINK_RETRY_S = 15.0


@dataclass
class UplinkPolicy:
    gate: AudioOnlyGate = field(default_factory=AudioOnlyGate)
    _last_needed: dict[tuple[str, int], float] = field(default_factory=dict)
    # per (producer, layer): wanted but silent since, the nudge's off-until, the current wait
    _silent_since: dict[tuple[str, int], float] = field(default_factory=dict)
    _nudge_until: dict[tuple[str, int], float] = field(default_factory=dict)
    _nudge_wait: dict[tuple[str, int], float] = field(default_factory=dict)
    reported: tuple[bool, tuple[tuple[str, bool], ...]] | None = None

    def active_layers(self, producer: Producer, now: float) -> dict[str, bool]:
        """rid -> keep sending, for a simulcast producer."""
        top_wanted = 0
        for consumer in producer.consumers:
            if consumer.pause_reason is None:
                top_wanted = max([top_wanted, *(x for x in (
                    consumer.wanted_layer, consumer.target_layer, consumer.current_layer)
                    if x is not None)])
        # Every layer up to the highest one wanted stays on: they are the fallback during a
        # switch, and the ramp a browser's estimator climbs (sending only q, it can never
        # learn it has room for f: the app-limited trap, on the publisher's side).
        wanted = set(range(top_wanted + 1))
        lowest_flows = producer.layers[0].active(now)
        active: dict[str, bool] = {}
        for layer in producer.layers:
            key = (producer.id, layer.index)
            if layer.index in wanted:
                self._last_needed[key] = now
            last = self._last_needed.setdefault(key, now)  # new layers get the grace period
            on = now - last < UNUSED_PAUSE_AFTER_S
            if on and layer.index > 0 and self._nudged(key, layer.index in wanted and lowest_flows
                                                       and not layer.active(now), now):
                on = False
            active[layer.rid or str(layer.index)] = on
        return active

    def _nudged(self, key: tuple[str, int], silent: bool, now: float) -> bool:
        """Is this wanted-but-silent layer switched off for a moment? (see NUDGE_AFTER_S)"""
        if now < self._nudge_until.get(key, float("-inf")):
            return True
        if not silent:
            self._silent_since.pop(key, None)
            self._nudge_wait.pop(key, None)
            return False
        since = self._silent_since.setdefault(key, now)
        wait = self._nudge_wait.get(key, NUDGE_AFTER_S)
        if now - since < wait:
            return False
        self._nudge_until[key] = now + NUDGE_OFF_S
        self._silent_since[key] = now + NUDGE_OFF_S
        self._nudge_wait[key] = min(wait * 2, MAX_NUDGE_INTERVAL_S)
        return True

    def video_allowed(self, estimate_bps: float | None, sending_bps: float, now: float) -> bool:
        congested = estimate_bps is not None and estimate_bps < CONGESTED_BELOW_SENT * sending_bps
        self.gate.update(estimate_bps, now, congested)
        if self.gate.audio_only and self.gate.entered_at is not None \
                and now - self.gate.entered_at >= UPLINK_RETRY_S:
            self.gate.audio_only = False  # try again: the browser probes as video restarts
            self.gate.entered_at = None
        return not self.gate.audio_only

    def message(self, video: bool, active: dict[str, bool]) -> PublishLayers | None:
        """What the publisher should send, when it changed since the last time."""
        state = (video, tuple(sorted(active.items())))
        if state == self.reported:
            return None
        self.reported = state
        return PublishLayers(video=video, active=active)
