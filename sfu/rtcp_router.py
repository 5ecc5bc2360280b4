"""RTCP from a subscriber, routed: transport-cc to the estimator, REMB to the downlink control,
PLI/FIR and NACK to the consumer whose SSRC they name.

Pure apart from what it calls: it never sends, and time is passed in. The subscriber shell owns
the SSRC table (``by_ssrc``) and hands every decrypted RTCP datagram to ``on_rtcp``.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable

from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    unpack_remb_fci,
)

from sfu.consumer import Consumer
from sfu.downlink_control import DownlinkControl
from sfu.types import DropReason
from sfu.wire.rtp_packet import split_rtcp_compound
from sfu.wire.twcc import RTCP_RTPFB, TRANSPORT_CC_FMT, TransportFeedback

__all__ = ["MAX_REMB_SOURCES", "REMB_SOURCE_TTL_S", "RembAggregator", "RtcpRouter"]

REMB_SOURCE_TTL_S = 3.0
"""A REMB not renewed for this long no longer counts (its receiver or stream went away)."""
MAX_REMB_SOURCES = 64


class RembAggregator:
    """One connection's downlink estimate from its REMBs (pure; time passed in).

    A browser sends one REMB for the whole connection, listing every video SSRC it receives;
    aiortc sends one per video receiver, listing only that stream's SSRC and estimating from that
    stream alone. Taking the latest REMB as the connection's estimate let any one low-rate
    stream - another participant's tiny video, sent in bursts - pull the whole downlink down to
    audio-only. So estimates for disjoint SSRC sets add up, and a REMB replaces the earlier ones
    whose SSRCs it covers (an empty set covers the whole connection).
    """

    def __init__(self) -> None:
        self._sources: dict[frozenset[int], tuple[int, float]] = {}

    def add(self, bitrate_bps: int, ssrcs: frozenset[int], now: float) -> int:
        sources = self._sources
        for key in [k for k in sources if not ssrcs or not k or k & ssrcs]:
            del sources[key]
        sources[ssrcs] = (bitrate_bps, now)
        total = 0
        for key, (bitrate, at) in list(sources.items()):
            if now - at > REMB_SOURCE_TTL_S or len(sources) > MAX_REMB_SOURCES:
                del sources[key]
            else:
                total += bitrate
        return total


class RtcpRouter:
    def __init__(self, downlink: DownlinkControl, loop_time: Callable[[], float]) -> None:
        self.downlink = downlink
        self.by_ssrc: dict[int, Consumer] = {}  # our media and RTX SSRCs -> their consumer
        self.estimated_bitrate: int | None = None  # from the subscriber's REMBs, added up
        self.drops: Counter[DropReason] = Counter()  # RTCP packets that did not parse
        self._rembs = RembAggregator()
        self._time = loop_time

    def add(self, consumer: Consumer) -> None:
        self.by_ssrc[consumer.ssrc] = consumer
        self.by_ssrc[consumer.rtx_ssrc] = consumer

    def on_rtcp(self, data: bytes) -> None:
        now = self._time()
        # aiortc would read transport-cc feedback as a NACK: it is split off and parsed by us.
        for kind, fmt, chunk in split_rtcp_compound(data):
            if kind == RTCP_RTPFB and fmt == TRANSPORT_CC_FMT:
                try:
                    feedback = TransportFeedback.parse(chunk)
                except ValueError:
                    self.drops[DropReason.MALFORMED] += 1
                    continue
                self.downlink.on_transport_feedback(feedback)
                continue
            try:
                packets = RtcpPacket.parse(chunk)
            except ValueError:
                self.drops[DropReason.MALFORMED] += 1
                continue
            for packet in packets:
                self._on_packet(packet, now)

    def _on_packet(self, packet: object, now: float) -> None:
        if isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                consumer = self.by_ssrc.get(packet.media_ssrc)
                if consumer is not None:
                    consumer.on_keyframe_request(now)
            elif packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except (ValueError, struct.error):  # aiortc lets short FCIs through
                    self.drops[DropReason.MALFORMED] += 1
                    return
                ours = frozenset(s for s in ssrcs if s in self.by_ssrc)
                self.estimated_bitrate = self._rembs.add(bitrate, ours, now)
                self.downlink.on_remb(self.estimated_bitrate)
        elif isinstance(packet, RtcpRrPacket):
            # Loss on our streams: for REMB-only receivers, what tells a slow link from a busy
            # CPU (DownlinkControl.congested).
            lost = [r.fraction_lost / 256 for r in packet.reports if r.ssrc in self.by_ssrc]
            if lost:
                self.downlink.on_receiver_loss(max(lost), now)
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            consumer = self.by_ssrc.get(packet.media_ssrc)
            if consumer is not None:
                consumer.on_nack(packet.lost, now)
