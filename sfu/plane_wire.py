"""The media plane across a process boundary: the messages between signaling and a worker process.

Signaling (``sfu/plane_pool.py``) and each SFU worker process (``sfu/plane_server.py``) talk over
one stream socket (a socketpair) in frames: a 4-byte big-endian length, then one msgpack-encoded
message. Every message is a tagged msgspec Struct and is decoded against the union of what that
side may receive, so a frame that is not exactly one of them is refused with a ValueError
(never half-applied). The typed media events (``sfu/events.py``, frozen dataclasses) travel as
their own msgpack body named by the event class, decoded against that class.

Calls that need an answer carry an ``id`` and get a ``Reply``; the others are one-way, in order.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgspec

from sfu.diagnostics import ParticipantDiagnostics
from sfu.events import (
    AnswerRefused,
    AudioOnlyChanged,
    MediaEvent,
    ParticipantJoined,
    ParticipantLeft,
    Pinned,
    PublishLayers,
    Removed,
    SlotShown,
    Speakers,
    SubscribeOffer,
    TrackMuted,
    VideosForwarded,
)
from sfu.policy.downlink import Tile
from sfu.types import Codec, Kind
from sfu.worker import MediaConfig

MAX_FRAME = 8 << 20
"""The largest frame either side accepts (a subscriber offer for a big room is ~100-200 KB)."""
_LENGTH = struct.Struct(">I")


class FrameError(ValueError):
    """The stream is no longer framed (length out of bounds): the peer cannot be trusted."""


# -- signaling -> worker ---------------------------------------------------------------------------


class _Call(msgspec.Struct, tag_field="t"):
    pass


class Hello(_Call, tag="hello"):
    """The first frame to a new worker process: its configuration and its slot number."""

    index: int
    config: MediaConfig
    log_level: str = "INFO"


class Join(_Call, tag="join"):
    room: str
    participant: str
    name: str
    all_layers: bool = False


class Leave(_Call, tag="leave"):
    id: int
    room: str
    participant: str


class Publish(_Call, tag="publish"):
    id: int
    room: str
    participant: str
    sdp: str
    screen_mids: list[str] = []


class SubscribeAnswer(_Call, tag="answer"):
    room: str
    participant: str
    sdp: str


class IceCandidate(msgspec.Struct, frozen=True):
    """An ``RTCIceCandidate`` as its SDP line (``candidate_to_sdp``) and where it belongs."""

    sdp: str
    sdp_mid: str | None
    sdp_mline_index: int | None


class AddIce(_Call, tag="ice"):
    id: int
    room: str
    participant: str
    target: str  # sfu.plane.Target value
    candidate: IceCandidate | None


class SetMuted(_Call, tag="mute"):
    room: str
    participant: str
    kind: Kind
    muted: bool


class Pin(_Call, tag="pin"):
    room: str
    participant: str | None


class SetTiles(_Call, tag="tiles"):
    room: str
    participant: str
    tiles: dict[str, Tile]


class SetShown(_Call, tag="shown"):
    room: str
    participant: str
    shown: list[str]


class SetAudioOnly(_Call, tag="audio_only"):
    room: str
    participant: str
    enabled: bool


class SetUplink(_Call, tag="uplink"):
    room: str
    participant: str
    bps: int | None


class RequestKeyframe(_Call, tag="keyframe"):
    room: str
    participant: str


class SubscribeLocal(_Call, tag="local_on"):
    room: str
    subscriber: str
    audio_level_ext_id: int = 0  # a relay's: the far server's id for the voices it sends back
    video: bool = True  # False: a subscriber of voices only (a relay): no video crosses


class UnsubscribeLocal(_Call, tag="local_off"):
    room: str
    subscriber: str


# A relay's near side (``sfu/plane_relay.py``): the relay stays in signaling, its tracks are
# published in the room's worker and their RTP crosses the socket once per packet.


class RelayPublish(_Call, tag="relay_on"):
    """``MediaPlane.publish_local``: a participant without connections; ``Leave`` ends it."""

    room: str
    participant: str
    name: str


class RelayTrack(_Call, tag="relay_track"):
    room: str
    participant: str
    track_id: str
    kind: Kind
    codec: Codec
    audio_level_ext_id: int | None = None
    rids: list[str] = []


class RelayTrackGone(_Call, tag="relay_gone"):
    room: str
    participant: str
    track_id: str


class RelayRtp(_Call, tag="relay_rtp"):
    room: str
    participant: str
    track_id: str
    layer: int
    packet: bytes


class RelayMuted(_Call, tag="relay_mute"):
    room: str
    participant: str
    track_id: str
    muted: bool


class RelaySenderReport(_Call, tag="relay_sr"):
    room: str
    participant: str
    track_id: str
    layer: int
    ntp_timestamp: int
    rtp_timestamp: int


class RelayKeyframe(_Call, tag="relay_keyframe"):
    """The relay asks the room's consumers of a track for a keyframe request upstream."""

    room: str
    participant: str
    track_id: str
    layer: int


RelayCall = (RelayPublish | RelayTrack | RelayTrackGone | RelayRtp | RelayMuted
             | RelaySenderReport | RelayKeyframe)


