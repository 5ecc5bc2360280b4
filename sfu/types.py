"""Small domain types shared by the media plane (mediasoup's and LiveKit's vocabulary)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class DropReason(enum.Enum):
    """Why a packet was not forwarded (counted by the consumer, producer or publisher that dropped
    it, exported as metrics)."""

    PAUSED = "paused"
    WAITING_FOR_KEYFRAME = "waiting_for_keyframe"
    LAYER_MISMATCH = "layer_mismatch"  # another simulcast layer than the one being forwarded
    TOO_OLD = "too_old"  # older than the consumer's sync point, or a duplicate of a dropped one
    PADDING_ONLY = "padding_only"
    SILENCE = "silence"  # big rooms forward only voices
    NOT_SPEAKER = "not_speaker"  # big rooms forward the loudest few voices (sfu/policy/last_n.py)
    NOT_CONNECTED = "not_connected"
    UNKNOWN_SSRC = "unknown_ssrc"  # producer side: no producer for this SSRC/MID
    MALFORMED = "malformed"  # producer side: RTP that does not parse
    BAD_EXTENSION = "bad_extension"  # producer side: a known header extension of a wrong size
    BAD_PAYLOAD = "bad_payload"  # producer side: a VP8 descriptor / H.264 NAL unit that is invalid
    SSRC_LIMIT = "ssrc_limit"  # producer side: a new SSRC beyond what one track may introduce
    RTX_BEFORE_MEDIA = "rtx_before_media"  # producer side: a repair of a layer not yet seen


class PauseReason(enum.Enum):
    """Why a consumer sends nothing (LiveKit's VideoPauseReason)."""

    MUTED = "muted"  # the publisher muted the track
    NO_CODEC = "no_codec"  # the subscriber did not accept the producer's codec
    NOT_NEGOTIATED = "not_negotiated"  # the subscriber has not answered the offer yet
    BANDWIDTH = "bandwidth"
    NOT_VISIBLE = "not_visible"
    NOT_IN_LAST_N = "not_in_last_n"  # not among the N videos this subscriber receives


class Kind(enum.Enum):
    AUDIO = "audio"
    VIDEO = "video"


@dataclass(frozen=True, slots=True)
class Codec:
    """A negotiated codec as the SFU needs it: matched between sides by name, not payload type."""

    mime_type: str  # "video/VP8", "audio/opus", "video/H264"
    clock_rate: int
    payload_type: int
    rtx_payload_type: int | None = None

    @property
    def name(self) -> str:
        return self.mime_type.split("/", 1)[1].lower()
