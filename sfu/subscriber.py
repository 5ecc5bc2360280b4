"""Subscriber: the shell around a participant's subscribing peer connection (the server offers).

It composes three parts: the ``SubscriberNegotiator`` (offers, answers, one m-line per consumed
track, reused when a track goes), the ``RtcpRouter`` (the subscriber's RTCP to consumers and the
downlink control) and the ``DownlinkControl`` (estimates in, layers out). What stays here is the
membership (one Consumer per producer), the connection's writer, and two timers on the worker's
scheduler: the bandwidth tick, and sender reports for all consumers, compounded, once a second.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from aiortc import RTCPeerConnection, RTCRtpTransceiver

from sfu import aiortc_hooks
from sfu.consumer import Consumer
from sfu.downlink_control import DownlinkControl
from sfu.events import EventSink, TrackDescription, ignore_events
from sfu.layer_streams import LayerStreams
from sfu.negotiation import URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, extension_ids, match_codec
from sfu.policy.downlink import DownlinkPolicy, Tile
from sfu.policy.video_slots import VideoSlotAssignment
from sfu.producer import Producer
from sfu.rtcp_router import RtcpRouter
from sfu.scheduler import Scheduler, Timer
from sfu.subscriber_negotiator import SendOffer, Slot, SubscriberNegotiator
from sfu.types import Kind, PauseReason
from sfu.video_slots import VideoSlots, pooled

logger = logging.getLogger(__name__)

SENDER_REPORT_INTERVAL_S = 1.0
TICK_S = 0.125
"""How often layers and the audio-only state are re-decided from the latest estimate."""
MAX_RTCP_COMPOUND_BYTES = 1100


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
        scheduler: Scheduler | None = None,
        all_layers: bool = False,
    ) -> None:
        self.participant_id = participant_id
        self.pc = pc
        self.downlink = DownlinkControl(
            participant_id, policy or DownlinkPolicy(), notify, self._send_rtp, loop_time
        )
        if all_layers:  # a relay: every simulcast layer, each its own stream
            outer = send_offer

            def send_offer(sdp: str, tracks: dict[str, TrackDescription]) -> Awaitable[None]:
                assert self.layered is not None
                return outer(sdp, self.layered.describe(tracks, self._consumer_of_mid))

        self.negotiator = SubscriberNegotiator(
            participant_id, pc, send_offer,
            configure=self._configure, on_first_offer=self._hook_transport,
            on_transport_cc=lambda ext_id: self.downlink.enable_transport_cc(),
            configure_ice=configure_ice, notify=notify, transport_cc=transport_cc,
        )
        self.rtcp = RtcpRouter(self.downlink, loop_time)
        self._by_ssrc = self.rtcp.by_ssrc  # one table: the router reads what we add
        self.consumers: dict[str, Consumer] = {}  # by producer id
        # Subscribers that take every simulcast layer (relays): the lower layers' consumers.
        self.layered = LayerStreams(participant_id, self._by_ssrc) if all_layers else None
        # What the bandwidth tick needs without walking every consumer (a room of 50 has 98
        # per subscriber, 9 of them forwarded videos): video consumers by publisher, the count
        # of audio ones, and the video consumers to look at once more at the next tick.
        self._video: dict[str, list[Consumer]] = {}
        self._audio_consumers = 0
        self._review: set[Consumer] = set()
        self._ticked_forwarded: frozenset[str] | None = None
        self._ticked_once = False
        self._writer: aiortc_hooks.DatagramWriter | None = None
        self._notify = notify
        self._loop_time = loop_time
        # Camera videos on a pool of last-N slots (Room.add turns it on in rooms with last-N).
        self.video_slots: VideoSlots | None = None
        self.retired: Counter[str] = Counter()  # counters of the consumers dropped so far
        self._scheduler = scheduler if scheduler is not None else Scheduler()
        self._timers: list[Timer] = []
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start negotiating and the timers (from a running loop); ``close`` stops them."""
        if self._closed or self._timers:
            return
        self.negotiator.start()
        self._timers = [
            self._scheduler.every(TICK_S, self.tick, f"subscriber {self.participant_id} tick"),
            self._scheduler.every(SENDER_REPORT_INTERVAL_S, self.send_sender_reports,
                                  f"subscriber {self.participant_id} sender reports"),
        ]

    async def close(self) -> None:
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self.downlink.close()
        await self.negotiator.close()
        if self.layered is not None:
            self.layered.close()
        for consumer in list(self.consumers.values()):
            consumer.close()
        self.consumers.clear()
        if self._writer is not None:
            self._writer.close()  # its duplicated socket descriptor, before the ICE sockets go
        await self.pc.close()
        self._dismantle()

    def _dismantle(self) -> None:
        """Closed: break the reference cycles among this subscriber's objects (callbacks into
        it held by its parts, aiortc's and our hooks on its connection), so reference counting
        frees them now and the cyclic collector never has to (sfu/gctune.py)."""
        aiortc_hooks.release_connection(self.pc)
        self.rtcp.by_ssrc.clear()
        self._video.clear()
        self._review.clear()
        self.negotiator.dismantle()
        self.downlink.dismantle()
        if self.video_slots is not None:
            self.video_slots.dismantle()

    # -- membership --------------------------------------------------------------------------------

    def use_video_slots(self, n: int) -> None:
        """Carry camera videos on a pool of at most ``n`` m-lines (last-N video slots,
        ``sfu/video_slots.py``); 0 turns it off for producers added later. Not for relays,
        which take every producer's every layer."""
        if self.layered is not None:
            return
        if self.video_slots is not None:
            self.video_slots.resize(n)
        elif n > 0:
            self.video_slots = VideoSlots(VideoSlotAssignment(n), self._consume, self._drop,
                                          self._notify, self._loop_time)

    def follow_last_n(self, chosen: Sequence[str]) -> None:
        """Last-N chose these participants' videos for us (highest priority first)."""
        if self.video_slots is not None and not self._closed:
            self.video_slots.follow(chosen)

    def add_producer(self, producer: Producer) -> None:
        if self._closed or producer.id in self.consumers or producer.closed:
            return
        if self.video_slots is not None and pooled(producer):
            self.video_slots.add(producer)
            return
        self._consume(producer, None)

    def _consume(self, producer: Producer, line: Slot | None) -> Slot:
        """The consumer of ``producer`` on ``line`` (None: a new or reused m-line, which
        renegotiates), continuing the stream ``line.previous`` sent there."""
        slot = line if line is not None else self.negotiator.acquire(producer.kind.value)
        ssrc, rtx_ssrc = aiortc_hooks.sender_ssrcs(slot.transceiver.sender)
        if self._writer is None:
            self._writer = aiortc_hooks.DatagramWriter(slot.transceiver.sender.transport)
        consumer = Consumer(
            producer, self.participant_id, slot.transceiver.mid or "", ssrc, rtx_ssrc,
            self._writer, continue_from=slot.previous,
        )
        self.consumers[producer.id] = consumer
        if producer.kind is Kind.VIDEO:
            self._video.setdefault(producer.participant_id, []).append(consumer)
            self._review.add(consumer)
        else:
            self._audio_consumers += 1
        self.rtcp.add(consumer)
        producer.attach(consumer)
        if producer.muted:
            consumer.set_muted(True)
        if self.layered is not None:
            for extra in self.layered.add(producer, consumer, consumer.writer):
                self.rtcp.add(extra)
        if line is None:
            self.negotiator.assign(slot, consumer, producer.participant_id)
        else:  # a pooled slot switched: no renegotiation, configured as negotiated
            slot.consumer = consumer
            self._configure(slot)
        return slot

    def remove_producer(self, producer_id: str) -> None:
        if self.video_slots is not None and producer_id in self.video_slots.producers:
            self.video_slots.remove(producer_id)
            return
        consumer = self.consumers.get(producer_id)
        if consumer is None:
            return
        self._drop(consumer)
        self.negotiator.release(consumer)

    def _drop(self, consumer: Consumer) -> None:
        """Unregister and close one consumer (its m-line is the caller's)."""
        producer_id = consumer.producer.id
        if self.consumers.get(producer_id) is consumer:
            del self.consumers[producer_id]
        owner = consumer.producer.participant_id
        if consumer.producer.kind is Kind.VIDEO:
            others = [c for c in self._video.get(owner, ()) if c is not consumer]
            if others:
                self._video[owner] = others
            else:
                self._video.pop(owner, None)
            self._review.discard(consumer)
        else:
            self._audio_consumers -= 1
        consumer.close()
        # Its counters stay in the totals (/metrics counters never go back): a pooled slot
        # drops a consumer at every switch.
        consumer.add_counters_to(self.retired)
        if self.layered is not None:
            for extra in self.layered.remove(producer_id):
                self.rtcp.by_ssrc.pop(extra.ssrc, None)
                self.rtcp.by_ssrc.pop(extra.rtx_ssrc, None)

    def _configure(self, slot: Slot) -> None:
        consumer, parameters = slot.consumer, slot.parameters
        if consumer is None or parameters is None or consumer.producer.codec is None:
            return
        ids = extension_ids(parameters.headerExtensions)
        codec = match_codec(consumer.producer.codec, parameters.codecs)
        layered = self.layered.of(consumer) if self.layered is not None else [consumer]
        for each in layered:  # every layer's consumer of a relay's m-line
            each.configure(codec, ids.get(URI_AUDIO_LEVEL, 0), ids.get(URI_ABS_SEND_TIME, 0),
                           self.downlink.sequencer, self.negotiator.twcc_id)
        if len(layered) > 1:
            return  # held on their layers: the downlink policy leaves them alone
        owner = consumer.producer.participant_id
        if consumer.producer.is_video and not self.downlink.policy.forwards(owner):
            # Outside last-N: paused now, not at the next tick (no keyframe slips through).
            consumer.set_target(None, PauseReason.NOT_IN_LAST_N)

    # -- negotiation (the negotiator's, for the worker) --------------------------------------------

    async def wait_described(self, timeout: float) -> bool:
        return await self.negotiator.wait_described(timeout)

    def has_pending_offer(self) -> bool:
        return self.negotiator.has_pending_offer()

    def set_answer(self, sdp: str) -> bool:
        return self.negotiator.set_answer(sdp)

    # -- RTCP and RTP ------------------------------------------------------------------------------

    @property
    def estimated_bitrate(self) -> int | None:
        """The subscriber's REMB estimate, added up over its sources."""
        return self.rtcp.estimated_bitrate

    def on_rtcp(self, data: bytes) -> None:
        self.rtcp.on_rtcp(data)

    def _hook_transport(self, transceiver: RTCRtpTransceiver) -> None:
        """Route this connection's RTCP to us (once, before the first offer)."""
        aiortc_hooks.hook_transport(transceiver.sender.transport, lambda data, arrival: None,
                                    self.on_rtcp)

    def _send_rtp(self, packet: bytes) -> bool:
        return self._writer.send_rtp(packet) if self._writer is not None else False

    def _sent_bytes(self) -> int:
        return self._writer.sent_bytes if self._writer is not None else 0

    # -- bandwidth ---------------------------------------------------------------------------------

    def tick(self) -> None:
        layered = self.layered
        consumers = self.tick_consumers()
        if layered is not None:
            consumers = [c for c in consumers if not layered.held(c.producer.id)]
        self.downlink.tick(consumers, self._sent_bytes(), audio_consumers=self._audio_consumers)
        if layered is not None:
            layered.follow(self.downlink.policy.forwards, self.downlink.policy.tiles)

    def tick_consumers(self) -> list[Consumer]:
        """The video consumers this tick must decide for: with last-N, those of the forwarded
        publishers, plus those that may still need pausing (new ones, those whose publisher
        just left the set, those ``review`` named). A consumer outside last-N, once paused
        ``NOT_IN_LAST_N``, is not looked at again until something changes: the policy would
        decide the same for it at every tick (40 of 49 in a room of 50 with N = 9)."""
        forwarded = self.downlink.policy.forwarded
        if forwarded is None:
            chosen = [c for consumers in self._video.values() for c in consumers]
        else:
            previous = self._ticked_forwarded
            if not self._ticked_once or previous is None:
                self._review.update(c for cs in self._video.values() for c in cs)
            elif previous != forwarded:
                for owner in previous - forwarded:
                    self._review.update(self._video.get(owner, ()))
            chosen = [c for owner in forwarded for c in self._video.get(owner, ())]
            chosen += [c for c in self._review if c.producer.participant_id not in forwarded]
        self._ticked_forwarded = forwarded
        self._ticked_once = True
        self._review.clear()
        return chosen

    def review(self, owner: str) -> None:
        """Look at ``owner``'s video consumers at the next tick (its camera was muted or
        unmuted: a consumer muted while outside last-N resumes when unmuted)."""
        self._review.update(self._video.get(owner, ()))

    def _consumer_of_mid(self, mid: str) -> Consumer | None:
        return next((slot.consumer for slot in self.negotiator.slots
                     if slot.transceiver.mid == mid), None)

    def set_tiles(self, tiles: dict[str, Tile]) -> None:
        self.downlink.policy.tiles = tiles

    def set_user_audio_only(self, enabled: bool) -> None:
        self.downlink.policy.user_audio_only = enabled
        self.tick()

    # -- sender reports ----------------------------------------------------------------------------

    def send_sender_reports(self) -> int:
        writer = self._writer
        if writer is None or not writer.check():
            return 0
        sent = 0
        chunk = b""
        extras = self.layered.extras() if self.layered is not None else ()
        for consumer in itertools.chain(self.consumers.values(), extras):
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
