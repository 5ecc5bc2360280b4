"""Local publishers: tracks that enter a room from inside the process (a relay from another server).

The inverse of ``sfu/local_subscriber.py``. A relay (``signaling/relay.py``) receives RTP from a
room on another server and hands each packet here as bytes; a ``RelayedTrack`` is an ordinary
``Producer`` of a participant that has no peer connection of its own, so every subscriber of
this room consumes it exactly as it consumes a browser's track: its own consumer, rewriting,
NACK history, layers and bandwidth allocation. Nothing is decoded or transcoded.

A subscriber's keyframe request (PLI/FIR, a layer switch) reaches ``Producer.request_keyframe``
as usual (rate-limited for all consumers), which calls the track's ``on_keyframe_request``: the
relay carries it upstream as a PLI of its own. NACKs stay per hop: our consumers answer them from
their own history; the relay's receive side NACKs the far server.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from sfu.producer import Layer, Producer
from sfu.types import Codec, DropReason, Kind
from sfu.wire.rtp_packet import RtpView


class RelayedTrack:
    """One relayed track: a Producer fed with RTP bytes from the relay."""

    __slots__ = ("producer", "on_keyframe_request", "keyframe_requests", "drops", "_clock")

    def __init__(self, producer: Producer, on_keyframe_request: Callable[[], None],
                 clock: Callable[[], float]) -> None:
        self.producer = producer
        self.on_keyframe_request = on_keyframe_request
        self.keyframe_requests = 0  # carried upstream
        self.drops: Counter[DropReason] = Counter()
        self._clock = clock

    def receive(self, packet: RtpView) -> None:
        """Forward one packet (parsed and RTX-unwrapped by the relay) to the room."""
        producer = self.producer
        if producer.closed:
            self.drops[DropReason.NOT_CONNECTED] += 1
            return
        layer = producer.layers[0]
        if layer.ssrc is None:
            layer.ssrc = packet.ssrc
        producer.receive(packet, layer, self._clock())

    def request_keyframe(self) -> None:
        """Ask the far side for a keyframe (a relay asks A when B's consumers start)."""
        self.producer.request_keyframe(self._clock(), 0)

    def _on_producer_keyframe_request(self, _producer: Producer, _layer: Layer) -> None:
        self.keyframe_requests += 1
        self.on_keyframe_request()


class LocalPublication:
    """The tracks one in-process participant (a relay) publishes into a room.

    Made by ``Worker.publish_local``; the participant it stands for is in the room (others see
    it join and leave like anyone) but takes no seat and has no connection.
    """

    def __init__(self, room: str, participant_id: str,
                 producers: dict[str, Producer], ready: Callable[[Producer], None],
                 clock: Callable[[], float]) -> None:
        self.room = room
        self.participant_id = participant_id
        self._producers = producers  # the participant's relayed producers (shared with Room)
        self._ready = ready
        self._clock = clock
        self.tracks: dict[str, RelayedTrack] = {}
        self.closed = False

    def add_track(self, track_id: str, kind: Kind, codec: Codec,
                  on_keyframe_request: Callable[[], None],
                  audio_level_ext_id: int | None = None) -> RelayedTrack:
        """A new relayed track; every participant of the room starts consuming it."""
        if self.closed:
            raise RuntimeError("publication closed")
        if track_id in self.tracks:
            raise ValueError(f"track {track_id!r} is already published")
        holder: list[RelayedTrack] = []

        def request(producer: Producer, layer: Layer) -> None:
            if holder:
                holder[0]._on_producer_keyframe_request(producer, layer)

        producer = Producer(f"{self.participant_id}:{track_id}", self.participant_id, kind,
                            track_id, request)
        producer.set_codec(codec)
        producer.audio_level_ext_id = audio_level_ext_id
        track = RelayedTrack(producer, on_keyframe_request, self._clock)
        holder.append(track)
        self.tracks[track_id] = track
        self._producers[producer.id] = producer
        self._ready(producer)
        return track

    def close(self) -> None:
        self.closed = True
        for track in self.tracks.values():
            track.producer.close()
        self.tracks.clear()
