"""Typed events out of the media plane.

The SFU tells the outside world what happened (a participant joined, a track was muted, the
downlink went audio-only, a new subscriber offer is ready) as these frozen dataclasses, delivered
synchronously to the participant's ``EventSink``. The media plane never builds client JSON:
``signaling/media_events.py`` turns each event into the WebSocket message, and the recorder (an
in-server client of the same interface) reads the same events.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sfu.types import Kind


class Direction(enum.Enum):
    DOWN = "down"  # server -> participant (its subscriber connection)
    UP = "up"  # participant -> server (its publisher connection)


class LeaveReason(enum.Enum):
    """Why the media plane itself ended a participant's presence."""

    SERVER_SHUTDOWN = "server-shutdown"
    MEDIA_WORKER_LOST = "media-worker-lost"  # the room's worker process died or hung


@dataclass(frozen=True, slots=True)
class ParticipantState:
    """What others may know of a participant in a room."""

    id: str
    name: str
    audio_muted: bool = False
    video_muted: bool = False


@dataclass(frozen=True, slots=True)
class ParticipantJoined:
    participant: ParticipantState


@dataclass(frozen=True, slots=True)
class ParticipantLeft:
    participant_id: str


@dataclass(frozen=True, slots=True)
class TrackMuted:
    participant_id: str
    kind: Kind
    muted: bool


@dataclass(frozen=True, slots=True)
class Pinned:
    participant_id: str | None


@dataclass(frozen=True, slots=True)
class Speakers:
    participant_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VideosForwarded:
    """Whose video the server forwards to this participant (last-N); the others' tiles show a
    placeholder."""

    participant_ids: tuple[str, ...]
    last_n: int


@dataclass(frozen=True, slots=True)
class SlotShown:
    """A pooled video m-line (``mid``) carries this participant's video from now on: its first
    keyframe on the slot is being sent (last-N video slots, ``sfu/video_slots.py``)."""

    mid: str
    participant_id: str
    source: str = "camera"


@dataclass(frozen=True, slots=True)
class LayerStream:
    """One simulcast layer as its own RTP stream to a subscriber that takes every layer (a
    relay, ``sfu/layer_streams.py``): the layer's RID, and the SSRCs we send it (and its
    retransmissions) with."""

    rid: str
    ssrc: int
    rtx_ssrc: int


@dataclass(frozen=True, slots=True)
class TrackDescription:
    """One m-line of a subscriber offer: whose track it carries."""

    participant_id: str
    kind: str
    stream_id: str
    source: str = "camera"  # "screen": a shared screen (shown large, top allocator priority)
    # Every simulcast layer, lowest first, for a subscriber that joined with all layers (a
    # relay); empty otherwise. The m-line's own SSRC is the top layer's.
    layers: tuple[LayerStream, ...] = ()


@dataclass(frozen=True, slots=True)
class SubscribeOffer:
    sdp: str
    tracks: Mapping[str, TrackDescription]  # by mid


@dataclass(frozen=True, slots=True)
class AudioOnlyChanged:
    """A participant's downlink or uplink switched between audio-only and video."""

    direction: Direction
    audio_only: bool
    reason: str | None
    estimate_bps: int | None
    threshold_bps: int


@dataclass(frozen=True, slots=True)
class PublishLayers:
    """Which simulcast encodings the publisher should send (and whether video at all)."""

    video: bool
    active: Mapping[str, bool]  # by rid (or layer index)


@dataclass(frozen=True, slots=True)
class AnswerRefused:
    """The participant's subscribe answer could not be applied; a fresh offer follows."""

    reason: str


@dataclass(frozen=True, slots=True)
class Removed:
    """The media plane ended this participant's presence (the signaling closes its session)."""

    reason: LeaveReason


MediaEvent = (ParticipantJoined | ParticipantLeft | TrackMuted | Pinned | Speakers
              | SubscribeOffer | AnswerRefused | AudioOnlyChanged | PublishLayers | Removed
              | VideosForwarded | SlotShown)
EventSink = Callable[[MediaEvent], None]


def ignore_events(event: MediaEvent) -> None:
    """An ``EventSink`` for participants nobody listens to (tests, benchmarks)."""
