"""The media plane's one interface: what signaling, the recorder and a relay may ask of the SFU.

Everything is addressed by room name and participant id; nothing outside ``sfu/`` holds a Room,
Participant, Publisher or Subscriber. Answers are small typed values, and what happens inside
comes back as typed events (``sfu/events.py``) through each participant's sink. ``Worker``
(``sfu/worker.py``) is the in-process implementation; a worker in another process (one per
core) or on another node implements the same Protocol.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sfu.diagnostics import ParticipantDiagnostics
from sfu.events import EventSink, ParticipantState
from sfu.local_subscriber import LocalSubscriber
from sfu.policy.downlink import Tile
from sfu.relay import Publication
from sfu.types import Kind


class Target(enum.Enum):
    """Which of a participant's two connections an ICE candidate belongs to."""

    PUBLISHER = "publisher"
    SUBSCRIBER = "subscriber"


class UnknownParticipant(KeyError):
    """No such participant in that room (left, or never joined)."""


class BadDescription(ValueError):
    """An SDP the media plane cannot use; the message says why."""


class NotDescribed(RuntimeError):
    """An ICE candidate came before the description it belongs to."""


@dataclass(frozen=True, slots=True)
class RoomState:
    name: str
    participants: tuple[ParticipantState, ...]
    pinned: str | None


@dataclass(slots=True)
class PlaneStats:
    """Counters and gauges of the whole media plane, for ``/metrics`` and ``/healthz``."""

    rooms: int = 0
    participants: int = 0
    producers: int = 0
    consumers: int = 0
    totals: Counter[str] = field(default_factory=Counter)  # monotonic: left + live participants
    audio_only: dict[str, int] = field(default_factory=lambda: {"down": 0, "up": 0})
    paused: Counter[str] = field(default_factory=Counter)  # consumers by PauseReason value
    datagram_drops: Counter[str] = field(default_factory=Counter)  # by DatagramDrop value


class MediaPlane(Protocol):
    ice_servers: tuple[str, ...]

    def start(self) -> None: ...

    async def close(self) -> None: ...

    def join(self, room: str, participant_id: str, name: str, events: EventSink,
             all_layers: bool = False) -> RoomState:
        """Enter a room; returns the room as it was just before (who is there, who is pinned).
        ``all_layers``: receive every simulcast layer, each as its own stream (a relay,
        ``sfu/layer_streams.py``), instead of the one layer the downlink policy picks."""
        ...

    async def leave(self, room: str, participant_id: str) -> None: ...

    async def publish(self, room: str, participant_id: str, offer_sdp: str,
                      screen_mids: Collection[str] = ()) -> str:
        """Apply the participant's publish offer; returns the answer (raises on a bad offer).
        ``screen_mids``: new m-lines that carry a shared screen rather than a camera."""
        ...

    def subscribe_answer(self, room: str, participant_id: str, answer_sdp: str) -> bool:
        """The answer to our last subscribe offer; False when no offer is outstanding.
        Raises ``BadDescription`` for an answer that does not parse (the offer stays pending)."""
        ...

    async def add_ice_candidate(self, room: str, participant_id: str, target: Target,
                                candidate: Any | None) -> None:
        """A remote candidate (None: end of candidates); raises ``NotDescribed`` if too early."""
        ...

    def set_muted(self, room: str, participant_id: str, kind: Kind, muted: bool) -> None:
        """Pause (or resume) forwarding of a participant's audio or video to everyone."""
        ...

    def pin(self, room: str, participant_id: str | None) -> None: ...

    def set_tiles(self, room: str, participant_id: str, tiles: Mapping[str, Tile]) -> None: ...

    def set_shown(self, room: str, participant_id: str, shown: Sequence[str]) -> None:
        """The tiles the participant's client shows now (its gallery page), for last-N."""

    def set_audio_only(self, room: str, participant_id: str, enabled: bool) -> None: ...

    def set_uplink_estimate(self, room: str, participant_id: str, bps: int | None) -> None: ...

    def request_keyframe(self, room: str, participant_id: str) -> int:
        """Ask a participant's video producers for a keyframe; returns how many were asked."""
        ...

    def subscribe_local(self, room: str, subscriber_id: str,
                        subscriber: LocalSubscriber) -> None:
        """An in-process subscriber (the recorder) consumes every track of the room."""
        ...

    def unsubscribe_local(self, room: str, subscriber_id: str) -> None: ...

    def publish_local(self, room: str, participant_id: str, name: str,
                      events: EventSink) -> Publication:
        """An in-process publisher (a relay, the inverse of ``subscribe_local``): a participant
        with no connection whose tracks are fed as RTP bytes; ``leave`` removes it."""
        ...

    def diagnostics(self, room: str) -> tuple[ParticipantDiagnostics, ...]:
        """Per participant: connections, layers received, estimate, loss, round trip,
        audio-only and why (support staff, issue 13)."""
        ...

    def room_state(self, room: str) -> RoomState | None: ...

    def stats(self) -> PlaneStats: ...
