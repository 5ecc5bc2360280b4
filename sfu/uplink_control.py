"""The shell that runs one publisher's UplinkPolicy: estimates in, publish instructions out.

Every maintenance beat (``Room.maintain``, 0.5 s) it reads what the publisher sends and its
uplink estimate (the client's own report, else our REMB estimate), asks the policy whether video
may flow and which simulcast encodings are worth sending, and tells the client when either
changes (``PublishLayers``, ``AudioOnlyChanged(direction=UP)``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sfu.events import AudioOnlyChanged, Direction, EventSink
from sfu.policy.uplink import UplinkPolicy

if TYPE_CHECKING:
    from sfu.producer import Producer
    from sfu.publisher import Publisher

logger = logging.getLogger(__name__)


class UplinkControl:
    def __init__(self, notify: EventSink, policy: UplinkPolicy | None = None) -> None:
        self.notify = notify
        self.policy = policy or UplinkPolicy()
        self.estimate_bps: int | None = None  # reported by the client (the browser's estimate)
        self.audio_only = False

    def tick_relayed(self, producers: Iterable[Producer], now: float) -> None:
        """A relay's participant (no connection: ``sfu/relay.py``): which layers of its tracks
        this room wants, so that the relay asks the far server for no more. Same rule as for a
        browser's encodings; no estimate (the far server's link is the relay's business)."""
        active: dict[str, bool] = {}
        for producer in producers:
            if producer.is_video and producer.simulcast:
                active.update(self.policy.active_layers(producer, now))
        layers = self.policy.message(True, active) if active else None
        if layers is not None:
            self.notify(layers)

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
