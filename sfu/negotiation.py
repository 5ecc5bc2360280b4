"""What two sides agreed on, read from aiortc's negotiated parameters (pure; no I/O).

Every header-extension URI the SFU knows is defined here, once, and so is the matching of codecs
by name (never by payload type: each connection numbers them its own way), as mediasoup's `ortc`
module does for its own negotiation. Publisher and Subscriber only call these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from sfu.types import Codec

__all__ = [
    "EXTENSION_SIZES",
    "SUBSCRIBER_TWCC_EXT_ID",
    "URI_ABS_SEND_TIME",
    "URI_AUDIO_LEVEL",
    "URI_MID",
    "URI_PLAYOUT_DELAY",
    "URI_REPAIRED_RID",
    "URI_RID",
    "URI_TOFFSET",
    "URI_TWCC",
    "URI_VIDEO_ORIENTATION",
    "extension_ids",
    "extension_limits",
    "match_codec",
    "primary_codec",
]

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"  # RFC 8843
URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"  # RFC 8852
URI_REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"  # RFC 6464
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
URI_VIDEO_ORIENTATION = "urn:3gpp:video-orientation"
URI_TOFFSET = "urn:ietf:params:rtp-hdrext:toffset"  # RFC 5450
URI_PLAYOUT_DELAY = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"

SUBSCRIBER_TWCC_EXT_ID = 5
"""aiortc's offers use ids 1-3 (mid, audio level, abs-send-time): transport-cc takes 5."""

EXTENSION_SIZES: dict[str, tuple[int, int]] = {
    # URI: (fewest, most) bytes of its element. Only these are read by the SFU, and only what the
    # SFU reads (or writes itself) is forwarded: every other extension stays with the publisher.
    URI_AUDIO_LEVEL: (1, 1),
    URI_ABS_SEND_TIME: (3, 3),
    URI_TWCC: (2, 2),
    URI_MID: (1, 16),  # 16: the one-byte form's most
    URI_RID: (1, 16),
    URI_REPAIRED_RID: (1, 16),
    URI_VIDEO_ORIENTATION: (1, 1),
    URI_TOFFSET: (3, 3),
    URI_PLAYOUT_DELAY: (3, 3),
}

_NOT_MEDIA = ("rtx", "red", "ulpfec")


class CodecParameters(Protocol):
    """The fields of aiortc's RTCRtpCodecParameters read here."""

    @property
    def mimeType(self) -> str: ...  # noqa: N802 (aiortc's name)

    @property
    def name(self) -> str: ...

    @property
    def clockRate(self) -> int: ...  # noqa: N802

    @property
    def payloadType(self) -> int | None: ...  # noqa: N802 (None in aiortc until negotiated)

    @property
    def parameters(self) -> Mapping[str, object]: ...


class HeaderExtensionParameters(Protocol):
    """The fields of aiortc's RTCRtpHeaderExtensionParameters read here."""

    @property
    def id(self) -> int: ...

    @property
    def uri(self) -> str: ...


def _rtx_for(codecs: Iterable[CodecParameters], payload_type: int) -> int | None:
    """The RTX payload type whose ``apt`` names ``payload_type``, if one was negotiated."""
    return next(
        (c.payloadType for c in codecs
         if c.name.lower() == "rtx" and c.parameters.get("apt") == payload_type),
        None,
    )


def primary_codec(codecs: Sequence[CodecParameters]) -> Codec | None:
    """The first media codec of a negotiated m-line (what a publisher sends), with its RTX."""
    for codec in codecs:
        payload_type = codec.payloadType  # never None once negotiated; skipped if it were
        if payload_type is not None and codec.name.lower() not in _NOT_MEDIA:
            return Codec(codec.mimeType, codec.clockRate, payload_type,
                         _rtx_for(codecs, payload_type))
    return None


def match_codec(codec: Codec, codecs: Sequence[CodecParameters]) -> Codec | None:
    """The subscriber's payload types for the producer's codec (matched by name, not number)."""
    for candidate in codecs:
        payload_type = candidate.payloadType
        if payload_type is not None and candidate.mimeType.lower() == codec.mime_type.lower():
            return Codec(candidate.mimeType, candidate.clockRate, payload_type,
                         _rtx_for(codecs, payload_type))
    return None


def extension_ids(extensions: Iterable[HeaderExtensionParameters]) -> dict[str, int]:
    """Negotiated header extensions as URI -> id."""
    return {ext.uri: ext.id for ext in extensions}


def extension_limits(ids: dict[str, int]) -> dict[int, tuple[int, int]]:
    """The publisher's negotiated ids (URI -> id) as id -> allowed element sizes."""
    return {ext_id: EXTENSION_SIZES[uri] for uri, ext_id in ids.items() if uri in EXTENSION_SIZES}
