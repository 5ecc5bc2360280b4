"""In-process subscribers of a room: the recorder (and later a relay) consume like a participant.

A local subscriber gets one ``Consumer`` per producer in the room, exactly as a remote
subscriber does, so it receives one continuous, rewritten RTP stream per track (sequence numbers
and timestamps continue across simulcast switches, which happen only at keyframes). It always
asks for the best layer the publisher sends, and keyframes come by the consumer's own requests.
Nothing here touches sockets: the consumer's ``PacketWriter`` is whatever the local subscriber
returns for the track.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Protocol

from sfu.consumer import Consumer, PacketWriter
from sfu.downlink_control import flowing_layer
from sfu.producer import Producer
from sfu.types import Codec, Kind

logger = logging.getLogger(__name__)

QUIET_S = 0.5
"""A layer with no packet for this long is not recorded from: the best layer below that still
flows is. The media plane's own staleness (``LAYER_STALE_S``, 2 s: fine for a viewer, who also
has the layer below) left a 2.5 s hole in a recording each time Chromium dropped its top layer
(tests/browser/test_recording.py); a hole in a file stays for good. Video sends a packet at least
every 200 ms (5 fps), so a live layer is never quiet this long."""
KEEP_LAYER_ON = 1
"""The simulcast layer the recorder keeps the publisher sending (640x360 of q/h/f)."""


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """A producer as a local subscriber sees it."""

    producer_id: str
    participant_id: str
    participant_name: str
    kind: Kind
    codec: Codec


class LocalSubscriber(Protocol):
    def track_added(self, track: TrackInfo) -> PacketWriter | None:
        """A track to consume; return where its RTP goes (None: not interested)."""
        ...

    def track_removed(self, producer_id: str) -> None: ...

    def sender_report(self, producer_id: str, ntp_timestamp: int, rtp_timestamp: int) -> None:
        """The publisher's clock mapped onto the stream this subscriber receives (lip sync)."""
        ...


class LocalConsumers:
    """The consumers of one local subscriber in one room."""

    def __init__(self, subscriber: LocalSubscriber, subscriber_id: str) -> None:
        self.subscriber = subscriber
        self.subscriber_id = subscriber_id
        self.consumers: dict[str, Consumer] = {}  # by producer id

    def add_producer(self, producer: Producer, participant_name: str) -> None:
        if producer.id in self.consumers or producer.codec is None or producer.closed:
            return
        track = TrackInfo(producer.id, producer.participant_id, participant_name,
                          producer.kind, producer.codec)
        writer = self.subscriber.track_added(track)
        if writer is None:
            return
        ssrc = random.getrandbits(32)
        consumer = Consumer(producer, self.subscriber_id, "", ssrc, ssrc ^ 1, writer)
        # The publisher's own codec; no extensions, except the audio level for a subscriber that
        # asks for it (a relay: the far room's speaker detection needs it).
        level_id = getattr(self.subscriber, "audio_level_ext_id", 0)
        consumer.configure(producer.codec, level_id if producer.kind is Kind.AUDIO else 0, 0)
        # Keeps the middle layer (640x360) on at the source; a higher one is taken when somebody
        # else has the publisher send it. Forcing the top layer on for the archive alone cost
        # every publisher ~2.5 Mbit/s of uplink and the server twice the packets (bench
        # recording: x1.5 server CPU for a grid of 10).
        consumer.wanted_layer = min(KEEP_LAYER_ON, len(producer.layers) - 1)
        consumer.set_target(len(producer.layers) - 1)
        if producer.muted:
            consumer.set_muted(True)
        producer.attach(consumer)
        self.consumers[producer.id] = consumer

    def remove_producer(self, producer_id: str) -> None:
        consumer = self.consumers.pop(producer_id, None)
        if consumer is None:
            return
        consumer.close()
        self.subscriber.track_removed(producer_id)

    def tick(self, now: float) -> None:
        """Periodic: follow the best layer that flows; pass the translated sender reports on."""
        for producer_id, consumer in list(self.consumers.items()):
            if consumer.producer.is_video:
                consumer.set_target(recorded_layer(consumer, now))
            report = consumer.sender_report()
            if report is not None:
                info = report.sender_info
                self.subscriber.sender_report(producer_id, info.ntp_timestamp, info.rtp_timestamp)

    def close(self) -> None:
        for producer_id in list(self.consumers):
            self.remove_producer(producer_id)


def recorded_layer(consumer: Consumer, now: float) -> int | None:
    """The best layer that is not quiet (``QUIET_S``), whether the recorder keeps it on or
    somebody else has the publisher send it; else what the media plane calls flowing."""
    layers = consumer.producer.layers
    for index in range(len(layers) - 1, -1, -1):
        if now - layers[index].last_packet_s < QUIET_S:
            return index
    return flowing_layer(consumer, consumer.wanted_layer, now)
