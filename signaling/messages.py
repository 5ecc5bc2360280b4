"""The signaling protocol's client messages (docs/protocol.md), validated by msgspec.

msgspec rather than hand-written checks: one declaration gives decoding, type and range
validation, and error messages that name the offending field (``... - at `$.room```).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from signaling.limits import MAX_PUBLISH_SDP_BYTES, MAX_SHOWN

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Sdp = Annotated[str, msgspec.Meta(min_length=1, max_length=4 << 20)]
# An offer is refused on its length before any SDP parser sees it (a 1 MiB SDP took 0.43 s to
# parse, all of it on the event loop). Answers are bounded by the frame limit and by the
# sections of the server's own offer (signaling/session.py).
OfferSdp = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PUBLISH_SDP_BYTES)]


class _Message(msgspec.Struct, tag_field="type", forbid_unknown_fields=False):
    pass


Secret = Annotated[str, msgspec.Meta(max_length=4096)]


class Join(_Message, tag="join"):
    room: Name
    name: Name
    token: Secret | None = None
    username: Name | None = None
    password: Secret | None = None
    room_password: Secret | None = None
    invite: Secret | None = None
    endpoint_id: Annotated[int, msgspec.Meta(ge=1, le=2**53)] | None = None
    endpoint_secret: Secret | None = None
    take_over: bool = False
    resume: Secret | None = None  # the `resume_token` of a dropped seat (signaling/resume.py)
    # A relay (another server) asks for every simulcast layer, each its own stream; granted to
    # the `relay` role and on open rooms (sfu/layer_streams.py)
    relay_layers: bool = False


class Publish(_Message, tag="publish"):
    sdp: OfferSdp
    # m-lines of this offer that carry a shared screen (web/screenshare.js), not a camera
    screen_mids: Annotated[list[Annotated[str, msgspec.Meta(max_length=32)]],
                           msgspec.Meta(max_length=4)] = []


class SubscribeAnswer(_Message, tag="subscribe_answer"):
    sdp: Sdp


class IceCandidateInit(msgspec.Struct):
    candidate: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    sdpMid: Annotated[str, msgspec.Meta(max_length=64)] | None = None  # noqa: N815 (W3C name)
    sdpMLineIndex: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None  # noqa: N815


class Ice(_Message, tag="ice"):
    target: Literal["publisher", "subscriber"]
    candidate: IceCandidateInit | None = None


class Mute(_Message, tag="mute"):
    kind: Literal["audio", "video"]
    muted: bool


class TileSize(msgspec.Struct):
    participant_id: Annotated[str, msgspec.Meta(max_length=64)]
    width: Annotated[int, msgspec.Meta(ge=0, le=16384)]
    height: Annotated[int, msgspec.Meta(ge=0, le=16384)]
    visible: bool = True


class Tiles(_Message, tag="tiles"):
    tiles: Annotated[list[TileSize], msgspec.Meta(max_length=1000)]


class Shown(_Message, tag="shown"):
    """The remote tiles the client shows now (its gallery page), for last-N."""

    participant_ids: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]],
                               msgspec.Meta(max_length=MAX_SHOWN)]


class AudioOnly(_Message, tag="audio_only"):
    enabled: bool


class Uplink(_Message, tag="uplink"):
    available_bps: Annotated[int, msgspec.Meta(ge=0, le=10_000_000_000)]


class Leave(_Message, tag="leave"):
    pass


class Ping(_Message, tag="ping"):
    id: str | int | None = None


# Meeting extras (issue 12; handled in signaling/room_extras.py). Chat text is bounded in
# characters here; signaling/chat.py refuses what is blank or carries control characters.
MAX_CHAT_CHARS = 2000


class Chat(_Message, tag="chat"):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CHAT_CHARS)]


class ChatDelete(_Message, tag="chat_delete"):
    id: Annotated[int, msgspec.Meta(ge=1, le=2**53)]


class Hand(_Message, tag="hand"):
    raised: bool
    participant_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    """Moderators lower someone else's hand with ``raised: false`` and their id."""


class Quality(_Message, tag="quality"):
    """The client's own measure of what it receives (WebRTC stats), for the participant list."""

    loss: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    rtt_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] | None = None
    layer: Annotated[int, msgspec.Meta(ge=-1, le=2)] = -1


class Documents(_Message, tag="documents"):
    pass


ClientMessage = (
    Join | Publish | SubscribeAnswer | Ice | Mute | Tiles | AudioOnly | Uplink | Leave | Ping
    | Chat | ChatDelete | Hand | Quality | Documents | Shown
)
MESSAGE_TYPES = ("join", "publish", "subscribe_answer", "ice", "mute", "tiles", "audio_only",
                 "uplink", "leave", "ping", "chat", "chat_delete", "hand", "quality",
                 "documents", "shown")

_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)


class SlotMessage(msgspec.Struct, kw_only=True):
    """Server to client (not a ``ClientMessage``): the pooled video m-line ``mid`` shows
    ``participant_id``'s video from now on (last-N video slots; its first keyframe is on the
    way). The client moves that m-line's track to the participant's tile."""

    type: Literal["slot"] = "slot"
    mid: str
    participant_id: str
    source: Literal["camera", "screen"] = "camera"


class ProtocolError(Exception):
    """A message we refuse; ``code`` and ``message`` go back to the sender as an ``error``."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"type": "error", "code": self.code, "message": self.message}
        if self.ref is not None:
            out["ref"] = self.ref
        return out


def decode(raw: str | bytes) -> ClientMessage:
    """Decode and validate one frame, or raise ProtocolError naming what is wrong."""
    try:
        return _decoder.decode(raw)
    except RecursionError:
        raise ProtocolError("bad-json", "JSON nested too deeply") from None
    except UnicodeError:
        raise ProtocolError("bad-json", "text is not valid UTF-8") from None
    except msgspec.DecodeError as exc:  # ValidationError is a subclass: check it first
        if not isinstance(exc, msgspec.ValidationError):
            raise ProtocolError("bad-json", f"not valid JSON: {exc}") from None
        text = str(exc)
        if text.startswith("Expected `object`") and text.endswith("`$`") or "- at" not in text:
            if "missing required field `type`" in text:
                raise ProtocolError(
                    "unknown-type", "message has no `type`; expected one of "
                    + ", ".join(MESSAGE_TYPES)
                ) from None
            if text.startswith("Expected `object`"):
                raise ProtocolError("bad-json", "a message must be a JSON object") from None
        if text.endswith("at `$.type`"):
            raise ProtocolError(
                "unknown-type", f"{text}; expected one of " + ", ".join(MESSAGE_TYPES)
            ) from None
        raise ProtocolError("bad-message", text, ref=_type_of(raw)) from None


def _type_of(raw: str | bytes) -> str | None:
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError, UnicodeError):
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    return kind if isinstance(kind, str) and kind in MESSAGE_TYPES else None
