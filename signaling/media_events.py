"""Media-plane events (``sfu/events.py``) as the client's WebSocket messages (docs/protocol.md).

The only place where what the SFU tells us becomes JSON: one small function per event type,
found through a table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec

from sfu.events import (
    AnswerRefused,
    AudioOnlyChanged,
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
    TrackMuted,
    VideosForwarded,
)
from signaling.messages import SlotMessage

Message = dict[str, Any]


def participant_json(state: ParticipantState) -> Message:
    return {"id": state.id, "name": state.name,
            "muted": {"audio": state.audio_muted, "video": state.video_muted}}


def _joined(event: ParticipantJoined) -> Message:
    return {"type": "participant_joined", "participant": participant_json(event.participant)}


def _left(event: ParticipantLeft) -> Message:
    return {"type": "participant_left", "participant_id": event.participant_id}


def _muted(event: TrackMuted) -> Message:
    return {"type": "track_muted", "participant_id": event.participant_id,
            "kind": event.kind.value, "muted": event.muted}


def _pinned(event: Pinned) -> Message:
    return {"type": "pinned", "participant_id": event.participant_id}


def _speakers(event: Speakers) -> Message:
    return {"type": "speakers", "participant_ids": list(event.participant_ids)}


def _forwarded(event: VideosForwarded) -> Message:
    return {"type": "forwarded", "participant_ids": list(event.participant_ids),
            "last_n": event.last_n}


def _slot(event: SlotShown) -> Message:
    source: Literal["camera", "screen"] = "screen" if event.source == "screen" else "camera"
    return msgspec.structs.asdict(SlotMessage(mid=event.mid, participant_id=event.participant_id,
                                              source=source))


def _offer(event: SubscribeOffer) -> Message:
    tracks: dict[str, Message] = {}
    for mid, track in event.tracks.items():
        tracks[mid] = {"participant_id": track.participant_id, "kind": track.kind,
                       "stream_id": track.stream_id, "source": track.source}
        if track.layers:  # a subscriber that takes every simulcast layer (a relay)
            tracks[mid]["layers"] = [{"rid": layer.rid, "ssrc": layer.ssrc,
                                      "rtx_ssrc": layer.rtx_ssrc} for layer in track.layers]
    return {"type": "subscribe_offer", "sdp": event.sdp, "tracks": tracks}


def _bandwidth(event: AudioOnlyChanged) -> Message:
    return {"type": "bandwidth", "direction": event.direction.value,
            "audio_only": event.audio_only, "reason": event.reason,
            "estimate_bps": event.estimate_bps, "threshold_bps": event.threshold_bps}


def _layers(event: PublishLayers) -> Message:
    return {"type": "publish_layers", "video": event.video, "active": dict(event.active)}


def _answer_refused(event: AnswerRefused) -> Message:
    return {"type": "error", "code": "bad-sdp", "ref": "subscribe_answer",
            "message": f"cannot use this answer: {event.reason}"}


def _removed(event: Removed) -> Message:
    return {"type": "left", "reason": event.reason.value}


_TO_JSON: dict[type, Callable[[Any], Message]] = {
    ParticipantJoined: _joined,
    ParticipantLeft: _left,
    TrackMuted: _muted,
    Pinned: _pinned,
    Speakers: _speakers,
    SubscribeOffer: _offer,
    AudioOnlyChanged: _bandwidth,
    PublishLayers: _layers,
    AnswerRefused: _answer_refused,
    Removed: _removed,
    VideosForwarded: _forwarded,
    SlotShown: _slot,
}


def to_json(event: MediaEvent) -> Message:
    return _TO_JSON[type(event)](event)
