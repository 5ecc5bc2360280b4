"""Subscriber: the shell around a participant's subscribing peer connection (the server offers).

One m-line per consumed track. An m-line whose producer went away is made inactive and reused by
the next track of the same kind (aiortc never recycles mids, and its SDP grows ~1.4 KB per
m-line). Offers go out one at a time: changes that arrive meanwhile are folded into the next one.
RTCP from the subscriber (PLI/FIR, NACK, REMB) is routed here by SSRC; sender reports for all its
consumers are sent by one timer, compounded, instead of one task per sender.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc.exceptions import InvalidStateError
from aiortc.rtcrtpparameters import RTCRtpSendParameters
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
from aiortc.sdp import SessionDescription

from sfu import aiortc_hooks
from sfu.consumer import Consumer
from sfu.downlink import DownlinkPolicy
from sfu.downlink_control import DownlinkControl
from sfu.events import AnswerRefused, EventSink, TrackDescription, ignore_events
from sfu.producer import Producer
from sfu.publisher import URI_ABS_SEND_TIME, URI_AUDIO_LEVEL
from sfu.rtp_packet import split_rtcp_compound
from sfu.sdp_munging import URI_TWCC, add_transport_cc_to_offer, negotiated_extension_id
from sfu.twcc import TRANSPORT_CC_FMT, TransportFeedback
from sfu.types import Codec

logger = logging.getLogger(__name__)

ANSWER_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 15.0
SENDER_REPORT_INTERVAL_S = 1.0
TICK_S = 0.125
"""How often layers and the audio-only state are re-decided from the latest estimate."""
TWCC_EXT_ID = 5
"""aiortc's offers use ids 1-3 (mid, audio level, abs-send-time): transport-cc takes 5."""
RTCP_RTPFB = 205
MAX_RTCP_COMPOUND_BYTES = 1100

SendOffer = Callable[[str, dict[str, TrackDescription]], Awaitable[None]]


def check_answer(sdp: str) -> None:
    """Refuse what cannot be an answer before it is handed to the negotiation (which then
    keeps waiting for a usable one). aiortc's parser raises all sorts (AssertionError, KeyError,
    ValueError...) on bad text: callers catch broadly."""
    if not sdp.startswith("v="):
        raise ValueError("SDP must start with v=0")
    description = SessionDescription.parse(sdp)
    if not description.media:
        raise ValueError("SDP answers no media section (m=)")


def describe_error(exc: BaseException) -> str:
    """One line naming the problem, also for aiortc's bare AssertionError/KeyError."""
    text = str(exc)
    if not text or isinstance(exc, AssertionError | KeyError | IndexError | AttributeError):
        text = f"{type(exc).__name__}{': ' + text if text else ''} (malformed or unsupported SDP)"
    return text[:200]


def match_codec(codec: Codec, parameters: RTCRtpSendParameters) -> Codec | None:
    """The subscriber's payload types for the producer's codec (matched by name, not number)."""
    for candidate in parameters.codecs:
        if candidate.mimeType.lower() != codec.mime_type.lower():
            continue
        rtx = next(
            (c.payloadType for c in parameters.codecs
             if c.name.lower() == "rtx" and c.parameters.get("apt") == candidate.payloadType),
            None,
        )
        return Codec(candidate.mimeType, candidate.clockRate, candidate.payloadType, rtx)
    return None


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


@dataclass(eq=False)
class Slot:
    """One sendonly m-line of the subscriber connection."""

    transceiver: RTCRtpTransceiver
    kind: str
    consumer: Consumer | None = None
    previous: Consumer | None = None
    parameters: RTCRtpSendParameters | None = None
    stream_id: str = field(default="")


