"""The messages between signaling and an SFU worker process (sfu/plane_wire.py): every call and
every typed event survives the trip unchanged, and anything else is refused with a ValueError
(a frame that is not exactly one known message, a body of the wrong shape, a length too big)."""

from __future__ import annotations

import asyncio
import random
import struct

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.diagnostics import ParticipantDiagnostics
from sfu.events import (
    AnswerRefused,
    AudioOnlyChanged,
    Direction,
    LayerStream,
    LeaveReason,
    MediaEvent,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantState,
    Pinned,
    PublishLayers,
    Removed,
    SlotShown,
    Speakers,
    SubscribeOffer,
    TrackDescription,
    TrackMuted,
    VideosForwarded,
)
from sfu.plane import BadDescription, NotDescribed, UnknownParticipant
from sfu.plane_pool import remote_exception, split_port_range
from sfu.plane_server import error_reply
from sfu.plane_wire import (
    EVENT_TYPES,
    MAX_FRAME,
    AddIce,
    Event,
    FrameError,
    Hello,
    IceCandidate,
    Join,
    Leave,
    LocalRtp,
    LocalSenderReport,
    LocalTrack,
    LocalTrackRemoved,
    Pin,
    Publish,
    Ready,
    RelayKeyframe,
    RelayKeyframeWanted,
    RelayMuted,
    RelayPublish,
    RelayRtp,
    RelaySenderReport,
    RelayTrack,
    RelayTrackGone,
    Reply,
    RequestKeyframe,
    SetAudioOnly,
    SetMuted,
    SetShown,
    SetTiles,
    SetUplink,
    Shutdown,
    Stats,
    SubscribeAnswer,
    SubscribeLocal,
    UnsubscribeLocal,
    decode_call,
    decode_event,
    decode_report,
    event_report,
    frame,
    read_frame,
)
from sfu.policy.downlink import Tile
from sfu.subscriber_negotiator import describe_error as describe
from sfu.types import Codec, Kind
from sfu.worker import MediaConfig
from tests.unit.fuzz.helpers import FUZZ

EVENTS: list[MediaEvent] = [
    ParticipantJoined(ParticipantState("p1", "Ánh", audio_muted=True)),
    ParticipantLeft("p1"),
    TrackMuted("p2", Kind.VIDEO, True),
    Pinned(None),
    Pinned("p3"),
    Speakers(("p1", "p2")),
    SubscribeOffer("v=0\r\n", {"0": TrackDescription("p1", "audio", "s1"),
                               "1": TrackDescription("p1", "video", "s1")}),
    SubscribeOffer("v=0\r\n", {"1": TrackDescription("p1", "video", "s1", "camera", (
        LayerStream("q", 1, 2), LayerStream("h", 3, 4), LayerStream("f", 5, 6)))}),
    AnswerRefused("no"),
    AudioOnlyChanged(Direction.DOWN, True, "bandwidth", 900_000, 2_000_000),
    PublishLayers(True, {"q": True, "h": False, "f": False}),
    Removed(LeaveReason.MEDIA_WORKER_LOST),
    VideosForwarded(("p1", "p2"), 9),  # missing from the table before: lost with --workers N
    SlotShown("3", "p2", "camera"),
]

CALLS = [
    Hello(1, MediaConfig(ice_addresses=("127.0.0.1",), port_range=(40000, 40499)), "DEBUG"),
    Join("room", "p1", "An"),
    Join("room", "relay-1", "An (relay)", all_layers=True),
    Leave(7, "room", "p1"),
    Publish(8, "room", "p1", "v=0\r\n"),
    Publish(8, "room", "p1", "v=0\r\n", ["1"]),
    SubscribeAnswer("room", "p1", "v=0\r\n"),
    AddIce(9, "room", "p1", "subscriber",
           IceCandidate("1 1 udp 2130706431 127.0.0.1 5000 typ host", "0", 0)),
    AddIce(10, "room", "p1", "publisher", None),
    SetMuted("room", "p1", Kind.AUDIO, True),
    Pin("room", None),
    SetTiles("room", "p1", {"p2": Tile(640, 360, True)}),
    SetShown("room", "p1", ["p2", "p3"]),
    SetAudioOnly("room", "p1", False),
    SetUplink("room", "p1", None),
    RequestKeyframe("room", "p1"),
    SubscribeLocal("room", "recorder"),
    SubscribeLocal("room", "relay-1", 3, video=False),
    RelayPublish("room", "relay-1-1", "Chair (relay)"),
    RelayTrack("room", "relay-1-1", "chair.1", Kind.VIDEO, Codec("video/VP8", 90000, 96, 97),
               None, ["q", "h", "f"]),
    RelayTrackGone("room", "relay-1-1", "chair.1"),
    RelayRtp("room", "relay-1-1", "chair.1", 2, b"\x80\x60" + bytes(20)),
    RelayMuted("room", "relay-1-1", "chair.0", True),
    RelaySenderReport("room", "relay-1-1", "chair.1", 1, 1 << 63, 1 << 31),
    RelayKeyframe("room", "relay-1-1", "chair.1", 0),
    UnsubscribeLocal("room", "recorder"),
    Shutdown(11),
]

