"""Per-participant diagnostics for support staff (issue 13): what a person at a help desk asks
first. Read from the live objects on demand (a console poll), never on the packet path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sfu.room import Participant, Room


@dataclass(frozen=True, slots=True)
class ParticipantDiagnostics:
    id: str
    name: str
    publish_state: str
    """The publishing connection's state ("new", "connecting", "connected", "failed", ...)
    or "none" before the first offer."""
    subscribe_state: str
    layers_received: dict[str, int | None]
    """Per video producer it receives (by publisher id): the simulcast layer forwarded now
    (0 = lowest), None while paused or waiting for a keyframe."""
    estimate_bps: float | None
    """The downlink bandwidth estimate (transport-cc, else REMB); None before any."""
    loss: float
    """Fraction of our packets it lost recently (0..1)."""
    rtt_s: float | None
    """Round trip from the send-side estimator (transport-cc only)."""
    audio_only: bool
    audio_only_reason: str | None
    """"user" (the participant asked), "bandwidth" (under the threshold), "uplink"
    (its own video is off: its uplink is congested), or None."""


def diagnose(participant: Participant, now: float) -> ParticipantDiagnostics:
    publisher, subscriber = participant.publisher, participant.subscriber
    layers: dict[str, int | None] = {}
    estimate = None
    loss = 0.0
    rtt = None
    audio_only, reason = False, None
    if subscriber is not None:
        for consumer in subscriber.consumers.values():
            if consumer.producer.is_video:
                layers[consumer.producer.participant_id] = consumer.current_layer
        downlink = subscriber.downlink
        estimate = downlink.estimate_bps
        loss = downlink.loss_fraction(now)
        rtt = downlink.rtt_s
        if downlink.policy.user_audio_only:
            audio_only, reason = True, "user"
        elif downlink.policy.gate.audio_only:
            audio_only, reason = True, "bandwidth"
    if not audio_only and participant.uplink.audio_only:
        audio_only, reason = True, "uplink"
    return ParticipantDiagnostics(
        id=participant.id, name=participant.name,
        publish_state=str(publisher.pc.connectionState) if publisher is not None else "none",
        subscribe_state=str(subscriber.pc.connectionState) if subscriber is not None else "none",
        layers_received=layers, estimate_bps=estimate, loss=loss, rtt_s=rtt,
        audio_only=audio_only, audio_only_reason=reason,
    )


def room_diagnostics(room: Room, now: float) -> tuple[ParticipantDiagnostics, ...]:
    return tuple(diagnose(participant, now) for participant in room.participants.values())