class Shutdown(_Call, tag="shutdown"):
    """Drain every room (participants hear ``Removed``), answer, then exit."""

    id: int


Call = (Hello | Join | Leave | Publish | SubscribeAnswer | AddIce | SetMuted | Pin | SetTiles
        | SetShown | SetAudioOnly | SetUplink | RequestKeyframe | SubscribeLocal | UnsubscribeLocal
        | Shutdown | RelayCall)


# -- worker -> signaling ---------------------------------------------------------------------------


class _Report(msgspec.Struct, tag_field="t"):
    pass


class Ready(_Report, tag="ready"):
    pid: int
    fanout: str = ""
    """How the worker forwards (``sfu.native.describe()`` in that process), for signaling's log."""


class Reply(_Report, tag="reply"):
    """The answer to a call with an ``id``: ``error`` names the exception class when it failed
    (``unknown-participant``, ``not-described``, ``bad-description``, ``error``)."""

    id: int
    value: str | None = None
    error: str | None = None
    message: str = ""
    exception: str = ""  # the exception's class name: signaling raises one of the same name


class Event(_Report, tag="event"):
    room: str
    participant: str
    type: str  # the event class's name, a key of EVENT_TYPES
    body: msgspec.Raw


class Stats(_Report, tag="stats"):
    """``PlaneStats`` of one worker, sent every ``STATS_INTERVAL_S`` (also its heartbeat)."""

    rooms: int
    participants: int
    producers: int
    consumers: int
    totals: dict[str, float]  # counts, and audio_only_seconds (float, as in PlaneStats)
    audio_only: dict[str, int]
    paused: dict[str, int]
    datagram_drops: dict[str, int]
    local_dropped: int = 0  # recorder packets not sent: signaling did not keep up
    diagnostics: dict[str, list[ParticipantDiagnostics]] = {}
    """Per room: support staff's and the daily report's view (``MediaPlane.diagnostics``), as
    of this report; read on demand in one process, sampled here."""


class LocalTrack(_Report, tag="local_track"):
    room: str
    subscriber: str
    producer_id: str
    participant_id: str
    participant_name: str
    kind: Kind
    codec: Codec


class LocalRtp(_Report, tag="local_rtp"):
    room: str
    subscriber: str
    producer_id: str
    packet: bytes


class LocalTrackRemoved(_Report, tag="local_removed"):
    room: str
    subscriber: str
    producer_id: str


class LocalSenderReport(_Report, tag="local_sr"):
    room: str
    subscriber: str
    producer_id: str
    ntp_timestamp: int
    rtp_timestamp: int


class RelayKeyframeWanted(_Report, tag="relay_pli"):
    """The room wants a keyframe of one layer of a relayed track: the relay asks upstream."""

    room: str
    participant: str
    track_id: str
    layer: int


Report = (Ready | Reply | Event | Stats | LocalTrack | LocalRtp | LocalTrackRemoved
          | LocalSenderReport | RelayKeyframeWanted)

STATS_INTERVAL_S = 0.5

EVENT_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in (
    ParticipantJoined, ParticipantLeft, TrackMuted, Pinned, Speakers, SubscribeOffer,
    AnswerRefused, AudioOnlyChanged, PublishLayers, Removed, VideosForwarded, SlotShown)}

_encoder = msgspec.msgpack.Encoder()
_call_decoder = msgspec.msgpack.Decoder(Call)
_report_decoder = msgspec.msgpack.Decoder(Report)
_event_decoders = {name: msgspec.msgpack.Decoder(cls) for name, cls in EVENT_TYPES.items()}


def frame(message: _Call | _Report) -> bytes:
    body = _encoder.encode(message)
    if len(body) > MAX_FRAME:
        raise ValueError(f"message of {len(body)} bytes is over the {MAX_FRAME}-byte frame limit")
    return _LENGTH.pack(len(body)) + body


def decode_call(body: bytes) -> Call:
    try:
        return _call_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise ValueError(f"bad call: {exc}") from None


def decode_report(body: bytes) -> Report:
    try:
        return _report_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise ValueError(f"bad report: {exc}") from None


def event_report(room: str, participant: str, event: MediaEvent) -> Event:
    return Event(room, participant, type(event).__name__, msgspec.Raw(_encoder.encode(event)))


def decode_event(report: Event) -> MediaEvent:
    decoder = _event_decoders.get(report.type)
    if decoder is None:
        raise ValueError(f"unknown event type {report.type[:40]!r}")
    try:
        event: MediaEvent = decoder.decode(report.body)
    except msgspec.DecodeError as exc:
        raise ValueError(f"bad {report.type} event: {exc}") from None
    return event


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """One frame's body; None at a clean end of stream. Raises ``FrameError`` on a length
    over ``MAX_FRAME`` and ``asyncio.IncompleteReadError`` on a stream cut mid-frame."""
    try:
        head = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    (length,) = _LENGTH.unpack(head)
    if length > MAX_FRAME:
        raise FrameError(f"frame of {length} bytes announced; at most {MAX_FRAME}")
    return await reader.readexactly(length)
