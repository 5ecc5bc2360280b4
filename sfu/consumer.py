"""Consumer: one outgoing copy of a producer for one subscriber.

"What to send" is decided here from three layer values (mediasoup's names): ``preferred`` (the
most the subscriber's tile needs), ``target`` (what the allocator grants within its bandwidth)
and ``current`` (what is being forwarded). A switch happens only at a keyframe of the target
layer; until then the current layer keeps flowing. "How to rewrite" is delegated to the pure
rewriters (sequence numbers, timestamps, VP8 picture id), so the subscriber sees one continuous
stream whatever layer or publisher feeds it. Output goes through a ``PacketWriter`` (the
subscriber connection's SRTP + UDP shell), so unit tests drive a consumer with a list.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Literal, Protocol

from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

from sfu.history import RtpHistory
from sfu.native import BatchItem
from sfu.producer import Producer
from sfu.types import Codec, DropReason, PauseReason
from sfu.wire.rewriting import SequenceRewriter, TimestampRewriter
from sfu.wire.rtp_packet import (
    RtpView,
    abs_send_time_now,
    extension_elements,
    finish_extension_block,
    pack_header,
    transport_cc_element,
    wrap_rtx,
)
from sfu.wire.vp8 import Vp8Descriptor, Vp8Ids, Vp8PictureIdMunger, picture_ids

KEYFRAME_RETRY_S = 1.0
"""A consumer waiting for a keyframe asks again this often until one comes."""
HISTORY_SIZE = 512
"""Packets kept per video consumer to answer NACKs (~2-3 s of 1 Mbps VP8)."""
RTP_OVERHEAD = 12 + 16  # header + a typical extension block, for transport-cc accounting
POLICY_PAUSES = (PauseReason.BANDWIDTH, PauseReason.NOT_VISIBLE, PauseReason.NOT_IN_LAST_N)
"""Pauses the downlink policy decides (and lifts); muting and negotiation pause otherwise."""


def _one_byte_id(ext_id: int) -> int:
    return ext_id if 0 < ext_id < 15 else 0


class PacketWriter(Protocol):
    def send_rtp(self, packet: bytes) -> bool: ...


class QueueRtp(Protocol):
    def __call__(self, batch: list[BatchItem], head: bytes, payload: bytes,
                 consumer: Consumer) -> bool: ...


class TransportStamper(Protocol):
    """Hands out transport-wide sequence numbers (``sfu.wire.twcc.TransportSequencer``)."""

    def next(self, size: int, now_s: float, probe_cluster: int = -1) -> int: ...


class Consumer:
    __slots__ = (
        "producer", "subscriber_id", "mid", "ssrc", "rtx_ssrc", "writer", "codec", "ext_key",
        "pause_reason", "drops", "packets_sent", "octets_sent", "closed", "retransmitted",
        "target_layer", "current_layer", "layer_switches", "twcc",
        "twcc_id", "wanted_layer", "_seq", "_ts", "_vp8", "_history", "_rtx_seq",
        "_last_keyframe_request",
        "_rewrite_vp8", "_left_fan_out_at", "_queue", "on_first_frame",
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
        self.twcc: TransportStamper | None = None
        self.twcc_id = 0
        self.pause_reason: PauseReason | None = PauseReason.NOT_NEGOTIATED
        self.drops: Counter[DropReason] = Counter()
        self.packets_sent = 0
        self.octets_sent = 0
        self.retransmitted = 0
        self.layer_switches = 0
        self.closed = False
        # Start on the lowest layer: its keyframes are small and come fast (first frame < 1 s);
        # the allocator raises the target once it knows the subscriber's bandwidth.
        self.target_layer: int | None = 0
        self.current_layer: int | None = None  # None: not forwarding yet (needs a sync point)
        self.wanted_layer: int | None = 0  # the allocator's grant (target may be lower for now)
        clock_rate = producer.codec.clock_rate if producer.codec else 90000
        self._seq: SequenceRewriter
        self._ts: TimestampRewriter
        self._vp8: Vp8PictureIdMunger
        self._rtx_seq: int
        self._history: RtpHistory | None
        history: RtpHistory | None
        if continue_from is not None and continue_from.ssrc == ssrc:
            # A reused m-line: the subscriber sees one stream, so numbering continues seamlessly.
            self._seq = continue_from._seq
            self._ts = continue_from._ts
            self._vp8 = continue_from._vp8
            self._rtx_seq = continue_from._rtx_seq
            # One stream on the m-line: a NACK for what the previous producer sent is still
            # answered (the numbers continue, so the ring does too).
            history = continue_from._history
        else:
            # Start in the lower half of the space like aiortc: fewer early wraps for SRTP.
            self._seq = SequenceRewriter(random.randrange(32768))
            self._ts = TimestampRewriter(clock_rate, random.getrandbits(32))
            self._vp8 = Vp8PictureIdMunger()
            self._rtx_seq = random.randrange(32768)
            history = None
        if not producer.is_video:
            self._history = None
        else:
            self._history = history if history is not None else RtpHistory(HISTORY_SIZE)
        # Called once, with this consumer, when it forwards its first frame (a pooled video
        # slot switched to this producer tells its client then: sfu/video_slots.py).
        self.on_first_frame: Callable[[Consumer], None] | None = None
        self._last_keyframe_request = float("-inf")
        self._rewrite_vp8 = False
        self._left_fan_out_at: int | None = None  # producer's packet count when it left
        # A writer that can batch (DatagramWriter with the native fan-out, sfu/native.py)
        self._queue: QueueRtp | None = getattr(writer, "queue_rtp", None)

    # -- negotiation and policy -------------------------------------------------------------------

    def configure(
        self,
        codec: Codec | None,
        audio_level_id: int,
        abs_send_time_id: int,
        twcc: TransportStamper | None = None,
        twcc_id: int = 0,
    ) -> None:
        """Apply what the subscriber negotiated; resumes the consumer when a codec matched."""
        self.codec = codec
        # Ids come from the subscriber's answer: only those the one-byte form can carry (the
        # server offers 1-14) are used, or every packet's block for this id would fail to build.
        self.ext_key = (_one_byte_id(audio_level_id), _one_byte_id(abs_send_time_id))
        twcc_id = _one_byte_id(twcc_id)
        self.twcc = twcc if twcc_id else None
        self.twcc_id = twcc_id
        if codec is None:
            self.pause_reason = PauseReason.NO_CODEC
        elif self.pause_reason in (PauseReason.NOT_NEGOTIATED, PauseReason.NO_CODEC):
            self.pause_reason = PauseReason.MUTED if self.producer.muted else None
        self._fan_out()

    @property
    def history_allocated(self) -> bool:
        """Whether this consumer holds a NACK ring now (none outside last-N, none for audio)."""
        return self._history is not None and self._history.allocated

    @property
    def waiting_keyframe(self) -> bool:
        return self.producer.is_video and self.current_layer != self.target_layer

    def set_muted(self, muted: bool) -> None:
        if muted:
            self._pause(PauseReason.MUTED)
        elif self.pause_reason is PauseReason.MUTED:
            self.pause_reason = None
            self._fan_out()

    def set_target(self, layer: int | None, reason: PauseReason | None = None) -> None:
        """The allocator's decision: a layer, or None with the reason to pause."""
        if layer is None:
            if self.pause_reason in (None, *POLICY_PAUSES):
                self._pause(reason or PauseReason.BANDWIDTH)
            return
        if self.pause_reason in POLICY_PAUSES:
            self.pause_reason = PauseReason.MUTED if self.producer.muted else None
            self._fan_out()
        layer = max(0, min(layer, len(self.producer.layers) - 1))
        if layer != self.target_layer:
            self.target_layer = layer
            self._last_keyframe_request = float("-inf")  # ask for the new layer at once

    def _pause(self, reason: PauseReason) -> None:
        self.pause_reason = reason
        self.current_layer = None  # resume at a fresh sync point (a keyframe for video)
        self._fan_out()

    def _fan_out(self) -> None:
        """Outside last-N a consumer leaves its producer's fan-out: in a room of 50 with N = 9,
        40 paused consumers cost ~0.7 us each per packet only to count it dropped. Packets
        missed meanwhile are counted (PAUSED) when it comes back."""
        outside = self.pause_reason is PauseReason.NOT_IN_LAST_N and not self.closed
        if outside and self._left_fan_out_at is None:
            self._left_fan_out_at = self.producer.packets_received
            self.producer.detach(self)
            if self._history is not None:
                self._history.clear()  # its ring (and the payloads it keeps alive) until back
        elif not outside and self._left_fan_out_at is not None:
            missed = self.producer.packets_received - self._left_fan_out_at
            self.drops[DropReason.PAUSED] += max(0, missed)
            self._left_fan_out_at = None
            if not self.closed:
                self.producer.attach(self)

    # -- the per-packet path --------------------------------------------------------------------

    def send(
        self, packet: RtpView, layer: int, keyframe: bool, elements: bytes, now: float,
        batch: list[BatchItem] | None = None, block: bytes | None = None,
        vp8_ids: Vp8Ids | None | Literal[False] = False,
    ) -> None:
        """Forward ``packet`` (rewritten) if this consumer wants it; with a ``batch`` the copy
        may be queued there for the producer to send with the others in one native call.
        ``block``: ``elements`` as a finished extension block, when the caller has it (shared
        by every consumer without transport-cc). ``vp8_ids``: ``picture_ids(packet.payload)``
        when the caller read them (once for all consumers), False to read them here."""
        codec = self.codec
        if self.pause_reason is not None or codec is None:  # no codec: paused (NO_CODEC, ...)
            self.drops[DropReason.PAUSED] += 1
            return
        if layer != self.current_layer:
            if layer == self.target_layer and keyframe:
                self._switch_to(packet, layer, now)
                if self.on_first_frame is not None:
                    first, self.on_first_frame = self.on_first_frame, None
                    first(self)
            else:
                self.drops[DropReason.WAITING_FOR_KEYFRAME if layer == self.target_layer
                           else DropReason.LAYER_MISMATCH] += 1
                if self.current_layer != self.target_layer:  # settled: nothing to ask for
                    self._want_keyframe(now)
                return
        elif self.target_layer != layer:
            self._want_keyframe(now)  # keep forwarding this layer until the target's keyframe
        seq = self._seq.input(packet.sequence_number)
        if seq is None:
            self.drops[DropReason.TOO_OLD] += 1
            return
        timestamp = self._ts.input(packet.timestamp, now)
        payload = original = packet.payload
        if self._rewrite_vp8:
            # Called for every packet: the munger tracks the newest picture id for later syncs.
            if vp8_ids is False:
                vp8_ids = picture_ids(payload)
            payload = self._vp8.apply(payload, vp8_ids)
        if self.twcc is not None:
            transport_seq = self.twcc.next(len(payload) + RTP_OVERHEAD, now)
            block = finish_extension_block(
                elements + transport_cc_element(self.twcc_id, transport_seq))
        elif block is None:
            block = finish_extension_block(elements)
        # The X bit follows the block actually written: a packet may lack an extension (an
        # audio level) that was negotiated, and a set X bit without a block is malformed.
        head = pack_header(
            0x90 if block else 0x80, (packet.marker << 7) | codec.payload_type,
            seq, timestamp, self.ssrc,
        ) + block
        if self._history is not None:
            self._history.put(seq, timestamp, packet.marker, payload, original)
        queue = self._queue
        if (queue(batch, head, payload, self) if queue is not None and batch is not None
                else self.writer.send_rtp(head + payload)):
            self.packets_sent += 1
            self.octets_sent += len(payload)
        else:
            self.drops[DropReason.NOT_CONNECTED] += 1

    def batch_failed(self, reason: int, head_size: int, payload_size: int) -> None:
        """The native fan-out could not send a copy (of a header and a payload of these sizes)
        queued by ``send`` or made by ``native.forward_send``: uncount it."""
        self.packets_sent -= 1
        self.octets_sent -= payload_size
        self.drops[DropReason.NOT_CONNECTED] += 1
        batch_failed = getattr(self.writer, "batch_failed", None)
        if batch_failed is not None:
            batch_failed(reason, head_size + payload_size)

    def _want_keyframe(self, now: float) -> None:
        if now - self._last_keyframe_request >= KEYFRAME_RETRY_S:
            self._last_keyframe_request = now
            if self.target_layer is not None:
                self.producer.request_keyframe(now, self.target_layer)

    def _switch_to(self, packet: RtpView, layer: int, now: float) -> None:
        """Start forwarding ``layer`` from this keyframe: sync every rewriter to it."""
        if self.current_layer is not None:
            self.layer_switches += 1
        self.current_layer = layer
        self._seq.sync(packet.sequence_number)
        self._ts.sync(packet.timestamp, now)
        if self.producer.codec is not None and self.producer.codec.name == "vp8":
            try:
                descriptor = Vp8Descriptor.parse(packet.payload)
            except ValueError:
                return
            self._vp8.sync(descriptor.picture_id, descriptor.tl0picidx)
            self._rewrite_vp8 = True

    def skip(self, in_seq: int, layer: int, reason: DropReason = DropReason.PADDING_ONLY,
             count: bool = True) -> None:
        """The producer has nothing to forward for this packet (padding-only, silence, invalid);
        ``count`` False when the producer already counted it (once for all consumers)."""
        if layer == self.current_layer and self.pause_reason is None:
            if count:
                self.drops[reason] += 1
            self._seq.drop(in_seq)

    # -- feedback from the subscriber ------------------------------------------------------------

    def on_keyframe_request(self, now: float) -> None:
        layer = self.current_layer if self.current_layer is not None else self.target_layer
        if layer is not None:
            self.producer.request_keyframe(now, layer)

    def on_nack(self, lost: list[int], now: float = 0.0) -> int:
        """Resend what the subscriber lost from our history; returns how many were resent."""
        if self._history is None or self.codec is None:
            return 0
        resent = 0
        for seq in lost:
            sent = self._history.get(seq)
            if sent is None:
                continue
            data = self._resend_packet(seq, *sent, now)
            if self.codec.rtx_payload_type is not None:
                data = wrap_rtx(data, self.codec.rtx_payload_type, self._rtx_seq, self.rtx_ssrc)
                self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            if self.writer.send_rtp(data):
                resent += 1
        self.retransmitted += resent
        return resent

    def _resend_packet(self, seq: int, timestamp: int, marker: int, payload: bytes,
                       now: float) -> bytes:
        """The packet sent with ``seq``, rebuilt from the history (which keeps no header): the
        same sequence number, timestamp, marker and payload; its send time as now (as a
        retransmission's is) and, for transport-cc, a fresh number (a new packet for it)."""
        assert self.codec is not None
        abs_send_time_id = self.ext_key[1]
        elements = (extension_elements([(abs_send_time_id, abs_send_time_now(now))])
                    if abs_send_time_id else b"")
        if self.twcc is not None:
            transport_seq = self.twcc.next(len(payload) + RTP_OVERHEAD, now)
            elements += transport_cc_element(self.twcc_id, transport_seq)
        block = finish_extension_block(elements)
        return pack_header(0x90 if block else 0x80, (marker << 7) | self.codec.payload_type,
                           seq, timestamp, self.ssrc) + block + payload

    def padding_packet(self, size: int, now: float, probe_cluster: int) -> bytes | None:
        """A padding-only RTX packet for bandwidth probing (None without RTX or transport-cc)."""
        if self.codec is None or self.codec.rtx_payload_type is None or self.twcc is None:
            return None
        padding = max(1, min(size, 255))
        transport_seq = self.twcc.next(padding + RTP_OVERHEAD, now, probe_cluster)
        block = finish_extension_block(transport_cc_element(self.twcc_id, transport_seq))
        header = pack_header(0xB0, self.codec.rtx_payload_type, self._rtx_seq,
                             self._ts.last_output, self.rtx_ssrc)
        self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        return header + block + bytes(padding - 1) + bytes([padding])

    def sender_report(self) -> RtcpSrPacket | None:
        """An SR mapping the publisher's NTP time to our timestamps (lip sync), if known yet."""
        if self.current_layer is None or self.packets_sent == 0 or self._ts.offset is None:
            return None
        report = self.producer.layers[self.current_layer].sender_report
        if report is None:
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

    def add_counters_to(self, into: Counter[str]) -> None:
        """Adds this consumer's totals to a room's /metrics counters (also once it is dropped:
        the subscriber keeps them, since counters never go back)."""
        into["layer_switches"] += self.layer_switches
        into["forwarded_packets"] += self.packets_sent
        into["forwarded_bytes"] += self.octets_sent
        into["retransmitted_packets"] += self.retransmitted
        for reason, count in self.drops.items():
            into[f"drop:{reason.value}"] += count

    def close(self) -> None:
        self.closed = True
        self.pause_reason = PauseReason.NOT_NEGOTIATED
        self._fan_out()  # counts what it missed outside last-N
        self.producer.detach(self)
