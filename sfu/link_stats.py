"""What the server knows of one participant's downlink, for the participant list (issue 12):
loss of what we send them, the round trip the send-side estimator measured, the best video
layer we forward them now, their estimate and whether they are on audio only.

Read on demand (a client's ``quality`` report asks for it), from the objects the media plane
already keeps: nothing here runs per packet or on a timer. A plane that can tell implements
``LinkStatsSource``; others (a plane in another process) simply do not, and the participant
list shows the client's own figures only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sfu.room import Participant


@dataclass(frozen=True, slots=True)
class LinkStats:
    loss: float | None
    """Fraction lost of our media streams in their last RTCP receiver report (None when none is
    fresh). Not the transport-cc loss: that counts our probes' padding, which a link near its
    limit loses by design, and would call a good connection poor."""
    rtt_ms: int | None
    """Round trip from transport-cc feedback; None for subscribers without it."""
    layer: int
    """Best video layer forwarded to them now (0 lowest); -1 when none."""
    estimate_bps: int | None
    audio_only: bool


@runtime_checkable
class LinkStatsSource(Protocol):
    def link_stats(self, room: str, participant_id: str) -> LinkStats | None: ...


def participant_link(participant: Participant, now: float) -> LinkStats | None:
    """None until the participant has a subscribing connection."""
    subscriber = participant.subscriber
    if subscriber is None:
        return None
    downlink = subscriber.downlink
    estimator = downlink.estimator
    loss = downlink.recent_loss(now)
    rtt_s: float | None = None
    estimate: float | None = downlink.remb_bps
    if estimator is not None:
        rtt_s = getattr(estimator, "rtt_s", None)
        estimate = estimator.estimate_bps
    layers = [c.current_layer for c in subscriber.consumers.values()
              if c.producer.is_video and c.pause_reason is None and c.current_layer is not None]
    policy = downlink.policy
    return LinkStats(
        loss=None if loss is None else round(min(max(loss, 0.0), 1.0), 4),
        rtt_ms=None if rtt_s is None else round(rtt_s * 1000),
        layer=max(layers, default=-1),
        estimate_bps=None if estimate is None else int(estimate),
        audio_only=bool(policy.gate.audio_only or policy.user_audio_only),
    )
