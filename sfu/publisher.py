"""Publisher: the shell around a participant's publishing peer connection (the client offers).

It demultiplexes the decrypted RTP of the whole bundled transport to Producers (by SSRC, learnt
from the MID header extension or the SDP), unwraps RTX, asks for keyframes, answers loss with
NACKs upstream and sends REMB so the publisher can raise its bitrate (aiortc's own receivers would
have, but they are bypassed). Only this shell touches asyncio and aiortc objects.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Collection

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    pack_remb_fci,
)

from sfu import aiortc_hooks
from sfu.negotiation import (
    URI_ABS_SEND_TIME,
    URI_AUDIO_LEVEL,
    URI_MID,
    URI_TWCC,
    extension_ids,
    extension_limits,
    primary_codec,
)
from sfu.producer import Layer, Producer
from sfu.remb_estimator import new_remote_estimator
from sfu.scheduler import Scheduler, Timer
from sfu.types import DropReason, Kind
from sfu.wire.rtp_packet import RtpView, extensions_valid
from sfu.wire.sdp_munging import (
    SimulcastOffer,
    add_simulcast_to_answer,
    add_transport_cc_to_answer,
    offered_extension_ids,
    parse_simulcast_offer,
)
from sfu.wire.seqmath import seq_diff
from sfu.wire.twcc import FeedbackRecorder

logger = logging.getLogger(__name__)

REMB_INTERVAL_S = 0.5
REMB_BATCH_S = 0.1
REMB_BATCH_MAX = 64
"""The REMB estimator takes its per-packet samples in batches: at the first packet 100 ms after
the batch began, or at 64 samples. Same inputs in the same order give the same estimates
(aiortc's estimator runs on the arrival times it is given); the estimate moves up to 100 ms
later, well inside the 0.5 s between REMBs. Why: at ~110 video packets a second each packet
meets cold caches, and the estimator's dozen Python frames cost far more there than in a row."""
SPARE_SSRCS = 2
"""SSRCs a track may introduce beyond media + RTX per layer (a sender restarted with new SSRCs).
Every learnt SSRC costs memory and per-packet work for the connection's life, and a publisher
sending from a new SSRC on every packet would otherwise grow the table without bound."""
NACK_MAX_GAP = 128
"""A sequence jump larger than this restarts NACK tracking: aiortc's NackGenerator walks every
missing number one by one (32767 steps for a hostile jump) and then keeps only the last 128."""
FEEDBACK_INTERVAL_S = 0.05
"""Transport-cc feedback to publishers every 50 ms, as libwebrtc receivers do."""


def check_offer_shape(sdp: str) -> None:
    """aiortc's parser skips lines it does not know, so "hello" would parse as an empty offer."""
    if not sdp.startswith("v="):
        raise ValueError("SDP must start with v=0")
    if not any(line.startswith(("m=audio", "m=video")) for line in sdp.splitlines()):
        raise ValueError("SDP offers no audio or video section (m=audio / m=video)")


class Route:
    """Where packets of one SSRC go: a producer's layer, as media or as its RTX."""

    __slots__ = ("producer", "layer", "rtx", "nack")

    def __init__(self, producer: Producer, layer: Layer, rtx: bool) -> None:
        self.producer = producer
        self.layer = layer
        self.rtx = rtx
        self.nack = NackGenerator() if producer.is_video and not rtx else None


class Publisher:
    def __init__(
        self,
        participant_id: str,
        pc: RTCPeerConnection,
        on_producer: Callable[[Producer], None],
        loop_time: Callable[[], float],
        configure_ice: Callable[[RTCPeerConnection], None] = lambda pc: None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.participant_id = participant_id
        self._configure_ice = configure_ice
        self.pc = pc
        self.producers: dict[str, Producer] = {}  # by mid
        self.drops: Counter[DropReason] = Counter()
        self._on_producer = on_producer
        self._time = loop_time
        self._routes: dict[int, Route] = {}  # by SSRC, learnt from the SDP or the MID/RID
        self._ssrcs_learnt: Counter[str] = Counter()  # by producer id, bounded by _ssrc_room
        self._ext_limits: dict[int, tuple[int, int]] = {}  # id -> allowed sizes, negotiated
        self._simulcast: dict[str, SimulcastOffer] = {}
        self._mid_ext_id: int | None = None
        self._abs_send_time_id: int | None = None
        self._rid_ext_id: int | None = None
        self._repaired_rid_ext_id: int | None = None
        self._writer: aiortc_hooks.DatagramWriter | None = None
        self._hooked: set[int] = set()
        self._rtcp_ssrc = uuid.uuid4().int & 0xFFFFFFFF
        # Only for a publisher without transport-cc (REMB): 1,000 rate buckets, ~100 KB.
        self._estimator: RemoteBitrateEstimator | None = None
        self._last_remb = float("-inf")
        # (arrival ms, abs-send-time, size, SSRC) not yet given to the estimator; its start
        self._remb_samples: list[tuple[int, int, int, int]] = []
        self._remb_batch_start = 0.0
        self.estimated_bitrate: int | None = None
        # Transport-cc with publishers that offer it (browsers): they estimate their uplink
        # themselves from our feedback, and then our REMB must stay silent (it would cap them).
        self._twcc_ids: dict[str, int] = {}
        self._twcc_ext_id: int | None = None
        self._twcc_recorder = FeedbackRecorder()
        self._scheduler = scheduler if scheduler is not None else Scheduler()
        self._feedback_timer: Timer | None = None
        self._started = False
        self._closed = False
        self.feedback_packets_sent = 0

    async def answer(self, offer_sdp: str, screen_mids: Collection[str] = ()) -> str:
        """Apply the client's offer and return our answer. Raises ValueError on a bad offer."""
        check_offer_shape(offer_sdp)
        simulcast = parse_simulcast_offer(offer_sdp)
        twcc_ids = offered_extension_ids(offer_sdp, URI_TWCC)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        for transceiver in self.pc.getTransceivers():
            if transceiver.mid is None or transceiver.mid in self.producers:
                continue
            if transceiver.direction == "sendonly":
                continue  # we never send on the publisher connection
            transceiver.direction = "recvonly"
            offer = simulcast.get(transceiver.mid)
            if offer is not None:
                self._simulcast[transceiver.mid] = offer
                self._rid_ext_id = offer.rid_ext_id
                self._repaired_rid_ext_id = offer.repaired_rid_ext_id
            self._add_producer(transceiver.mid, Kind(transceiver.kind), transceiver.receiver,
                               offer.rids if offer is not None else None)
            # One live screen per participant: a client listing every video m-line must not
            # give its cameras the screen's allocator priority.
            if transceiver.mid in screen_mids and transceiver.kind == "video" and not any(
                    p.source == "screen" and not p.closed for p in self.producers.values()):
                self.producers[transceiver.mid].source = "screen"
        self._configure_ice(self.pc)
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        # aiortc drops rid/simulcast and transport-cc from its answer: add them to the text
        # the client gets (aiortc keeps its own description; we do that work ourselves).
        sdp = add_simulcast_to_answer(self.pc.localDescription.sdp, self._simulcast)
        if twcc_ids:
            self._twcc_ids.update(twcc_ids)
            self._twcc_ext_id = next(iter(self._twcc_ids.values()))
            sdp = add_transport_cc_to_answer(sdp, self._twcc_ids)
            self._start_feedback()
        return sdp

    def start(self) -> None:
        """Allow timers (from a running loop): transport-cc feedback runs once negotiated."""
        self._started = not self._closed
        self._start_feedback()

    def _start_feedback(self) -> None:
        if self._started and self._twcc_ext_id is not None and self._feedback_timer is None:
            self._feedback_timer = self._scheduler.every(
                FEEDBACK_INTERVAL_S, self.send_feedback, f"publisher {self.participant_id} feedback"
            )

    def _add_producer(
        self, mid: str, kind: Kind, receiver: RTCRtpReceiver, rids: list[str] | None
    ) -> None:
        producer = Producer(
            f"{self.participant_id}:{mid}", self.participant_id, kind, mid, self._send_pli, rids
        )
        self.producers[mid] = producer
        if id(receiver.transport) not in self._hooked:
            self._hooked.add(id(receiver.transport))
            aiortc_hooks.hook_transport(receiver.transport, self._on_rtp, self._on_rtcp,
                                        self._on_rtp_view)
            self._writer = aiortc_hooks.DatagramWriter(receiver.transport)

        def on_receive(parameters: RTCRtpReceiveParameters) -> None:
            self._configure(producer, parameters)

        aiortc_hooks.disable_decoding(receiver, on_receive)
        aiortc_hooks.slim_receiver(receiver)  # the hooked transport never feeds it a packet

    def _configure(self, producer: Producer, parameters: RTCRtpReceiveParameters) -> None:
        codec = primary_codec(parameters.codecs)
        if codec is None:
            logger.warning("producer %s negotiated no usable codec", producer.id)
            return
        producer.set_codec(codec)
        ids = extension_ids(parameters.headerExtensions)
        self._ext_limits.update(extension_limits(ids))
        producer.audio_level_ext_id = ids.get(URI_AUDIO_LEVEL)
        self._mid_ext_id = ids.get(URI_MID, self._mid_ext_id)
        self._abs_send_time_id = ids.get(URI_ABS_SEND_TIME, self._abs_send_time_id)
        if not producer.simulcast:  # simulcast SSRCs are never in the SDP: learnt by RID
            layer = producer.layers[0]
            for encoding in parameters.encodings:
                if encoding.ssrc:
                    self._learn(encoding.ssrc, producer, layer, rtx=False)
                if encoding.rtx is not None and encoding.rtx.ssrc:
                    self._learn(encoding.rtx.ssrc, producer, layer, rtx=True)
        self._on_producer(producer)

    def _ssrc_room(self, producer: Producer) -> bool:
        return self._ssrcs_learnt[producer.id] < 2 * len(producer.layers) + SPARE_SSRCS

    def _learn(self, ssrc: int, producer: Producer, layer: Layer, rtx: bool) -> Route:
        if ssrc not in self._routes:  # the SDP's SSRCs come again on a renegotiation
            self._ssrcs_learnt[producer.id] += 1
        route = self._routes[ssrc] = Route(producer, layer, rtx)
        if not rtx:
            layer.ssrc = ssrc
        return route

    # -- incoming RTP ----------------------------------------------------------------------------

    def _route_new(self, packet: RtpView) -> Route | DropReason:
        """A route for an SSRC not seen before, if the MID (and for simulcast the RID) extension
        says whose it is and the track may still introduce SSRCs; else why not."""
        if self._mid_ext_id is None:
            return DropReason.UNKNOWN_SSRC
        mid = packet.extensions.get(self._mid_ext_id)
        producer = self.producers.get(mid.decode("ascii", "replace")) if mid else None
        if producer is None or producer.codec is None:
            return DropReason.UNKNOWN_SSRC
        if not self._ssrc_room(producer):
            return DropReason.SSRC_LIMIT  # nothing is stored: the next packet asks again
        if producer.simulcast:
            for ext_id, rtx in ((self._rid_ext_id, False), (self._repaired_rid_ext_id, True)):
                rid = packet.extensions.get(ext_id) if ext_id is not None else None
                layer = producer.layer_by_rid(rid.decode("ascii", "replace")) if rid else None
                if layer is not None:
                    return self._learn(packet.ssrc, producer, layer, rtx)
            return DropReason.UNKNOWN_SSRC
        rtx = packet.payload_type == producer.codec.rtx_payload_type
        return self._learn(packet.ssrc, producer, producer.layers[0], rtx)

    def _on_rtp(self, data: bytes, arrival_ms: int) -> None:
        try:
            packet = RtpView.parse(data)
        except ValueError:
            self.drops[DropReason.MALFORMED] += 1
            return
        self._on_rtp_view(packet, arrival_ms)

    def _on_rtp_view(self, packet: RtpView, arrival_ms: int) -> None:
        """One parsed packet (by ``_on_rtp``, or in C by ``native.receive_view``)."""
        data = packet.data
        if self._twcc_ext_id is not None:
            # Before anything may discard the packet: it crossed the publisher's link, and the
            # browser's estimator reads a packet reported lost as loss on that link. Probe padding
            # (padding-only RTX, discarded below) most of all: reported lost, a probe measures
            # nothing and the browser stays on its lowest layer (issue 10).
            stamp = packet.extensions.get(self._twcc_ext_id)
            if stamp is not None and len(stamp) == 2:
                self._twcc_recorder.on_packet((stamp[0] << 8) | stamp[1], arrival_ms / 1000)
        route = self._routes.get(packet.ssrc)
        if route is None:
            found = self._route_new(packet)
            if isinstance(found, DropReason):
                self.drops[found] += 1
                return
            route = found
        producer, layer = route.producer, route.layer
        codec = producer.codec
        assert codec is not None
        if route.rtx:
            if not packet.payload:
                self.drops[DropReason.PADDING_ONLY] += 1  # the publisher probing its uplink
                return
            if layer.ssrc is None:
                self.drops[DropReason.RTX_BEFORE_MEDIA] += 1  # nothing to repair yet
                return
            try:
                packet = packet.unwrap_rtx(codec.payload_type, layer.ssrc)
            except ValueError:
                self.drops[DropReason.MALFORMED] += 1
                return
        elif packet.payload_type != codec.payload_type:
            self.drops[DropReason.UNKNOWN_SSRC] += 1
            return
        if packet.extensions and not extensions_valid(packet.extensions, self._ext_limits):
            producer.refuse(packet, layer.index, DropReason.BAD_EXTENSION)
            return
        now = self._time()
        if producer.is_video:
            self._feedback(route, packet, data, arrival_ms, now)
        producer.receive(packet, layer, now)

    def _feedback(
        self, route: Route, packet: RtpView, data: bytes, arrival_ms: int, now: float
    ) -> None:
        nack = route.nack
        if nack is not None and not nack.missing and nack.max_seq is not None and (
            packet.sequence_number - nack.max_seq == 1
        ):
            # The steady state (the next number, nothing missing): all that NackGenerator.add
            # would do, without its six Python calls (issue 11). A wrap goes the long way.
            nack.max_seq = packet.sequence_number
            nack = None
        elif nack is not None and nack.max_seq is not None and not (
            -NACK_MAX_GAP <= seq_diff(packet.sequence_number, nack.max_seq) <= NACK_MAX_GAP
        ):
            nack.max_seq = None  # a jump, not loss: restart from this packet
            nack.missing.clear()
        # aiortc's NackGenerator is typed for its RtpPacket; it reads only sequence_number.
        if nack is not None and nack.add(packet):  # type: ignore[arg-type]
            self._send_rtcp(
                RtcpRtpfbPacket(
                    fmt=RTCP_RTPFB_NACK, ssrc=self._rtcp_ssrc, media_ssrc=packet.ssrc,
                    lost=sorted(nack.missing),
                )
            )
        if self._abs_send_time_id is None or self._twcc_ext_id is not None:
            return
        abs_send_time = packet.extensions.get(self._abs_send_time_id)
        if abs_send_time is None or len(abs_send_time) != 3:
            return
        samples = self._remb_samples
        if not samples:
            self._remb_batch_start = now
        samples.append((arrival_ms, int.from_bytes(abs_send_time, "big"), len(data),
                        packet.ssrc))
        if len(samples) < REMB_BATCH_MAX and now - self._remb_batch_start < REMB_BATCH_S:
            return
        self.estimate_now()
        if self.estimated_bitrate and now - self._last_remb >= REMB_INTERVAL_S:
            self._last_remb = now
            ssrcs = [ssrc for ssrc, r in self._routes.items() if r.producer.is_video and not r.rtx]
            self._send_rtcp(
                RtcpPsfbPacket(
                    fmt=RTCP_PSFB_APP, ssrc=self._rtcp_ssrc, media_ssrc=0,
                    fci=pack_remb_fci(self.estimated_bitrate, ssrcs),
                )
            )

    def estimate_now(self) -> int | None:
        """Give the estimator the samples waiting in the batch; the estimate (bit/s) or None."""
        samples = self._remb_samples
        if not samples:
            return self.estimated_bitrate
        estimator = self._estimator
        if estimator is None:
            # The same figures as aiortc's, cheaper (sfu/remb_estimator.py).
            estimator = self._estimator = new_remote_estimator()
        add = estimator.add
        for arrival_ms, abs_send_time, size, ssrc in samples:
            remb = add(arrival_ms, abs_send_time, size, ssrc)
            if remb is not None:
                self.estimated_bitrate = remb[0]
        samples.clear()
        return self.estimated_bitrate

    # -- RTCP ------------------------------------------------------------------------------------

    def _on_rtcp(self, data: bytes) -> None:
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            self.drops[DropReason.MALFORMED] += 1
            return
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                route = self._routes.get(packet.ssrc)
                if route is not None and not route.rtx:
                    info = packet.sender_info
                    route.layer.sender_report = (info.ntp_timestamp, info.rtp_timestamp)

    def _send_pli(self, producer: Producer, layer: Layer) -> None:
        if layer.ssrc is not None:
            self._send_rtcp(
                RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=self._rtcp_ssrc, media_ssrc=layer.ssrc)
            )

    def _send_rtcp(self, packet: RtcpPsfbPacket | RtcpRtpfbPacket) -> None:
        if self._writer is not None:
            self._writer.send_rtcp(bytes(packet))

    def send_feedback(self) -> None:
        """Transport-cc feedback for what arrived since the last call (every 50 ms)."""
        if self._writer is None:
            return
        media_ssrc = next((s for s, r in self._routes.items() if not r.rtx), 0)
        arrival_now = aiortc_hooks.arrival_ms() / 1000
        for _ in range(8):  # drain, bounded
            packet = self._twcc_recorder.build(arrival_now, self._rtcp_ssrc, media_ssrc)
            if packet is None:
                break
            if self._writer.send_rtcp(packet):
                self.feedback_packets_sent += 1

    def set_muted(self, kind: Kind, muted: bool) -> list[Producer]:
        changed = [p for p in self.producers.values() if p.kind is kind]
        for producer in changed:
            producer.muted = muted
            for consumer in producer.consumers:
                consumer.set_muted(muted)
        return changed

    async def close(self) -> None:
        self._closed = True
        self._started = False
        if self._feedback_timer is not None:
            self._feedback_timer.cancel()
            self._feedback_timer = None
        for producer in self.producers.values():
            producer.close()
        await asyncio.shield(self.pc.close())
        # Reference counting frees the connection now, and the producers that subscribers'
        # closed consumers still hold no longer hold it (sfu/gctune.py).
        aiortc_hooks.release_connection(self.pc)
        self._routes.clear()