class Subscriber:
    def __init__(
        self,
        participant_id: str,
        pc: RTCPeerConnection,
        send_offer: SendOffer,
        loop_time: Callable[[], float],
        configure_ice: Callable[[RTCPeerConnection], None] = lambda pc: None,
        notify: EventSink = ignore_events,
        policy: DownlinkPolicy | None = None,
        transport_cc: bool = True,
    ) -> None:
        self.participant_id = participant_id
        self._configure_ice = configure_ice
        self._offer_transport_cc = transport_cc
        self._twcc_id = 0
        self.downlink = DownlinkControl(
            participant_id, policy or DownlinkPolicy(), notify, self._send_rtp, loop_time
        )
        self._hooked = False
        self.pc = pc
        self.slots: list[Slot] = []
        self.consumers: dict[str, Consumer] = {}  # by producer id
        self.estimated_bitrate: int | None = None  # from the subscriber's REMBs, added up
        self._rembs = RembAggregator()
        self.negotiations = 0
        self.bad_answers = 0
        self._send_offer = send_offer
        self._time = loop_time
        self._by_ssrc: dict[int, Consumer] = {}
        self._writer: aiortc_hooks.DatagramWriter | None = None
        self._dirty = asyncio.Event()
        self._answer: asyncio.Future[str] | None = None
        # Set once an answer is applied: the client's trickled candidates must wait for it.
        self._described = asyncio.Event()
        self._closed = False
        self._notify = notify
        self._negotiation_task = asyncio.ensure_future(self._negotiate_forever())
        self._report_task = asyncio.ensure_future(self._report_forever())
        self._tick_task = asyncio.ensure_future(self._tick_forever())

    # -- membership ------------------------------------------------------------------------------

    def add_producer(self, producer: Producer) -> None:
        if self._closed or producer.id in self.consumers or producer.closed:
            return
        slot = next(
            (s for s in self.slots if s.consumer is None and s.kind == producer.kind.value), None
        )
        if slot is None:
            transceiver = self.pc.addTransceiver(producer.kind.value, direction="sendonly")
            slot = Slot(transceiver, producer.kind.value)
            self.slots.append(slot)
            self._attach(slot)
        else:
            slot.transceiver.direction = "sendonly"
        ssrc, rtx_ssrc = aiortc_hooks.sender_ssrcs(slot.transceiver.sender)
        if self._writer is None:
            self._writer = aiortc_hooks.DatagramWriter(slot.transceiver.sender.transport)
        consumer = Consumer(
            producer, self.participant_id, slot.transceiver.mid or "", ssrc, rtx_ssrc,
            self._writer, continue_from=slot.previous,
        )
        slot.consumer = consumer
        slot.stream_id = producer.participant_id
        aiortc_hooks.set_stream_id(slot.transceiver.sender, producer.participant_id)
        self.consumers[producer.id] = consumer
        self._by_ssrc[ssrc] = consumer
        self._by_ssrc[rtx_ssrc] = consumer
        producer.consumers.append(consumer)
        if producer.muted:
            consumer.set_muted(True)
        self._dirty.set()

    def remove_producer(self, producer_id: str) -> None:
        consumer = self.consumers.pop(producer_id, None)
        if consumer is None:
            return
        consumer.close()
        for slot in self.slots:
            if slot.consumer is consumer:
                slot.consumer = None
                slot.previous = consumer
                slot.transceiver.direction = "inactive"
        self._dirty.set()

    def _attach(self, slot: Slot) -> None:
        def on_parameters(parameters: RTCRtpSendParameters) -> None:
            slot.parameters = parameters
            self._configure(slot)

        aiortc_hooks.capture_sender(slot.transceiver.sender, on_parameters)

    def _configure(self, slot: Slot) -> None:
        consumer, parameters = slot.consumer, slot.parameters
        if consumer is None or parameters is None or consumer.producer.codec is None:
            return
        ids = {ext.uri: ext.id for ext in parameters.headerExtensions}
        codec = match_codec(consumer.producer.codec, parameters)
        consumer.configure(codec, ids.get(URI_AUDIO_LEVEL, 0), ids.get(URI_ABS_SEND_TIME, 0),
                           self.downlink.sequencer, self._twcc_id)

    # -- negotiation -----------------------------------------------------------------------------

    def track_map(self) -> dict[str, TrackDescription]:
        return {
            slot.transceiver.mid: TrackDescription(
                participant_id=slot.consumer.producer.participant_id,
                kind=slot.kind,
                stream_id=slot.stream_id,
            )
            for slot in self.slots
            if slot.consumer is not None and slot.transceiver.mid is not None
        }

    async def _negotiate_forever(self) -> None:
        while not self._closed:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._negotiate_once()
            except asyncio.CancelledError:
                raise
            except (TimeoutError, ConnectionError, InvalidStateError) as exc:
                # The client went quiet or away mid-offer: retried on the next change.
                logger.warning("subscriber %s: negotiation abandoned: %r", self.participant_id,
                               exc)
            except Exception:
                logger.exception("subscriber %s: negotiation failed", self.participant_id)

    async def _negotiate_once(self) -> None:
        if not self.slots:
            return
        if not self._hooked:
            self._hooked = True
            self.hook_transport()
        self._configure_ice(self.pc)
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        for slot in self.slots:  # mids exist only now
            if slot.consumer is not None:
                slot.consumer.mid = slot.transceiver.mid or ""
        loop = asyncio.get_running_loop()
        self._answer = loop.create_future()
        self.negotiations += 1
        sdp = self.pc.localDescription.sdp
        if self._offer_transport_cc:
            # aiortc knows nothing of transport-cc: offered in the text only; we do its work.
            sdp = add_transport_cc_to_offer(sdp, TWCC_EXT_ID)
        await self._send_offer(sdp, self.track_map())
        try:
            sdp = await asyncio.wait_for(self._answer, ANSWER_TIMEOUT_S)
        finally:
            self._answer = None
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:  # aiortc raises ValueError, but also AttributeError etc.
            self._refuse_answer(exc)
            return
        self._described.set()
        first_mid = next((s.transceiver.mid for s in self.slots if s.transceiver.mid), None)
        if self._offer_transport_cc and first_mid is not None:
            twcc_id = negotiated_extension_id(sdp, first_mid, URI_TWCC) or 0
            if twcc_id and not self._twcc_id:
                self._twcc_id = twcc_id
                self.downlink.enable_transport_cc()
        # aiortc starts DTLS once per transport; a second offer racing the first handshake
        # would start it twice, so the next offer waits for the connection.
        await self._wait_connected()
        for slot in self.slots:
            self._configure(slot)

    def _refuse_answer(self, exc: BaseException) -> None:
        """A client's answer aiortc cannot apply: the client hears why (``bad-sdp``) and gets a
        fresh offer to answer; the log gets one line per subscriber, not a traceback per try."""
        self.bad_answers += 1
        reason = describe_error(exc)
        if self.bad_answers == 1:
            logger.warning("subscriber %s: answer refused (%s); later ones are only counted",
                           self.participant_id, reason)
        self._notify(AnswerRefused(reason))
        self._dirty.set()

    async def _wait_connected(self) -> None:
        if self.pc.connectionState == "connected":
            return
        done = asyncio.Event()

        def on_change() -> None:
            if self.pc.connectionState in ("connected", "failed", "closed"):
                done.set()

        self.pc.on("connectionstatechange", on_change)
        try:
            await asyncio.wait_for(done.wait(), CONNECT_TIMEOUT_S)
        except TimeoutError:
            logger.warning("subscriber %s: connection not established", self.participant_id)
        finally:
            self.pc.remove_listener("connectionstatechange", on_change)

    async def wait_described(self, timeout: float) -> bool:
        """Wait (bounded) until an answer has been applied; ICE candidates need one."""
        if not self._described.is_set():
            if not self.has_pending_offer():
                return False  # no offer out: nothing to wait for
            try:
                await asyncio.wait_for(self._described.wait(), timeout)
            except TimeoutError:
                return False
        return True

    def has_pending_offer(self) -> bool:
        return self._answer is not None and not self._answer.done()

    def set_answer(self, sdp: str) -> bool:
        """The client's answer; False when no offer is outstanding."""
        if not self.has_pending_offer():
            return False
        self._answer.set_result(sdp)  # type: ignore[union-attr]
        return True

    # -- RTCP ------------------------------------------------------------------------------------

    def on_rtcp(self, data: bytes) -> None:
        now = self._time()
        # aiortc would read transport-cc feedback as a NACK: it is split off and parsed by us.
        for kind, fmt, chunk in split_rtcp_compound(data):
            if kind == RTCP_RTPFB and fmt == TRANSPORT_CC_FMT:
                try:
                    self.downlink.on_transport_feedback(TransportFeedback.parse(chunk))
                except ValueError:
                    pass
                continue
            try:
                packets = RtcpPacket.parse(chunk)
            except ValueError:
                continue
            for packet in packets:
                self._on_rtcp_packet(packet, now)

    def _on_rtcp_packet(self, packet: object, now: float) -> None:
        if isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                consumer = self._by_ssrc.get(packet.media_ssrc)
                if consumer is not None:
                    consumer.on_keyframe_request(now)
            elif packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except (ValueError, struct.error):  # aiortc lets short FCIs through
                    return
                ours = frozenset(s for s in ssrcs if s in self._by_ssrc)
                self.estimated_bitrate = self._rembs.add(bitrate, ours, now)
                self.downlink.on_remb(self.estimated_bitrate)
        elif isinstance(packet, RtcpRrPacket):
            # Loss on our streams: for REMB-only receivers, what tells a slow link from a busy
            # CPU (DownlinkControl.congested).
            lost = [r.fraction_lost / 256 for r in packet.reports if r.ssrc in self._by_ssrc]
            if lost:
                self.downlink.on_receiver_loss(max(lost), now)
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            consumer = self._by_ssrc.get(packet.media_ssrc)
            if consumer is not None:
                consumer.on_nack(packet.lost, now)

    def hook_transport(self) -> None:
        """Route this connection's RTCP to us (call once the first transceiver exists)."""
        transport = self.slots[0].transceiver.sender.transport
        aiortc_hooks.hook_transport(transport, lambda data, arrival: None, self.on_rtcp)

    def _send_rtp(self, packet: bytes) -> bool:
        return self._writer.send_rtp(packet) if self._writer is not None else False

    async def _tick_forever(self) -> None:
        while not self._closed:
            await asyncio.sleep(TICK_S)
            try:
                self.downlink.tick(list(self.consumers.values()), self._sent_bytes())
            except Exception:
                logger.exception("subscriber %s: bandwidth tick failed", self.participant_id)

    def _sent_bytes(self) -> int:
        return self._writer.sent_bytes if self._writer is not None else 0

    def set_tiles(self, tiles: dict[str, object]) -> None:
        self.downlink.policy.tiles = tiles  # type: ignore[assignment]

    def set_user_audio_only(self, enabled: bool) -> None:
        self.downlink.policy.user_audio_only = enabled
        self.downlink.tick(list(self.consumers.values()), self._sent_bytes())

    async def _report_forever(self) -> None:
        while not self._closed:
            await asyncio.sleep(SENDER_REPORT_INTERVAL_S)
            self.send_sender_reports()

    def send_sender_reports(self) -> int:
        writer = self._writer
        if writer is None or not writer.check():
            return 0
        sent = 0
        chunk = b""
        for consumer in self.consumers.values():
            report = consumer.sender_report()
            if report is None:
                continue
            data = bytes(report)
            if len(chunk) + len(data) > MAX_RTCP_COMPOUND_BYTES:
                writer.send_rtcp(chunk)
                chunk = b""
            chunk += data
            sent += 1
        if chunk:
            writer.send_rtcp(chunk)
        return sent

    async def close(self) -> None:
        self._closed = True
        self._negotiation_task.cancel()
        self._report_task.cancel()
        self._tick_task.cancel()
        self.downlink.close()
        if self._answer is not None and not self._answer.done():
            self._answer.cancel()
        for consumer in list(self.consumers.values()):
            consumer.close()
        self.consumers.clear()
        await self.pc.close()
