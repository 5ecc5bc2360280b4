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

Also here, pure (no sockets): ``UpstreamTracks``, the far server's tracks as the relay receives
them (its subscribe offer's SSRCs, RTX unwrapping, NACK bookkeeping), and ``VoiceSlots``, the
near voices the relay sends back. The shell is ``signaling/relay.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.sdp import SessionDescription

from sfu.consumer import PacketWriter
from sfu.producer import Layer, Producer
from sfu.types import Codec, DropReason, Kind
from sfu.wire.rtp_packet import RtpView
from sfu.wire.seqmath import seq_add, seq_diff, ts_add, ts_diff

MAX_LAYERS = 3
"""Simulcast layers a relayed track may have (what browsers send: q, h, f)."""
TILE_WIDTH, TILE_HEIGHT = 1280, 720


def tile_for(rids: Sequence[str], active: Mapping[str, bool]) -> tuple[int, int]:
    """The tile a relay reports to the far server for the highest layer the near room wants
    (``PublishLayers.active`` of the relayed track): 1280x720 for the top, half each side per
    layer below, as the far side's ``layer_for_tile`` reads q/h/f (1/4, 1/2, 1 of 1280)."""
    top = max((i for i, rid in enumerate(rids) if active.get(rid, False)), default=0)
    shift = len(rids) - 1 - top
    return TILE_WIDTH >> shift, TILE_HEIGHT >> shift
VOICE_FRAME_TICKS = 960
"""20 ms of Opus at 48 kHz: the gap a voice slot leaves when it changes voice."""


KeyframeRequest = Callable[[int], None]
"""Called with a simulcast layer's index when the near room wants a keyframe of that layer."""


class TrackFeed(Protocol):
    """What a relay holds of one relayed track: ``RelayedTrack`` in this process, or its
    stand-in when the room lives in a worker process (``sfu/plane_relay.py``)."""

    def receive(self, packet: RtpView, layer: int = 0) -> None: ...

    def set_muted(self, muted: bool) -> None: ...

    def request_keyframe(self, layer: int = 0) -> None: ...

    def sender_report(self, layer: int, ntp_timestamp: int, rtp_timestamp: int) -> None: ...


class Publication(Protocol):
    """What ``MediaPlane.publish_local`` returns (``LocalPublication`` or its stand-in)."""

    @property
    def participant_id(self) -> str: ...

    @property
    def tracks(self) -> Mapping[str, TrackFeed]: ...

    def add_track(self, track_id: str, kind: Kind, codec: Codec,
                  on_keyframe_request: KeyframeRequest,
                  audio_level_ext_id: int | None = None,
                  rids: Sequence[str] = ()) -> TrackFeed: ...

    def remove_track(self, track_id: str) -> None: ...

    def close(self) -> None: ...


class RelayedTrack:
    """One relayed track: a Producer fed with RTP bytes from the relay (every simulcast layer
    of the far producer, each packet with its layer's index)."""

    __slots__ = ("producer", "on_keyframe_request", "keyframe_requests", "drops", "_clock")

    def __init__(self, producer: Producer, on_keyframe_request: KeyframeRequest,
                 clock: Callable[[], float]) -> None:
        self.producer = producer
        self.on_keyframe_request = on_keyframe_request
        self.keyframe_requests = 0  # carried upstream
        self.drops: Counter[DropReason] = Counter()
        self._clock = clock

    def receive(self, packet: RtpView, layer: int = 0) -> None:
        """Forward one packet (parsed and RTX-unwrapped by the relay) of one layer to the room."""
        producer = self.producer
        if producer.closed:
            self.drops[DropReason.NOT_CONNECTED] += 1
            return
        if not 0 <= layer < len(producer.layers):
            self.drops[DropReason.UNKNOWN_SSRC] += 1
            return
        into = producer.layers[layer]
        if into.ssrc is None:
            into.ssrc = packet.ssrc
        producer.receive(packet, into, self._clock())

    def sender_report(self, layer: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        """The far consumer's sender report of one layer: the near consumers translate it."""
        if 0 <= layer < len(self.producer.layers):
            self.producer.layers[layer].sender_report = (ntp_timestamp, rtp_timestamp)

    def set_muted(self, muted: bool) -> None:
        """The far publisher muted (or unmuted) this track: near consumers pause like for a
        local publisher's mute (no bandwidth allotted, no keyframe waits)."""
        producer = self.producer
        producer.muted = muted
        for consumer in producer.consumers:
            consumer.set_muted(muted)

    def request_keyframe(self, layer: int = 0) -> None:
        """Ask the far side for a keyframe (a relay asks A when B's consumers start)."""
        self.producer.request_keyframe(self._clock(), layer)

    def _on_producer_keyframe_request(self, _producer: Producer, layer: Layer) -> None:
        self.keyframe_requests += 1
        self.on_keyframe_request(layer.index)


class LocalPublication:
    """The tracks one in-process participant (a relay) publishes into a room.

    Made by ``Worker.publish_local``; the participant it stands for is in the room (others see
    it join and leave like anyone) but takes no seat and has no connection.
    """

    def __init__(self, room: str, participant_id: str,
                 producers: dict[str, Producer], ready: Callable[[Producer], None],
                 clock: Callable[[], float],
                 withdraw: Callable[[Producer], None] = lambda _producer: None) -> None:
        self.room = room
        self.participant_id = participant_id
        self._producers = producers  # the participant's relayed producers (shared with Room)
        self._ready = ready
        self._withdraw = withdraw
        self._clock = clock
        self.tracks: dict[str, RelayedTrack] = {}
        self.closed = False

    def add_track(self, track_id: str, kind: Kind, codec: Codec,
                  on_keyframe_request: KeyframeRequest,
                  audio_level_ext_id: int | None = None,
                  rids: Sequence[str] = ()) -> RelayedTrack:
        """A new relayed track; every participant of the room starts consuming it. ``rids``:
        the far producer's simulcast layers, lowest first (none: one layer)."""
        if self.closed:
            raise RuntimeError("publication closed")
        if track_id in self.tracks:
            raise ValueError(f"track {track_id!r} is already published")
        holder: list[RelayedTrack] = []

        def request(producer: Producer, layer: Layer) -> None:
            if holder:
                holder[0]._on_producer_keyframe_request(producer, layer)

        producer = Producer(f"{self.participant_id}:{track_id}", self.participant_id, kind,
                            track_id, request, list(rids[:MAX_LAYERS]) or None)
        producer.set_codec(codec)
        producer.audio_level_ext_id = audio_level_ext_id
        track = RelayedTrack(producer, on_keyframe_request, self._clock)
        holder.append(track)
        self.tracks[track_id] = track
        self._producers[producer.id] = producer
        self._ready(producer)
        return track

    def remove_track(self, track_id: str) -> None:
        """A track goes (its far owner left, or is no longer chosen): subscribers drop it."""
        track = self.tracks.pop(track_id, None)
        if track is None:
            return
        self._producers.pop(track.producer.id, None)
        self._withdraw(track.producer)
        track.producer.close()

    def close(self) -> None:
        self.closed = True
        for track in self.tracks.values():
            track.producer.close()
        self.tracks.clear()


class VoiceSlot:
    """One audio track the relay publishes into the far room; it carries one near voice at a
    time and stays one continuous stream (sequence numbers, timestamps) when the voice changes."""

    __slots__ = ("ssrc", "payload_type", "owner", "sent", "_seq_offset", "_ts_offset",
                 "_last_seq", "_last_ts", "_resync")

    def __init__(self, ssrc: int, first_seq: int = 0, first_ts: int = 0) -> None:
        self.ssrc = ssrc
        self.payload_type: int | None = None  # what the far server accepted for this slot
        self.owner: str | None = None  # near producer id
        self.sent = 0
        self._seq_offset = 0
        self._ts_offset = 0
        self._last_seq = seq_add(first_seq, -1)
        self._last_ts = ts_add(first_ts, -VOICE_FRAME_TICKS)
        self._resync = True

    def take(self, producer_id: str | None) -> None:
        self.owner = producer_id
        self._resync = True

    def rewrite(self, packet: bytes) -> bytes | None:
        """The owner's packet as this slot's (own SSRC, payload type, continuous numbering)."""
        if self.payload_type is None or len(packet) < 12:
            return None
        data = bytearray(packet)
        seq = int.from_bytes(data[2:4], "big")
        ts = int.from_bytes(data[4:8], "big")
        if self._resync:
            # A new voice continues the slot's stream one frame after the last packet sent.
            self._resync = False
            self._seq_offset = seq_diff(seq_add(self._last_seq, 1), seq)
            self._ts_offset = ts_diff(ts_add(self._last_ts, VOICE_FRAME_TICKS), ts)
        out_seq = seq_add(seq, self._seq_offset)
        out_ts = ts_add(ts, self._ts_offset)
        if seq_diff(out_seq, self._last_seq) > 0:
            self._last_seq, self._last_ts = out_seq, out_ts
        data[1] = (data[1] & 0x80) | self.payload_type
        data[2:4] = out_seq.to_bytes(2, "big")
        data[4:8] = out_ts.to_bytes(4, "big")
        data[8:12] = self.ssrc.to_bytes(4, "big")
        self.sent += 1
        return bytes(data)


class VoiceWriter:
    """A near consumer's rewritten audio -> its voice slot toward the far room, if it has one
    (``writer``: the relay's publish connection toward the far room, while it has one)."""

    __slots__ = ("producer_id", "_voices", "_writer")

    def __init__(self, producer_id: str, voices: VoiceSlots,
                 writer: Callable[[], PacketWriter | None]) -> None:
        self.producer_id = producer_id
        self._voices = voices
        self._writer = writer

    def send_rtp(self, packet: bytes) -> bool:
        writer = self._writer()
        if writer is None:
            return False
        data = self._voices.packet(self.producer_id, packet)
        return data is not None and writer.send_rtp(data)


class VoiceSlots:
    """Which near voices go back to the far room: a few slots that follow the near room's
    speakers (a free slot goes to any voice first; a speaker without a slot takes one from a
    voice that is not speaking)."""

    def __init__(self, slots: list[VoiceSlot]) -> None:
        self.slots = slots
        self.voices: dict[str, str] = {}  # near producer id -> its participant id
        self.speakers: tuple[str, ...] = ()

    def _slot_of(self, producer_id: str) -> VoiceSlot | None:
        return next((slot for slot in self.slots if slot.owner == producer_id), None)

    def _place(self) -> None:
        speaking = set(self.speakers)
        waiting = [p for p in self.voices if self._slot_of(p) is None]
        waiting.sort(key=lambda p: self.voices[p] not in speaking)  # speakers first
        for producer_id in waiting:
            free = next((s for s in self.slots if s.owner is None), None)
            if free is None and self.voices[producer_id] in speaking:
                free = next((s for s in self.slots if s.owner is not None
                             and self.voices.get(s.owner) not in speaking), None)
            if free is None:
                break
            free.take(producer_id)

    def replace(self, slots: list[VoiceSlot]) -> None:
        """New slots (the relay reconnected): every voice is placed again."""
        self.slots = slots
        self._place()

    def add(self, producer_id: str, participant_id: str) -> None:
        self.voices[producer_id] = participant_id
        self._place()

    def remove(self, producer_id: str) -> None:
        self.voices.pop(producer_id, None)
        slot = self._slot_of(producer_id)
        if slot is not None:
            slot.take(None)
        self._place()

    def set_speakers(self, participant_ids: tuple[str, ...]) -> None:
        self.speakers = participant_ids
        self._place()

    def packet(self, producer_id: str, packet: bytes) -> bytes | None:
        """The packet to send for the far room, or None when this voice has no slot now."""
        slot = self._slot_of(producer_id)
        return slot.rewrite(packet) if slot is not None else None


# -- the far side as the relay receives it (pure: no sockets) ---------------------------------

NACK_MAX_GAP = 512
"""A sequence jump larger than this restarts NACK tracking (a jump, not loss)."""
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


@dataclass
class FarLayer:
    """One simulcast layer of a far track as its own stream (``sfu/layer_streams.py`` on the far
    server); a track without layers has one, with the m-line's SSRCs."""

    rid: str
    ssrc: int
    rtx_ssrc: int | None
    nack: NackGenerator | None = None


def _ssrc(value: object) -> int | None:
    return value if type(value) is int and 0 < value < 1 << 32 else None


def far_layers(owner: Mapping[str, Any] | None, ssrc: int, rtx_ssrc: int | None
               ) -> list[FarLayer]:
    """The layers the far server lists for an m-line (its track map's ``layers``, lowest
    first, the top one on the m-line's SSRC), or the m-line alone when it lists none usable:
    the far server's JSON is input like any other."""
    single = [FarLayer("", ssrc, rtx_ssrc)]
    raw = owner.get("layers") if owner is not None else None
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_LAYERS:
        return single
    layers: list[FarLayer] = []
    for item in raw:
        if not isinstance(item, dict):
            return single
        layer_ssrc, layer_rtx, rid = _ssrc(item.get("ssrc")), item.get("rtx_ssrc"), item.get("rid")
        if layer_ssrc is None or (layer_rtx is not None and _ssrc(layer_rtx) is None):
            return single
        layers.append(FarLayer(str(rid)[:16] if rid else str(len(layers)), layer_ssrc,
                               _ssrc(layer_rtx)))
    ssrcs = [x for layer in layers for x in (layer.ssrc, layer.rtx_ssrc) if x is not None]
    if layers[-1].ssrc != ssrc or len(set(ssrcs)) != len(ssrcs):
        return single
    return layers


@dataclass
class FarTrack:
    """One m-line of the far server's subscribe offer, as the relay receives it."""

    mid: str
    kind: Kind
    codec: Codec
    ssrc: int
    rtx_ssrc: int | None
    audio_level_ext_id: int | None
    participant_id: str = ""
    relayed: TrackFeed | None = None
    relayed_for: str = ""  # the far participant the relayed track belongs to
    layers: list[FarLayer] = field(default_factory=list)  # lowest first; set by describe

    @property
    def rids(self) -> list[str]:
        """The relayed producer's layers (none: a single layer)."""
        return [layer.rid for layer in self.layers] if len(self.layers) > 1 else []


@dataclass
class UpstreamTracks:
    """The far side's tracks by SSRC, and what reaches the near room (no sockets)."""

    publish: Callable[[FarTrack], TrackFeed | None]
    send_nack: Callable[[int, list[int]], None]
    # every SSRC of the far offer -> (track, is RTX, layer index)
    by_ssrc: dict[int, tuple[FarTrack, bool, int]] = field(default_factory=dict)
    drops: Counter[DropReason] = field(default_factory=Counter)
    listed: list[FarTrack] = field(default_factory=list)  # the offer's tracks, in order
    packets: int = 0
    sender_reports: int = 0  # applied to relayed producers

    def describe(self, offer_sdp: str, owners: dict[str, dict[str, Any]]) -> None:
        """A (re)offer from the far server: m-lines with their SSRCs, layers and owners."""
        description = SessionDescription.parse(offer_sdp)
        old = {track.mid: track for track in self.listed}
        self.by_ssrc.clear()
        self.listed = []
        for media in description.media:
            if media.kind not in ("audio", "video") or media.rtp.muxId is None:
                continue
            mid = media.rtp.muxId
            primary = next((c for c in media.rtp.codecs
                            if c.mimeType.split("/")[1].lower() not in ("rtx", "red", "ulpfec")),
                           None)
            if primary is None or not media.ssrc:
                continue
            rtx = next((c for c in media.rtp.codecs if c.mimeType.lower().endswith("/rtx")
                        and c.parameters.get("apt") == primary.payloadType), None)
            ssrc = media.ssrc[0].ssrc
            rtx_ssrc = next((int(group.items[1]) for group in media.ssrc_group
                             if group.semantic == "FID" and len(group.items) == 2), None)
            level = next((ext.id for ext in media.rtp.headerExtensions
                          if ext.uri == AUDIO_LEVEL_URI), None)
            track = old.get(mid)
            if track is None or track.ssrc != ssrc:
                track = FarTrack(mid, Kind(media.kind), Codec(
                    primary.mimeType, primary.clockRate or 90000, primary.payloadType or 0,
                    rtx.payloadType if rtx is not None else None), ssrc, rtx_ssrc, level)
            owner = owners.get(mid)
            track.participant_id = str(owner.get("participant_id", "")) if owner else ""
            layers = far_layers(owner if track.kind is Kind.VIDEO else None, ssrc, rtx_ssrc)
            kept = {layer.ssrc: layer for layer in track.layers}
            track.layers = [kept.get(layer.ssrc, layer) for layer in layers]
            self.listed.append(track)
            for index, layer in enumerate(track.layers):
                if track.kind is Kind.VIDEO and layer.nack is None:
                    layer.nack = NackGenerator()
                if layer.ssrc in self.by_ssrc or layer.rtx_ssrc in self.by_ssrc:
                    continue  # two m-lines claim one SSRC: the first keeps it
                self.by_ssrc[layer.ssrc] = (track, False, index)
                if layer.rtx_ssrc is not None:
                    self.by_ssrc[layer.rtx_ssrc] = (track, True, index)

    def tracks(self) -> Iterable[FarTrack]:
        return iter(self.listed)

    def on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> bool:
        """A sender report of the far server's consumer (one per layer): the relayed producer
        keeps it, so the near consumers translate it for their subscribers (lip sync across
        the relay)."""
        found = self.by_ssrc.get(ssrc)
        if found is None or found[1] or found[0].relayed is None:
            return False
        found[0].relayed.sender_report(found[2], ntp_timestamp, rtp_timestamp)
        self.sender_reports += 1
        return True

    def on_rtp(self, data: bytes) -> None:
        try:
            packet = RtpView.parse(data)
        except ValueError:
            self.drops[DropReason.MALFORMED] += 1
            return
        found = self.by_ssrc.get(packet.ssrc)
        if found is None:
            self.drops[DropReason.UNKNOWN_SSRC] += 1
            return
        track, rtx, index = found
        layer = track.layers[index]
        if rtx:
            if not packet.payload:
                self.drops[DropReason.PADDING_ONLY] += 1  # A's bandwidth probes
                return
            try:
                packet = packet.unwrap_rtx(track.codec.payload_type, layer.ssrc)
            except ValueError:
                self.drops[DropReason.MALFORMED] += 1
                return
        relayed = track.relayed
        if relayed is None or track.relayed_for != track.participant_id:
            # The far server reuses an m-line for the next producer of that kind (same SSRC):
            # a new owner is a new track here.
            relayed = track.relayed = self.publish(track)
            track.relayed_for = track.participant_id
            if relayed is None:
                self.drops[DropReason.PAUSED] += 1  # not chosen for relaying
                return
        nack = layer.nack
        if nack is not None:
            if nack.max_seq is not None and not (
                    -NACK_MAX_GAP <= seq_diff(packet.sequence_number, nack.max_seq)
                    <= NACK_MAX_GAP):
                nack.max_seq = None  # a jump, not loss
                nack.missing.clear()
            # aiortc's NackGenerator reads only sequence_number.
            if nack.add(packet):  # type: ignore[arg-type]
                self.send_nack(layer.ssrc, sorted(nack.missing))
        self.packets += 1
        relayed.receive(packet, index)
