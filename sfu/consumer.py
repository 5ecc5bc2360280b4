"""Consumer: one outgoing copy of a producer for one subscriber.

"What to send" (paused? waiting for a keyframe?) is decided here; "how to rewrite" is delegated to
the pure rewriters (sequence numbers, timestamps, VP8 picture id). The consumer writes through a
``PacketWriter`` (the subscriber connection's SRTP + UDP shell), so it stays free of I/O itself and
unit tests drive it with a list.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Protocol

from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

from sfu.history import RtpHistory
from sfu.producer import Producer
from sfu.rewriting import SequenceRewriter, TimestampRewriter
from sfu.rtp_packet import RtpView, first_byte, pack_header, wrap_rtx
from sfu.types import Codec, DropReason, PauseReason
from sfu.vp8 import Vp8Descriptor, Vp8PictureIdMunger

KEYFRAME_RETRY_S = 1.0
"""A consumer waiting for a keyframe asks again this often until one comes."""
HISTORY_SIZE = 512
"""Packets kept per video consumer to answer NACKs (~2-3 s of 1 Mbps VP8)."""


class PacketWriter(Protocol):
    def send_rtp(self, packet: bytes) -> bool: ...


class Consumer:
    __slots__ = (
        "producer", "subscriber_id", "mid", "ssrc", "rtx_ssrc", "writer", "codec", "ext_key",
        "pause_reason", "drops", "packets_sent", "octets_sent",
        "_seq", "_ts", "_vp8", "_history", "_rtx_seq", "_last_keyframe_request", "_first_byte",
        "closed", "retransmitted", "_synced", "_rewrite_vp8",
    )

    def __init__(
        self,
        producer: Producer,
        subscriber_id: str,
        mid: str,
        ssrc: int,
        rtx_ssrc: int,
        writer: PacketWriter,
        continue_from: Consumer | None = None,
    ) -> None:
        self.producer = producer
        self.subscriber_id = subscriber_id
        self.mid = mid
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.writer = writer
        self.codec: Codec | None = None
        self.ext_key: tuple[int, int] = (0, 0)
        self._first_byte = first_byte(False)
        self.pause_reason: PauseReason | None = PauseReason.NOT_NEGOTIATED
        self._synced = False  # the next forwardable packet (a keyframe for video) syncs rewriters
        self._rewrite_vp8 = False
        self.drops: Counter[DropReason] = Counter()
        self.packets_sent = 0
        self.octets_sent = 0
        self.retransmitted = 0
        self.closed = False
        clock_rate = producer.codec.clock_rate if producer.codec else 90000
        if continue_from is not None and continue_from.ssrc == ssrc:
            # A reused m-line: the subscriber sees one stream, so numbering continues seamlessly.
            self._seq = continue_from._seq
            self._ts = continue_from._ts
            self._vp8 = continue_from._vp8
            self._rtx_seq = continue_from._rtx_seq
        else:
            # Start in the lower half of the space like aiortc: fewer early wraps for SRTP.
            self._seq = SequenceRewriter(random.randrange(32768))
            self._ts = TimestampRewriter(clock_rate, random.getrandbits(32))
            self._vp8 = Vp8PictureIdMunger()
            self._rtx_seq = random.randrange(32768)
        self._history = RtpHistory(HISTORY_SIZE) if producer.is_video else None
        self._last_keyframe_request = float("-inf")

    # -- negotiation ---------------------------------------------------------------------------

    def configure(self, codec: Codec | None, audio_level_id: int, abs_send_time_id: int) -> None:
        """Apply what the subscriber negotiated; resumes the consumer when a codec matched."""
        self.codec = codec
        self.ext_key = (audio_level_id, abs_send_time_id)
        self._first_byte = first_byte(bool(audio_level_id or abs_send_time_id))
        if codec is None:
            self.pause_reason = PauseReason.NO_CODEC
        elif self.pause_reason in (PauseReason.NOT_NEGOTIATED, PauseReason.NO_CODEC):
            self.pause_reason = PauseReason.MUTED if self.producer.muted else None

    @property
    def waiting_keyframe(self) -> bool:
        return not self._synced and self.producer.is_video

    def set_muted(self, muted: bool) -> None:
        if muted:
            self.pause_reason = PauseReason.MUTED
            self._synced = False  # resume at a fresh sync point (a keyframe for video)
        elif self.pause_reason is PauseReason.MUTED:
            self.pause_reason = None
            self._synced = False

    # -- the per-packet path --------------------------------------------------------------------

    def send(
        self, packet: RtpView, keyframe: bool, ext_block: bytes, tail: bytes, now: float
    ) -> None:
        if self.pause_reason is not None:
            self.drops[DropReason.PAUSED] += 1
            self._seq_drop(packet.sequence_number)
            return
        if not self._synced:
            if not keyframe:
                self.drops[DropReason.WAITING_FOR_KEYFRAME] += 1
                self._seq_drop(packet.sequence_number)
                if now - self._last_keyframe_request >= KEYFRAME_RETRY_S:
                    self._last_keyframe_request = now
                    self.producer.request_keyframe(now)
                return
            self._start_at(packet, now)
        seq = self._seq.input(packet.sequence_number)
        if seq is None:
            self.drops[DropReason.TOO_OLD] += 1
            return
        timestamp = self._ts.input(packet.timestamp, now)
        if self._rewrite_vp8:
            # Called for every packet: the munger tracks the newest picture id for later syncs.
            rewritten = self._vp8.rewrite(packet.payload)
            if rewritten is not packet.payload:
                tail = ext_block + rewritten
        data = pack_header(
            self._first_byte, (packet.marker << 7) | self.codec.payload_type,  # type: ignore[union-attr]
            seq, timestamp, self.ssrc,
        ) + tail
        if self._history is not None:
            self._history.put(seq, data)
        if self.writer.send_rtp(data):
            self.packets_sent += 1
            self.octets_sent += len(packet.payload)
        else:
            self.drops[DropReason.NOT_CONNECTED] += 1

    def _start_at(self, packet: RtpView, now: float) -> None:
        """The first packet after attach/unmute/source change: sync every rewriter to it."""
        self._synced = True
        self._seq.sync(packet.sequence_number)
        self._ts.sync(packet.timestamp, now)
        if self.producer.codec is not None and self.producer.codec.name == "vp8":
            try:
                descriptor = Vp8Descriptor.parse(packet.payload)
            except ValueError:
                return
            self._vp8.sync(descriptor.picture_id, descriptor.tl0picidx)
            self._rewrite_vp8 = True

    def _seq_drop(self, in_seq: int) -> None:
        # Only once a stream is running do dropped packets need closing over; before the
        # (re)sync point the rewriter ignores them anyway.
        if self._synced:
            self._seq.drop(in_seq)

    def skip(self, in_seq: int) -> None:
        """The producer got a packet with nothing to forward (padding-only)."""
        self.drops[DropReason.PADDING_ONLY] += 1
        self._seq_drop(in_seq)

    # -- feedback from the subscriber ------------------------------------------------------------

    def on_keyframe_request(self, now: float) -> None:
        self.producer.request_keyframe(now)

    def on_nack(self, lost: list[int]) -> int:
        """Resend what the subscriber lost from our history; returns how many were resent."""
        if self._history is None or self.codec is None:
            return 0
        resent = 0
        for seq in lost:
            data = self._history.get(seq)
            if data is None:
                continue
            if self.codec.rtx_payload_type is not None:
                data = wrap_rtx(data, self.codec.rtx_payload_type, self._rtx_seq, self.rtx_ssrc)
                self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            if self.writer.send_rtp(data):
                resent += 1
        self.retransmitted += resent
        return resent

    def sender_report(self) -> RtcpSrPacket | None:
        """An SR mapping the publisher's NTP time to our timestamps (lip sync), if known yet."""
        report = self.producer.sender_report
        if report is None or self.packets_sent == 0:
            return None
        ntp, rtp_timestamp = report
        return RtcpSrPacket(
            ssrc=self.ssrc,
            sender_info=RtcpSenderInfo(
                ntp_timestamp=ntp,
                rtp_timestamp=(rtp_timestamp + self._ts.offset) & 0xFFFFFFFF,
                packet_count=self.packets_sent & 0xFFFFFFFF,
                octet_count=self.octets_sent & 0xFFFFFFFF,
            ),
        )

    def close(self) -> None:
        self.closed = True
        self.pause_reason = PauseReason.NOT_NEGOTIATED
        if self in self.producer.consumers:
            self.producer.consumers.remove(self)
