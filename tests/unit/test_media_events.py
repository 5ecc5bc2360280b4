"""The media plane's typed events become exactly the client messages of docs/protocol.md."""

from __future__ import annotations

import inspect
import typing

import pytest

from sfu import events
from sfu.events import (
    AnswerRefused,
    AudioOnlyChanged,
    Direction,
    LeaveReason,
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
from sfu.plane import MediaPlane
from sfu.types import Kind
from sfu.worker import Worker
from signaling.media_events import to_json

CASES = [
    (ParticipantJoined(ParticipantState("p1", "Anh", audio_muted=True)),
     {"type": "participant_joined",
      "participant": {"id": "p1", "name": "Anh", "muted": {"audio": True, "video": False}}}),
    (ParticipantLeft("p1"), {"type": "participant_left", "participant_id": "p1"}),
    (TrackMuted("p1", Kind.VIDEO, True),
     {"type": "track_muted", "participant_id": "p1", "kind": "video", "muted": True}),
    (Pinned(None), {"type": "pinned", "participant_id": None}),
    (Speakers(("a", "b")), {"type": "speakers", "participant_ids": ["a", "b"]}),
    (VideosForwarded(("b", "a"), 9),
     {"type": "forwarded", "participant_ids": ["b", "a"], "last_n": 9}),
    (SlotShown("4", "b"), {"type": "slot", "mid": "4", "participant_id": "b", "source": "camera"}),
    (SubscribeOffer("v=0\r\n", {"0": TrackDescription("p1", "audio", "s1")}),
     {"type": "subscribe_offer", "sdp": "v=0\r\n",
      "tracks": {"0": {"participant_id": "p1", "kind": "audio", "stream_id": "s1",
                                       "source": "camera"}}}),
    (AudioOnlyChanged(Direction.DOWN, True, "bandwidth", 1_500_000, 2_000_000),
     {"type": "bandwidth", "direction": "down", "audio_only": True, "reason": "bandwidth",
      "estimate_bps": 1_500_000, "threshold_bps": 2_000_000}),
    (PublishLayers(True, {"q": True, "h": False}),
     {"type": "publish_layers", "video": True, "active": {"q": True, "h": False}}),
    (Removed(LeaveReason.SERVER_SHUTDOWN), {"type": "left", "reason": "server-shutdown"}),
    (AnswerRefused("no a=setup"), {"type": "error", "code": "bad-sdp", "ref": "subscribe_answer",
                                   "message": "cannot use this answer: no a=setup"}),
]


@pytest.mark.parametrize(("event", "message"), CASES, ids=lambda v: type(v).__name__)
def test_event_becomes_protocol_message(event: events.MediaEvent, message: dict) -> None:
    assert to_json(event) == message


def test_every_event_type_has_a_message() -> None:
    covered = {type(event) for event, _ in CASES}
    assert set(typing.get_args(events.MediaEvent)) == covered


def test_worker_implements_every_media_plane_method() -> None:
    wanted = {name for name, value in vars(MediaPlane).items()
              if inspect.isfunction(value) and not name.startswith("_")}
    assert wanted  # the Protocol declares its methods
    for name in wanted:
        implementation = getattr(Worker, name, None)
        assert callable(implementation), name
        assert (inspect.signature(implementation).parameters.keys()
                == inspect.signature(getattr(MediaPlane, name)).parameters.keys()), name
