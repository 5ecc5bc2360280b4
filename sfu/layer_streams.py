"""Every simulcast layer to one subscriber, each as its own RTP stream: what a relay takes.

A browser gets one layer per consumer, chosen by its allocator. A relay (another server that
republishes our tracks, ``signaling/relay.py``) must get them all, so that the far server's own
allocator picks a layer for each of its subscribers as it would for a local publisher. As
mediasoup does when it pipes a producer to another router (its PipeConsumer forwards every
encoding), each layer travels as a stream of its own: one ordinary ``Consumer`` per layer,
held on that layer (no allocator, no switching), with its own SSRC and RTX SSRC, rewriting and
NACK history. So PLIs, NACKs and sender reports name a layer by SSRC and reach the right
consumer through the subscriber's usual SSRC table; a PLI for a layer's SSRC asks the publisher
for that layer's keyframe. The top layer's consumer is the m-line's own (its SSRC is in the
SDP: a receiver that ignores the rest still gets the best layer); the others' SSRCs are only in
the offer's track map (``TrackDescription.layers``).

Pure: no sockets, no await; the subscriber shell (``sfu/subscriber.py``) owns the writer and the
SSRC table.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping

from sfu.consumer import Consumer, PacketWriter
from sfu.events import LayerStream, TrackDescription
from sfu.policy.allocator import layer_for_tile
from sfu.policy.downlink import Tile
from sfu.producer import Producer
from sfu.types import PauseReason

FOLLOWED = (PauseReason.NOT_IN_LAST_N, PauseReason.NOT_VISIBLE)
"""The pauses ``LayerStreams.follow`` decides (and lifts); a mute is not its to lift."""


def hold(consumer: Consumer, layer: int) -> None:
    """Keep ``consumer`` on ``layer`` (the uplink policy reads ``wanted_layer``: the publisher
    keeps every layer up to the highest one held)."""
    consumer.set_target(layer)
    consumer.wanted_layer = layer


class LayerStreams:
    """One subscriber's per-layer consumers, by producer id (lowest layer first; the last is the
    m-line's consumer, which the subscriber also keeps in its ``consumers``)."""

    def __init__(self, subscriber_id: str, taken: Mapping[int, object]) -> None:
        self.subscriber_id = subscriber_id
        self._taken = taken  # the subscriber's SSRC table: new SSRCs must not collide
        self.by_producer: dict[str, list[Consumer]] = {}

    def _fresh_ssrc(self, also: Iterable[int] = ()) -> int:
        avoid = set(also)
        while True:
            ssrc = random.randrange(1, 1 << 32)
            if ssrc not in self._taken and ssrc not in avoid:
                return ssrc

    def add(self, producer: Producer, primary: Consumer, writer: PacketWriter) -> list[Consumer]:
        """The lower layers' consumers for ``primary``'s producer (none unless simulcast video);
        ``primary`` is held on the top layer. Returns the new consumers (to register)."""
        if not producer.is_video or not producer.simulcast:
            return []
        extra: list[Consumer] = []
        used: list[int] = [primary.ssrc, primary.rtx_ssrc]
        for layer in producer.layers[:-1]:
            ssrc = self._fresh_ssrc(used)
            rtx_ssrc = self._fresh_ssrc([*used, ssrc])
            used += [ssrc, rtx_ssrc]
            consumer = Consumer(producer, self.subscriber_id, primary.mid, ssrc, rtx_ssrc, writer)
            hold(consumer, layer.index)
            extra.append(consumer)
        hold(primary, producer.layers[-1].index)
        self.by_producer[producer.id] = [*extra, primary]
        for consumer in extra:
            producer.attach(consumer)
            if producer.muted:
                consumer.set_muted(True)
        return extra

    def held(self, producer_id: str) -> bool:
        return producer_id in self.by_producer

    def of(self, consumer: Consumer) -> list[Consumer]:
        """Every layer's consumer of ``consumer``'s producer (just ``consumer`` if not layered)."""
        return self.by_producer.get(consumer.producer.id) or [consumer]

    def extras(self) -> Iterable[Consumer]:
        """The lower layers' consumers (the top ones are the subscriber's own)."""
        for consumers in self.by_producer.values():
            yield from consumers[:-1]

    def remove(self, producer_id: str) -> list[Consumer]:
        """Close the lower layers' consumers of a producer that goes; returns them."""
        consumers = self.by_producer.pop(producer_id, [])
        for consumer in consumers[:-1]:
            consumer.close()
        return consumers[:-1]

    def follow(self, forwards: Callable[[str], bool], tiles: Mapping[str, Tile]) -> None:
        """Last-N as for any subscriber (whose video the relay gets at all), and the relay's
        tiles: what the far room's subscribers want at most of a participant (the relay sends a
        tile as wide as the highest layer wanted there). Layers above it, or every layer outside
        last-N, are paused; a layer wanted again is held again (from its next keyframe)."""
        for consumers in self.by_producer.values():
            owner = consumers[0].producer.participant_id
            tile = tiles.get(owner)
            top = len(consumers) - 1
            if tile is not None:
                top = layer_for_tile(tile.width, (None,) * len(consumers)) if tile.visible else -1
            inside = forwards(owner)
            for layer, consumer in enumerate(consumers):
                reason = (PauseReason.NOT_IN_LAST_N if not inside
                          else PauseReason.NOT_VISIBLE if layer > top else None)
                if reason is None:
                    if consumer.pause_reason in FOLLOWED:
                        hold(consumer, layer)
                elif consumer.pause_reason is None or (consumer.pause_reason in FOLLOWED
                                                       and consumer.pause_reason is not reason):
                    consumer.set_target(None, reason)

    def describe(self, tracks: dict[str, TrackDescription],
                 consumer_of: Callable[[str], Consumer | None]) -> dict[str, TrackDescription]:
        """The offer's track map with every layer's stream on the layered m-lines."""
        out = dict(tracks)
        for mid, track in tracks.items():
            consumer = consumer_of(mid)
            consumers = self.by_producer.get(consumer.producer.id) if consumer else None
            if consumer is None or not consumers:
                continue
            out[mid] = TrackDescription(
                track.participant_id, track.kind, track.stream_id, track.source,
                tuple(LayerStream(layer.rid or str(layer.index), c.ssrc, c.rtx_ssrc)
                      for layer, c in zip(consumer.producer.layers, consumers, strict=True)))
        return out

    def close(self) -> None:
        for producer_id in list(self.by_producer):
            self.remove(producer_id)
