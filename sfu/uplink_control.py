"""The shell that runs one publisher's UplinkPolicy: estimates in, publish instructions out.

Every maintenance beat (``Room.maintain``, 0.5 s) it reads what the publisher sends and its
uplink estimate (the client's own report, else our REMB estimate), asks the policy whether video
may flow and which simulcast encodings are worth sending, and tells the client when either
changes (``PublishLayers``, ``AudioOnlyChanged(direction=UP)``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sfu.events import AudioOnlyChanged, Direction, EventSink
from sfu.policy.uplink import UplinkPolicy

if TYPE_CHECKING:
    from sfu.publisher import Publisher

logger = logging.getLogger(__name__)


class UplinkControl:
    def __init__(self, notify: EventSink, policy: UplinkPolicy | None = None) -> None:
        self.notify = notify
        self.policy = policy or UplinkPolicy()
        self.estimate_bps: int | None = None  # reported by the client (the browser's estimate)
        self.audio_only = False

    def tick(self, publisher: Publisher, now: float) -> None:
        video = [p for p in publisher.producers.values() if p.is_video]
        if not video:
            return
        sending = sum(layer.bitrate_bps for p in video for layer in p.layers
                      if layer.active(now))
        estimate = self.estimate_bps or publisher.estimated_bitrate
        allowed = self.policy.video_allowed(estimate, sending, now)
        active: dict[str, bool] = {}
        for producer in video:
            if producer.simulcast:
                active.update(self.policy.active_layers(producer, now))
        layers = self.policy.message(allowed, active)
        if layers is not None:
            # Evidence for the uplink nudge (sfu/policy/uplink.py) in the server's log.
            logger.info("%s: publish layers video=%s %s", publisher.participant_id, allowed,
                        active)
            self.notify(layers)
        if allowed == self.audio_only:  # the state flipped
            self.audio_only = not allowed
            self.notify(AudioOnlyChanged(
                direction=Direction.UP, audio_only=not allowed,
                reason="bandwidth" if not allowed else None,
                estimate_bps=int(estimate) if estimate else None,
                threshold_bps=self.policy.gate.threshold_bps,
            ))
