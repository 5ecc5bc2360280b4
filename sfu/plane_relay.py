"""A relay into a room that lives in a worker process (``serve --workers N``).

Where the relay runs: in signaling, as with one process. The relay (``signaling/relay.py``) is a
client of another server: its WebSocket, join token, reconnect with backoff, and the state and
counters the REST API reads at once all belong to the control plane, and it must outlive a
media worker that dies. Only its near side crosses the process boundary, as the recorder's RTP
does the other way: ``WorkerPool.publish_local`` returns a ``RemotePublication`` whose tracks
send each relayed packet to the room's worker (``RelayRtp``: one socket copy per packet, not
per subscriber), where ``RelayHost`` feeds it to an ordinary ``LocalPublication``. A keyframe
request of the room comes back as ``RelayKeyframeWanted`` and becomes the relay's PLI. The
voices the relay sends back are a local subscriber, which the pool already serves.

Both halves are here: ``RemotePublication``/``RemoteTrack`` (signaling side) and ``RelayHost``
(worker side).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence

from sfu.events import EventSink
from sfu.plane_process import WorkerLost
from sfu.plane_wire import (
    RelayCall,
    RelayKeyframe,
    RelayKeyframeWanted,
    RelayMuted,
    RelayPublish,
    RelayRtp,
    RelaySenderReport,
    RelayTrack,
    RelayTrackGone,
    Report,
)
from sfu.relay import KeyframeRequest, LocalPublication
from sfu.types import Codec, DropReason, Kind
from sfu.wire.rtp_packet import RtpView, build_extension_block, pack_header

logger = logging.getLogger(__name__)

Send = Callable[[RelayCall], None]
"""The pool's one-way call to the room's worker (raises ``WorkerLost``)."""


def rtp_bytes(packet: RtpView) -> bytes:
    """The packet as received, or rebuilt when the relay changed it (an RTX packet unwrapped to
    its original sequence number and SSRC)."""
    data = packet.data
    if (len(data) >= 12 and int.from_bytes(data[2:4], "big") == packet.sequence_number
            and int.from_bytes(data[8:12], "big") == packet.ssrc
            and data[1] & 0x7F == packet.payload_type):
        return data
    block = build_extension_block(list(packet.extensions.items()))
    return pack_header(0x90 if block else 0x80, (packet.marker << 7) | packet.payload_type,
                       packet.sequence_number, packet.timestamp, packet.ssrc
                       ) + block + packet.payload


class RemoteTrack:
    """A relayed track whose producer is in a worker process (``sfu.relay.TrackFeed``)."""

    __slots__ = ("publication", "track_id", "on_keyframe_request", "keyframe_requests")

    def __init__(self, publication: RemotePublication, track_id: str,
                 on_keyframe_request: KeyframeRequest) -> None:
        self.publication = publication
        self.track_id = track_id
        self.on_keyframe_request = on_keyframe_request
        self.keyframe_requests = 0  # carried upstream

    def receive(self, packet: RtpView, layer: int = 0) -> None:
        pub = self.publication
        pub.send(RelayRtp(pub.room, pub.participant_id, self.track_id, layer,
                          rtp_bytes(packet)))

    def set_muted(self, muted: bool) -> None:
        pub = self.publication
        pub.send(RelayMuted(pub.room, pub.participant_id, self.track_id, muted))

    def request_keyframe(self, layer: int = 0) -> None:
        pub = self.publication
        pub.send(RelayKeyframe(pub.room, pub.participant_id, self.track_id, layer))

    def sender_report(self, layer: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        pub = self.publication
        pub.send(RelaySenderReport(pub.room, pub.participant_id, self.track_id, layer,
                                   ntp_timestamp, rtp_timestamp))

    def keyframe_wanted(self, layer: int) -> None:
        self.keyframe_requests += 1
        self.on_keyframe_request(layer)


class RemotePublication:
    """``MediaPlane.publish_local`` of the worker pool (``sfu.relay.Publication``)."""

    def __init__(self, room: str, participant_id: str, send: Send) -> None:
        self.room = room
        self.participant_id = participant_id
        self._send = send
        self.tracks: dict[str, RemoteTrack] = {}
        self.closed = False
        self.lost = 0  # calls not sent: the room's worker is gone

    def send(self, call: RelayCall) -> None:
        if self.closed:
            return
        try:
            self._send(call)
        except WorkerLost:
            self.lost += 1  # the room ended with its worker (its sinks heard Removed)

    def add_track(self, track_id: str, kind: Kind, codec: Codec,
                  on_keyframe_request: KeyframeRequest,
                  audio_level_ext_id: int | None = None,
                  rids: Sequence[str] = ()) -> RemoteTrack:
        if self.closed:
            raise RuntimeError("publication closed")
        if track_id in self.tracks:
            raise ValueError(f"track {track_id!r} is already published")
        track = self.tracks[track_id] = RemoteTrack(self, track_id, on_keyframe_request)
        self.send(RelayTrack(self.room, self.participant_id, track_id, kind, codec,
                             audio_level_ext_id, list(rids)))
        return track

    def remove_track(self, track_id: str) -> None:
        if self.tracks.pop(track_id, None) is not None:
            self.send(RelayTrackGone(self.room, self.participant_id, track_id))

    def keyframe_wanted(self, report: RelayKeyframeWanted) -> None:
        track = self.tracks.get(report.track_id)
        if track is not None and not self.closed:
            track.keyframe_wanted(report.layer)

    def close(self) -> None:
        """After ``leave`` (which ends the worker's side): nothing more is sent."""
        self.closed = True
        self.tracks.clear()


class RelayHost:
    """The worker's side: the local publications signaling's relays feed, by (room, id)."""

    def __init__(self, publish_local: Callable[[str, str, str, EventSink], LocalPublication],
                 report: Callable[[Report], None]) -> None:
        self._publish_local = publish_local
        self._report = report
        self.publications: dict[tuple[str, str], LocalPublication] = {}
        self.drops: Counter[DropReason] = Counter()

    def publish(self, call: RelayPublish, sink: EventSink) -> None:
        key = (call.room, call.participant)
        old = self.publications.pop(key, None)
        if old is not None:
            old.close()
        self.publications[key] = self._publish_local(call.room, call.participant, call.name,
                                                      sink)

    def handle(self, call: RelayTrack | RelayTrackGone | RelayMuted | RelaySenderReport
               | RelayKeyframe) -> None:
        publication = self.publications.get((call.room, call.participant))
        if publication is None:
            self.drops[DropReason.NOT_CONNECTED] += 1  # left meanwhile: as in one process
            return
        if isinstance(call, RelayTrack):
            publication.add_track(call.track_id, call.kind, call.codec,
                                  self._keyframe_request(call.room, call.participant,
                                                         call.track_id),
                                  call.audio_level_ext_id, call.rids)
            return
        if isinstance(call, RelayTrackGone):
            publication.remove_track(call.track_id)
            return
        track = publication.tracks.get(call.track_id)
        if track is None:
            self.drops[DropReason.UNKNOWN_SSRC] += 1
            return
        if isinstance(call, RelayMuted):
            track.set_muted(call.muted)
        elif isinstance(call, RelaySenderReport):
            track.sender_report(call.layer, call.ntp_timestamp, call.rtp_timestamp)
        elif isinstance(call, RelayKeyframe):
            track.request_keyframe(call.layer)

    def rtp(self, call: RelayRtp) -> None:
        """The busiest call, on its own path."""
        publication = self.publications.get((call.room, call.participant))
        track = publication.tracks.get(call.track_id) if publication is not None else None
        if track is None:
            self.drops[DropReason.NOT_CONNECTED] += 1
            return
        try:
            packet = RtpView.parse(call.packet)
        except ValueError:
            self.drops[DropReason.MALFORMED] += 1
            return
        track.receive(packet, call.layer)

    def _keyframe_request(self, room: str, participant: str, track_id: str) -> KeyframeRequest:
        def request(layer: int) -> None:
            self._report(RelayKeyframeWanted(room, participant, track_id, layer))

        return request

    def left(self, room: str, participant: str) -> None:
        """The relayed participant left the room (``Leave``): its publication ends."""
        publication = self.publications.pop((room, participant), None)
        if publication is not None:
            publication.close()