REPORTS = [
    Ready(1234),
    Reply(7),
    Reply(8, value="v=0\r\n"),
    Reply(9, error="not-described", message="no subscriber description yet for ICE"),
    Stats(1, 2, 3, 4, {"forwarded_packets": 10, "audio_only_seconds": 1.5}, {"down": 0, "up": 1},
          {"bandwidth": 2}, {"empty": 3}, 5),
    Stats(1, 1, 0, 0, {}, {}, {}, {}, 0, {"room": [ParticipantDiagnostics(
        "p1", "An", "connected", "none", {"p2": 1, "p3": None}, 2.5e6, 0.01, 0.02, True,
        "user")]}),
    LocalTrack("room", "recorder", "prod", "p1", "An", Kind.VIDEO,
               Codec("video/VP8", 90000, 96, 97)),
    LocalRtp("room", "recorder", "prod", b"\x80\x60" + bytes(20)),
    LocalTrackRemoved("room", "recorder", "prod"),
    LocalSenderReport("room", "recorder", "prod", 1 << 63, 1 << 31),
    RelayKeyframeWanted("room", "relay-1-1", "chair.1", 2),
]


def body(framed: bytes) -> bytes:
    (length,) = struct.unpack(">I", framed[:4])
    assert length == len(framed) - 4
    return framed[4:]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_type_survives_the_trip(event: MediaEvent) -> None:
    report = decode_report(body(frame(event_report("room", "p1", event))))
    assert isinstance(report, Event)
    assert (report.room, report.participant) == ("room", "p1")
    assert decode_event(report) == event


def test_the_table_names_every_event_type() -> None:
    assert set(EVENT_TYPES) == {type(event).__name__ for event in EVENTS}


@pytest.mark.parametrize("call", CALLS, ids=lambda c: type(c).__name__)
def test_every_call_survives_the_trip(call: object) -> None:
    assert decode_call(body(frame(call))) == call  # type: ignore[arg-type]


@pytest.mark.parametrize("report", REPORTS, ids=lambda r: type(r).__name__)
def test_every_report_survives_the_trip(report: object) -> None:
    assert decode_report(body(frame(report))) == report  # type: ignore[arg-type]


ENCODE = msgspec.msgpack.encode


@pytest.mark.parametrize("raw", [
    b"",
    b"\xc1",  # never used in msgpack
    ENCODE([1, 2, 3]),
    ENCODE({"t": "no-such-call"}),
    ENCODE({"t": "join", "room": "r", "participant": "p"}),  # name missing
    ENCODE({"t": "join", "room": 1, "participant": "p", "name": "n"}),
    ENCODE({"t": "mute", "room": "r", "participant": "p", "kind": "smell", "muted": True}),
    ENCODE({"t": "tiles", "room": "r", "participant": "p", "tiles": {"x": {"width": "big"}}}),
    ENCODE({"t": "ice", "id": 1, "room": "r", "participant": "p", "target": "publisher",
            "candidate": {"sdp": 5}}),
    ENCODE({"t": "ready", "pid": 1}),  # a report is not a call
])
def test_a_call_that_is_not_exactly_one_message_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match="bad call"):
        decode_call(raw)


@pytest.mark.parametrize("raw", [
    ENCODE({"t": "join", "room": "r", "participant": "p", "name": "n"}),  # a call, not a report
    ENCODE({"t": "reply"}),
    ENCODE({"t": "stats", "rooms": -0.5}),
    ENCODE({"t": "local_rtp", "room": "r", "subscriber": "s", "producer_id": "p",
            "packet": "text"}),
])
def test_a_report_that_is_not_exactly_one_message_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match="bad report"):
        decode_report(raw)


