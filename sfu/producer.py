"""Producer: one incoming track, fanned out to its consumers.

Pure with respect to I/O: the producer never touches sockets or asyncio. Its shell (the
``Publisher``) gives it parsed packets and the time, and gives it a callback to ask the
publisher for a keyframe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sfu.h264 import is_h264_keyframe
from sfu.rtp_packet import RtpView, abs_send_time_now, build_extension_block
from sfu.types import Codec, Kind
from sfu.vp8 import is_vp8_keyframe

if TYPE_CHECKING:
    from sfu.consumer import Consumer

KEYFRAME_REQUEST_INTERVAL_S = 0.5
"""At most one PLI per producer this often, however many subscribers ask (LiveKit throttles too)."""


def _no_keyframe(payload: bytes) -> bool:
    return True  # audio: every packet is a valid starting point


KEYFRAME_DETECTORS: dict[str, Callable[[bytes], bool]] = {
    "vp8": is_vp8_keyframe,
    "h264": is_h264_keyframe,
}


class Producer:
    """An incoming audio or video track of one participant."""

    def __init__(
        self,
        producer_id: str,
        participant_id: str,
        kind: Kind,
        mid: str,
        request_keyframe: Callable[[Producer], None],
    ) -> None:
        self.id = producer_id
        self.participant_id = participant_id
        self.kind = kind
        self.mid = mid
        self.codec: Codec | None = None
        self.ssrc: int | None = None
        self.muted = False
        self.closed = False
        self.consumers: list[Consumer] = []
        # (ntp timestamp, rtp timestamp) of the publisher's latest sender report: consumers
        # translate it into their own timestamp space so subscribers keep lip sync.
        self.sender_report: tuple[int, int] | None = None
        self.audio_level_ext_id: int | None = None  # the publisher's id, set on negotiation
        self.packets_received = 0
        self.bytes_received = 0
        self.keyframes_received = 0
        self.keyframe_requests_sent = 0
        self._request_keyframe = request_keyframe
        self._last_keyframe_request = float("-inf")
        self._is_keyframe: Callable[[bytes], bool] = _no_keyframe

    def set_codec(self, codec: Codec) -> None:
        self.codec = codec
        self._is_keyframe = KEYFRAME_DETECTORS.get(codec.name, _no_keyframe)

    @property
    def is_video(self) -> bool:
        return self.kind is Kind.VIDEO

    def request_keyframe(self, now: float) -> None:
        """Ask the publisher for a keyframe, rate-limited across all consumers."""
        if not self.is_video or self.closed:
            return
        if now - self._last_keyframe_request < KEYFRAME_REQUEST_INTERVAL_S:
            return
        self._last_keyframe_request = now
        self.keyframe_requests_sent += 1
        self._request_keyframe(self)

    def receive(self, packet: RtpView, now: float) -> None:
        """Forward one packet (already demultiplexed and RTX-unwrapped) to every consumer."""
        self.packets_received += 1
        self.bytes_received += len(packet.payload)
        consumers = self.consumers
        if not packet.payload:
            # Padding-only (bandwidth probes): nothing to forward; consumers close the gap.
            for consumer in consumers:
                consumer.skip(packet.sequence_number)
            return
        keyframe = self._is_keyframe(packet.payload)
        if keyframe and self.is_video:
            self.keyframes_received += 1
        if not consumers:
            return
        # Subscribers normally share extension ids (the server writes every offer), so the
        # extension block + payload tail is built once per packet and reused by all of them.
        last_key: tuple[int, int] | None = None
        ext_block = tail = b""
        for consumer in consumers:
            key = consumer.ext_key
            if key != last_key:
                ext_block = self._extension_block(packet, key, now)
                tail = ext_block + packet.payload
                last_key = key
            consumer.send(packet, keyframe, ext_block, tail, now)

    def _extension_block(self, packet: RtpView, key: tuple[int, int], now: float) -> bytes:
        audio_level_id, abs_send_time_id = key
        elements: list[tuple[int, bytes]] = []
        if audio_level_id and self.audio_level_ext_id is not None:
            level = packet.extensions.get(self.audio_level_ext_id)
            if level is not None:
                elements.append((audio_level_id, level))
        if abs_send_time_id:
            elements.append((abs_send_time_id, abs_send_time_now(now)))
        return build_extension_block(elements)

    def close(self) -> None:
        self.closed = True
        for consumer in list(self.consumers):
            consumer.close()
        self.consumers.clear()
