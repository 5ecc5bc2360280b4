"""Codec and header-extension matching (sfu/negotiation.py) on aiortc's parameter objects."""

from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpHeaderExtensionParameters

from sfu.negotiation import (
    EXTENSION_SIZES,
    URI_AUDIO_LEVEL,
    URI_MID,
    URI_TWCC,
    extension_ids,
    extension_limits,
    match_codec,
    primary_codec,
)
from sfu.types import Codec

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
VP8_RTX = RTCRtpCodecParameters(
    mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96}
)
H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)
H264_RTX = RTCRtpCodecParameters(
    mimeType="video/rtx", clockRate=90000, payloadType=103, parameters={"apt": 102}
)


def test_primary_codec_is_the_first_media_codec_with_its_rtx() -> None:
    assert primary_codec([VP8_RTX, VP8, H264]) == Codec("video/VP8", 90000, 96, 97)
    assert primary_codec([H264, VP8]) == Codec("video/H264", 90000, 102, None)
    assert primary_codec([VP8_RTX]) is None


def test_match_codec_by_name_not_payload_type() -> None:
    producer = Codec("video/h264", 90000, 120, 121)  # the publisher's own numbers
    assert match_codec(producer, [VP8, VP8_RTX, H264, H264_RTX]) == Codec(
        "video/H264", 90000, 102, 103
    )
    assert match_codec(Codec("audio/opus", 48000, 111), [VP8, H264]) is None


def test_a_codec_without_payload_type_is_never_chosen() -> None:
    # aiortc types payloadType as optional; a Codec without one would fail on every packet.
    unnumbered = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000)
    assert primary_codec([unnumbered, H264]) == Codec("video/H264", 90000, 102, None)
    assert primary_codec([unnumbered]) is None
    assert match_codec(Codec("video/VP8", 90000, 96), [unnumbered, VP8]) == Codec(
        "video/VP8", 90000, 96, None
    )


def test_extension_ids_and_limits() -> None:
    ids = extension_ids([
        RTCRtpHeaderExtensionParameters(id=1, uri=URI_MID),
        RTCRtpHeaderExtensionParameters(id=3, uri=URI_TWCC),
        RTCRtpHeaderExtensionParameters(id=9, uri="urn:example:unknown"),
    ])
    assert ids == {URI_MID: 1, URI_TWCC: 3, "urn:example:unknown": 9}
    assert extension_limits(ids) == {1: EXTENSION_SIZES[URI_MID], 3: (2, 2)}
    assert EXTENSION_SIZES[URI_AUDIO_LEVEL] == (1, 1)


def test_subscriber_m_lines_offer_only_their_producers_codec() -> None:
    from sfu.subscriber_negotiator import offered_codecs
    from sfu.types import Codec

    def names(kind: str, codec: Codec | None) -> list[str]:
        return [c.mimeType.lower() for c in offered_codecs(kind, codec)]

    assert names("video", Codec("video/VP8", 90000, 96, 97)) == ["video/vp8", "video/rtx"]
    assert names("video", Codec("video/H264", 90000, 102, 103)) == [
        "video/h264", "video/h264", "video/rtx"]  # every profile: the browser picks
    assert names("audio", Codec("audio/opus", 48000, 111)) == ["audio/opus"]
    assert names("video", None) == []  # aiortc's defaults until the codec is known
    assert names("video", Codec("video/AV1", 90000, 45)) == []  # not aiortc's: its defaults