@pytest.mark.parametrize("report", [
    Event("r", "p", "NoSuchEvent", msgspec.Raw(ENCODE({}))),
    Event("r", "p", "TrackMuted", msgspec.Raw(ENCODE({"participant_id": "p", "kind": "x",
                                                      "muted": True}))),
    Event("r", "p", "Removed", msgspec.Raw(ENCODE({"reason": "bored"}))),
    Event("r", "p", "SubscribeOffer", msgspec.Raw(b"\xc1")),
])
def test_an_event_of_the_wrong_shape_is_refused(report: Event) -> None:
    with pytest.raises(ValueError):
        decode_event(report)


async def feed(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_frames_are_read_one_by_one_and_a_clean_end_is_none() -> None:
    reader = await feed(frame(Join("r", "p", "n")) + frame(Shutdown(1)))
    assert decode_call(await read_frame(reader) or b"") == Join("r", "p", "n")
    assert decode_call(await read_frame(reader) or b"") == Shutdown(1)
    assert await read_frame(reader) is None


async def test_a_length_over_the_limit_is_a_broken_stream() -> None:
    reader = await feed(struct.pack(">I", MAX_FRAME + 1) + b"x" * 10)
    with pytest.raises(FrameError):
        await read_frame(reader)


async def test_a_stream_cut_mid_frame_raises() -> None:
    reader = await feed(frame(Join("r", "p", "n"))[:-3])
    with pytest.raises(asyncio.IncompleteReadError):
        await read_frame(reader)


def test_a_message_over_the_limit_is_not_sent() -> None:
    with pytest.raises(ValueError, match="frame limit"):
        frame(Publish(1, "r", "p", "x" * (MAX_FRAME + 1)))


def check(raw: bytes) -> None:
    for decode in (decode_call, decode_report):
        try:
            decode(raw)
        except ValueError as exc:
            assert str(exc)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_value_error(raw: bytes) -> None:
    check(raw)


def test_mutated_messages_raise_only_value_error() -> None:
    """Seeded bit flips, truncations and splices of every valid message."""
    rng = random.Random(11)
    valid = [body(frame(m)) for m in [*CALLS, *REPORTS]]  # type: ignore[arg-type]
    for _ in range(3000):
        raw = bytearray(rng.choice(valid))
        match rng.randrange(3):
            case 0:
                for _ in range(rng.randint(1, 4)):
                    raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            case 1:
                del raw[rng.randrange(len(raw)):]
            case _:
                other = rng.choice(valid)
                raw = raw[:rng.randrange(len(raw))] + other[rng.randrange(len(other)):]
        check(bytes(raw))


class InvalidStateError(Exception):
    """Named like aiortc's: not a builtin, so it arrives as a RuntimeError of the same name."""


@pytest.mark.parametrize("exc", [
    ValueError("SDP must start with v=0"),
    AssertionError(),
    KeyError("mid"),
    IndexError("list index out of range"),
    UnknownParticipant("p1"),
    NotDescribed("no subscriber description yet for ICE"),
    BadDescription("bad answer"),
    InvalidStateError("RTCPeerConnection is closed"),
], ids=lambda e: type(e).__name__)
def test_a_workers_exception_reads_the_same_in_signaling(exc: Exception) -> None:
    """The session quotes an exception's class name and text (``_describe``): through a worker
    they read exactly as in one process, and our own classes are still caught as such."""
    reply = decode_report(body(frame(error_reply(3, exc))))
    assert isinstance(reply, Reply) and reply.id == 3
    again = remote_exception(reply)
    assert type(again).__name__ == type(exc).__name__
    assert str(again) == str(exc)
    assert describe(again) == describe(exc)
    for cls in (UnknownParticipant, NotDescribed, BadDescription, ValueError, KeyError,
                AssertionError):
        assert isinstance(again, cls) == isinstance(exc, cls)


def test_each_worker_gets_its_own_slice_of_the_port_range() -> None:
    assert split_port_range((40000, 40999), 2) == [(40000, 40499), (40500, 40999)]
    assert split_port_range((40000, 40010), 3) == [(40000, 40002), (40003, 40005),
                                                   (40006, 40008)]
    assert split_port_range(None, 2) == [None, None]
    with pytest.raises(ValueError, match="too small for 4 media workers"):
        split_port_range((40000, 40006), 4)
