"""Relay (cascade, issue 14): a room on another server relayed into a room of this one.

The relay is a participant of the far room (server A) over A's ordinary WebSocket signaling,
with a join token of role ``relay`` (no seat) or on an open server, and a local publisher of the
near room (this server, B):

    A's consumers (one per simulcast layer) --RTP--> relay's subscribe connection (aiortc,
        hooked at the RTP level) --UpstreamTracks--> RelayedTrack (sfu/relay.py) = a Producer
        in B with the same layers --> B's consumers, as if the chair were local
    B's subscriber PLI / layer switch -> Producer.request_keyframe -> PLI to A's consumer of
        that layer -> A's publisher (A rate-limits it like any subscriber's); the layers B
        wants -> a tile sent to A, which sends none above it
    NACK per hop: B's consumers answer from their history; UpstreamTracks NACKs toward A
    B's audio: a local subscriber of B (the recorder's mechanism) -> the relay's publish
        connection to A (audio slots sent at the RTP level, SSRC and payload type rewritten)

``UpstreamTracks`` (the far side's SSRC map, RTX unwrap, NACK bookkeeping) and ``VoiceSlots``
are pure, in ``sfu/relay.py``; ``Relay`` is the asyncio/aiortc shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy
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
from aiortc.sdp import SessionDescription

from sfu import aiortc_hooks
from sfu.consumer import PacketWriter
from sfu.events import LeaveReason, PublishLayers, Removed, Speakers
from sfu.local_subscriber import TrackInfo
from sfu.plane import MediaPlane
from sfu.relay import (
    AUDIO_LEVEL_URI,
    FarTrack,
    Publication,
    TrackFeed,
    UpstreamTracks,
    VoiceSlot,
    VoiceSlots,
    VoiceWriter,
    tile_for,
)
from sfu.types import DropReason, Kind
from signaling.relay_moderation import RelayModeration, apply_mutes
from signaling.relay_spec import (  # noqa: F401 - RelaySpec and RelayError re-exported
    CONNECT_ERRORS,
    RELAY_ID_PREFIX,
    RELAY_SUFFIX,
    RelayError,
    RelaySpec,
    relay_name,
)

logger = logging.getLogger(__name__)

AUDIO_SLOTS = 3
"""Audio tracks the relay publishes into the far room: B's voices, one per slot (as many as the
media plane counts speakers, ``sfu.room.MAX_SPEAKERS``)."""
REMB_BPS = 20_000_000
"""What the relay tells A it can receive: an unconstrained subscriber (the relay's link is a
server's, not a phone's); A sends it every simulcast layer anyway (``relay_layers``), and its
best layer when A predates that."""
REMB_INTERVAL_S = 1.0
JOIN_TIMEOUT_S = 15.0


RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 30.0
"""Backoff between attempts to reach the far server again after it closed the link."""


class Relay:
    """The shell: WebSocket and two aiortc connections to the far server, a local publisher
    and a local subscriber in the near room."""

    def __init__(self, relay_id: str, plane: MediaPlane, room: str, spec: RelaySpec,
                 ice_addresses: list[str] | None) -> None:
        self.id = relay_id
        self.plane = plane
        self.room = room
        self.spec = spec
        self.participant_id = f"{RELAY_ID_PREFIX}{relay_id}"
        self.state = "starting"
        self.error: str | None = None
        self.far_participant_id: str | None = None
        self.far_pinned: str | None = None
        self._ice = ice_addresses
        self.upstream = UpstreamTracks(self._publish_far, self._send_nack)
        # One near participant per relayed far participant (its own tile, name, speaker state).
        self._near: dict[str, Publication] = {}  # by far participant id
        self._near_count = 0
        self._in_near = False  # the local subscriber (voices) is on
        self._far_names: dict[str, str] = {}
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[bool] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sub = self._new_pc()
        self._pub = self._new_pc()
        self._sub_writer: aiortc_hooks.DatagramWriter | None = None
        self._pub_writer: aiortc_hooks.DatagramWriter | None = None
        self._hooked: set[int] = set()
        self._rtcp_ssrc = secrets.randbits(32)
        self.voices = VoiceSlots([])
        self.offer_errors = 0
        self.gone: set[str] = set()  # far participants who left (ids are not reused)
        self._far_relays: set[str] = set()  # far participants that are relays (by name)
        self._waiter: asyncio.Future[dict[str, Any]] | None = None
        self._remb_timer: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Future[None] | None = None
        self.reconnects = 0
        self.audio_level_ext_id = 0  # read by LocalConsumers: the id the far server agreed
        self.wants_video = False  # read by WorkerPool.subscribe_local: only B's voices go to A
        self._removed_reason: str | None = None
        self.keyframe_requests_sent = 0  # PLIs sent to the far server
        self.nacks_sent = 0
        self.near_rejoins = 0  # the near room ended with its media worker and was entered again
        # far participant id -> the tile (width, height) sent to A: the layers B wants
        self._far_tiles: dict[str, tuple[int, int]] = {}
        self._near_rejoin: asyncio.Future[None] | None = None
        self.moderation = RelayModeration()  # B's hosts' removals and mutes (by far id)

    @staticmethod
    def _new_pc() -> RTCPeerConnection:
        return RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))

    # -- start and stop ------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the far room, publish the audio slots, then appear in the near room."""
        try:
            await self._connect()
        except CONNECT_ERRORS as exc:
            self.state, self.error = "failed", str(exc) or type(exc).__name__
            await self._disconnect()
            raise RelayError(self.error) from None
        self.plane.subscribe_local(self.room, self.participant_id, self)
        self._in_near = True
        self.state = "running"
        self._remb_timer = asyncio.get_running_loop().call_later(REMB_INTERVAL_S, self._remb)
        self._watcher = asyncio.ensure_future(self._watch())

    async def _connect(self) -> None:
        """The far link: WebSocket, join, the audio slots' publish connection (raises)."""
        self._session = aiohttp.ClientSession()
        url = self.spec.source_url.rstrip("/").replace("http", "ws", 1) + "/ws"
        self._ws = await self._session.ws_connect(url, max_msg_size=8 << 20)
        self._reader = asyncio.ensure_future(self._read_forever())
        # relay_layers: A sends every simulcast layer as its own stream (sfu/layer_streams.py),
        # so that B's allocator picks one for each of B's subscribers.
        join: dict[str, Any] = {"type": "join", "room": self.spec.source_room,
                                "name": relay_name(self.room), "relay_layers": True}
        if self.spec.token:
            join["token"] = self.spec.token
        joined = await self._request(join, "joined")
        self.far_participant_id = str(joined["participant_id"])
        for other in joined.get("participants") or ():
            self._note_far(other)
        self.far_pinned = joined.get("pinned")
        if joined.get("can_publish", True):
            await self._publish_audio()

    async def _disconnect(self) -> None:
        """Tear the far link down (the near room is left alone)."""
        with contextlib.suppress(Exception):
            if self._ws is not None and not self._ws.closed:
                await self._ws.send_str(json.dumps({"type": "leave"}))
        for task in list(self._tasks):
            task.cancel()
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        await self._sub.close()
        await self._pub.close()
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._sub_writer = self._pub_writer = None

    def _new_link(self) -> None:
        """Fresh connections for the next attempt (aiortc connections are not reusable)."""
        self._sub = self._new_pc()
        self._pub = self._new_pc()
        self._hooked = set()
        self._far_tiles = {}  # the new far session has none: the near room's next wish is sent
        self.upstream = UpstreamTracks(self._publish_far, self._send_nack)
        self.voices.replace([])

    async def _watch(self) -> None:
        """While running: when the far link ends, reconnect with backoff (the near room keeps
        the relay's participant, without tracks meanwhile); removal by the far side ends it."""
        while self.state == "running" and self._reader is not None:
            removed = await self._reader
            if self.state != "running":
                return
            await self._leave_near_participants()  # they come back with the far link
            await self._disconnect()
            if removed:
                self.state, self.error = "failed", self._removed_reason
                await self._leave_near()
                logger.warning("relay %s: %s", self.id, self.error)
                return
            self.state = "reconnecting"
            self.error = "the far server closed the connection"
            logger.warning("relay %s: %s; reconnecting", self.id, self.error)
            delay = RECONNECT_MIN_S
            while self.state == "reconnecting":
                await asyncio.sleep(delay)
                self._new_link()
                try:
                    await self._connect()
                except CONNECT_ERRORS as exc:
                    self.error = str(exc) or type(exc).__name__
                    await self._disconnect()
                    delay = min(delay * 2, RECONNECT_MAX_S)
                    continue
                if self.state == "reconnecting":
                    self.state, self.error = "running", None
                    self.reconnects += 1

    async def close(self) -> None:
        if self.state != "failed":
            self.state = "closed"
        if self._watcher is not None:
            self._watcher.cancel()
        if self._near_rejoin is not None:
            self._near_rejoin.cancel()
        if self._remb_timer is not None:
            self._remb_timer.cancel()
        await self._leave_near()
        await self._disconnect()

    # -- the far server's signaling ------------------------------------------------------------

    async def _request(self, message: dict[str, Any], reply: str) -> dict[str, Any]:
        assert self._ws is not None
        self._waiter = asyncio.get_running_loop().create_future()
        await self._ws.send_str(json.dumps(message))
        answer = await asyncio.wait_for(self._waiter, JOIN_TIMEOUT_S)
        if answer.get("type") == "error":
            raise RelayError(f"{answer.get('code')}: {answer.get('message')}")
        if answer.get("type") != reply:
            raise RelayError(f"expected {reply}, got {answer.get('type')}")
        return answer

    async def _read_forever(self) -> bool:
        """Until the far server closes the socket; True if it removed us (no reconnecting)."""
        assert self._ws is not None
        async for frame in self._ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            try:
                message = json.loads(frame.data)
                kind = message.get("type")
            except (ValueError, AttributeError):
                continue
            if kind == "subscribe_offer":
                self._spawn(self._answer(message))
            elif kind == "pinned":
                self.far_pinned = message.get("participant_id")
                self._sync_tracks()
            elif kind == "track_muted":
                self._far_muted(message)
            elif kind == "participant_joined":
                self._note_far(message.get("participant"))
            elif kind == "participant_left":
                self.gone.add(str(message.get("participant_id")))
                self._sync_tracks()
            elif kind in ("joined", "publish_answer", "error", "lobby"):
                if kind == "error":
                    logger.warning("relay %s: far server says %s", self.id, message)
                if self._waiter is not None and not self._waiter.done():
                    self._waiter.set_result(message)
            elif kind == "removed":
                self._removed_reason = f"removed by the far server: {message.get('reason')}"
                return True
        return False

    def _far_muted(self, message: dict[str, Any]) -> None:
        owner, kind = str(message.get("participant_id")), message.get("kind")
        muted = message.get("muted") is True
        for track in self.upstream.tracks():
            if (track.participant_id == owner and track.kind.value == kind
                    and track.relayed is not None):  # a mute of B's hosts holds
                track.relayed.set_muted(muted or self.moderation.is_muted(owner, track.kind))

    def _note_far(self, participant: object) -> None:
        if not isinstance(participant, dict):
            return
        far_id, name = str(participant.get("id")), str(participant.get("name", ""))
        self._far_names[far_id] = name[:64]
        if name.endswith(RELAY_SUFFIX):
            self._far_relays.add(far_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, message: dict[str, Any]) -> None:
        try:
            await self._apply_offer(message)
        except Exception as exc:  # the far server's SDP is input like any other: count, go on
            self.offer_errors += 1
            logger.warning("relay %s: far subscribe offer not usable: %r", self.id, exc)

    async def _apply_offer(self, message: dict[str, Any]) -> None:
        pc = self._sub
        await pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="offer"))
        tracks = message.get("tracks")
        self.upstream.describe(message["sdp"], tracks if isinstance(tracks, dict) else {})
        self._sync_tracks()
        for transceiver in pc.getTransceivers():
            receiver = transceiver.receiver
            if id(receiver) not in self._hooked:
                self._hooked.add(id(receiver))
                aiortc_hooks.disable_decoding(receiver, lambda _parameters: None)
                aiortc_hooks.disable_remb(receiver)
            transport = receiver.transport
            if id(transport) not in self._hooked:
                self._hooked.add(id(transport))
                aiortc_hooks.hook_transport(transport, self._on_rtp, self._on_rtcp)
                self._sub_writer = aiortc_hooks.DatagramWriter(transport)
        aiortc_hooks.configure_ice(pc, self._ice, None)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        assert self._ws is not None
        await self._ws.send_str(json.dumps({"type": "subscribe_answer",
                                            "sdp": pc.localDescription.sdp}))

    async def _publish_audio(self) -> None:
        pc = self._pub
        slots = []
        for _ in range(AUDIO_SLOTS):
            transceiver = pc.addTransceiver("audio", direction="sendonly")
            slot = VoiceSlot(aiortc_hooks.sender_ssrcs(transceiver.sender)[0],
                             secrets.randbits(16), secrets.randbits(32))

            def on_parameters(parameters: Any, slot: VoiceSlot = slot) -> None:
                slot.payload_type = parameters.codecs[0].payloadType if parameters.codecs else None

            aiortc_hooks.capture_sender(transceiver.sender, on_parameters)
            slots.append(slot)
        self.voices.replace(slots)
        aiortc_hooks.configure_ice(pc, self._ice, None)
        await pc.setLocalDescription(await pc.createOffer())
        answer = await self._request({"type": "publish", "sdp": pc.localDescription.sdp},
                                     "publish_answer")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        # Near voices keep their RFC 6464 level (the near consumers write it with this id), so
        # the far room's speaker detection hears the district speak.
        self.audio_level_ext_id = next(
            (ext.id for media in SessionDescription.parse(answer["sdp"]).media
             for ext in media.rtp.headerExtensions if ext.uri == AUDIO_LEVEL_URI), 0)
        transport = pc.getTransceivers()[0].sender.transport
        self._pub_writer = aiortc_hooks.DatagramWriter(transport)

    # -- media from the far room ---------------------------------------------------------------

    def _on_rtp(self, data: bytes, _arrival_ms: int) -> None:
        self.upstream.on_rtp(data)

    def _on_rtcp(self, data: bytes) -> None:
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            self.upstream.drops[DropReason.MALFORMED] += 1
            return
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                info = packet.sender_info
                self.upstream.on_sender_report(packet.ssrc, info.ntp_timestamp,
                                               info.rtp_timestamp)

    def chosen(self, far_participant_id: str) -> bool:
        spec = self.spec
        if (not far_participant_id or far_participant_id == self.far_participant_id
                or far_participant_id in self.gone or far_participant_id in self._far_relays
                or far_participant_id in self.moderation.removed):  # by B's hosts
            return False  # nor another relay in the far room: a loop would feed itself
        if spec.participants:
            return far_participant_id in spec.participants
        if spec.pinned:
            return far_participant_id == self.far_pinned
        return True

    def _publish_far(self, track: FarTrack) -> TrackFeed | None:
        if (not self._in_near or self._near_rejoin is not None
                or not self.chosen(track.participant_id)):
            return None
        publication = self._near.get(track.participant_id)
        if publication is None:
            self._near_count += 1
            far_name = self._far_names.get(track.participant_id) or self.spec.source_room
            try:
                publication = self.plane.publish_local(
                    self.room, f"{self.participant_id}-{self._near_count}",
                    relay_name(far_name), functools.partial(self._on_near_event,
                                                            far_id=track.participant_id))
            except Exception as exc:  # no live media worker (MediaUnavailable): the next packet
                logger.debug("relay %s: cannot publish into %r: %r", self.id, self.room, exc)
                return None  # counted by UpstreamTracks (PAUSED)
            self._near[track.participant_id] = publication
        track_id = f"{track.participant_id}.{track.mid}"
        existing = publication.tracks.get(track_id)
        if existing is not None:
            return existing
        ssrcs = [layer.ssrc for layer in track.layers] or [track.ssrc]

        def keyframe(layer: int) -> None:  # a PLI names the far consumer of that layer
            self._send_pli(ssrcs[max(0, min(layer, len(ssrcs) - 1))])

        feed = publication.add_track(track_id, track.kind, track.codec, keyframe,
                                     track.audio_level_ext_id, track.rids)
        apply_mutes(self, track.participant_id, publication)  # B's hosts muted them before
        return feed

    def near_people(self) -> dict[str, Publication]:
        """far participant id -> their participant in the near room"""
        return dict(self._near)

    def stop_relaying(self, far_id: str) -> None:
        """B's host removed them: out of the near room; A sends no more of their video."""
        self._sync_tracks()
        self._far_tiles[far_id] = (0, 0)
        self._spawn(self._send_tiles())

    def _sync_tracks(self) -> None:
        """Withdraw from the near room every relayed track that A no longer sends us for a
        chosen participant (left, m-line given to someone else, chair changed)."""
        wanted = {f"{t.participant_id}.{t.mid}" for t in self.upstream.tracks()
                  if self.chosen(t.participant_id)}
        for far_id, publication in list(self._near.items()):
            for track_id in [t for t in publication.tracks if t not in wanted]:
                removed = publication.tracks[track_id]
                publication.remove_track(track_id)
                for far in self.upstream.tracks():
                    if far.relayed is removed:
                        far.relayed, far.relayed_for = None, ""
            if not publication.tracks:  # nothing of this far participant is relayed now
                del self._near[far_id]
                self._spawn(self._leave(publication))

    async def _leave(self, publication: Publication) -> None:
        await self.plane.leave(self.room, publication.participant_id)
        publication.close()

    async def _leave_near_participants(self) -> None:
        near, self._near = self._near, {}
        for publication in near.values():
            await self._leave(publication)

    async def _leave_near(self) -> None:
        await self._leave_near_participants()
        if self._in_near:
            self._in_near = False
            self.plane.unsubscribe_local(self.room, self.participant_id)

    def _send_pli(self, media_ssrc: int) -> None:
        if self._sub_writer is not None and self._sub_writer.send_rtcp(bytes(RtcpPsfbPacket(
                fmt=RTCP_PSFB_PLI, ssrc=self._rtcp_ssrc, media_ssrc=media_ssrc))):
            self.keyframe_requests_sent += 1

    def _send_nack(self, media_ssrc: int, lost: list[int]) -> None:
        if self._sub_writer is not None and self._sub_writer.send_rtcp(bytes(RtcpRtpfbPacket(
                fmt=RTCP_RTPFB_NACK, ssrc=self._rtcp_ssrc, media_ssrc=media_ssrc, lost=lost))):
            self.nacks_sent += 1

    def _remb(self) -> None:
        video = [layer.ssrc for t in self.upstream.tracks() if t.kind is Kind.VIDEO
                 for layer in t.layers]
        if self._sub_writer is not None and video:
            self._sub_writer.send_rtcp(bytes(RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP, ssrc=self._rtcp_ssrc, media_ssrc=0,
                fci=pack_remb_fci(REMB_BPS, video))))
        if self.state in ("running", "reconnecting"):
            self._remb_timer = asyncio.get_running_loop().call_later(REMB_INTERVAL_S, self._remb)

    # -- the near room's voices (LocalSubscriber) ----------------------------------------------

    def track_added(self, track: TrackInfo) -> PacketWriter | None:
        if (track.kind is not Kind.AUDIO or track.participant_id.startswith(RELAY_ID_PREFIX)
                or track.participant_name.endswith(RELAY_SUFFIX)):
            return None  # not our own, nor another relay's: no loop between rooms
        self.voices.add(track.producer_id, track.participant_id)
        return VoiceWriter(track.producer_id, self.voices, lambda: self._pub_writer)

    def track_removed(self, producer_id: str) -> None:
        self.voices.remove(producer_id)

    def _on_near_event(self, event: object, far_id: str = "") -> None:
        # The relay's participants in the near room hear what everyone hears: follow speakers.
        if isinstance(event, Speakers):
            self.voices.set_speakers(event.participant_ids)
        elif isinstance(event, PublishLayers) and far_id:
            self._near_wants(far_id, event.active)
        elif (isinstance(event, Removed) and event.reason is LeaveReason.MEDIA_WORKER_LOST
                and self._near_rejoin is None):
            self._near_rejoin = asyncio.ensure_future(self._rejoin_near())

    async def _rejoin_near(self) -> None:
        """The near room ended with its media worker (``--workers N``): the relay enters it
        again (placed on a live worker); its tracks come back with the far side's next packets."""
        try:
            for publication in self._near.values():
                publication.close()
            self._near = {}
            for far in self.upstream.tracks():
                far.relayed, far.relayed_for = None, ""
            delay = RECONNECT_MIN_S
            while self._in_near and self.state in ("running", "reconnecting"):
                self.plane.unsubscribe_local(self.room, self.participant_id)  # gone with it
                try:
                    self.plane.subscribe_local(self.room, self.participant_id, self)
                    self.near_rejoins += 1
                    logger.warning("relay %s: in %r again (its media worker was lost)",
                                   self.id, self.room)
                    return
                except Exception as exc:  # no live worker yet (MediaUnavailable): try again
                    logger.warning("relay %s: near room not back yet: %r", self.id, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX_S)
        finally:
            self._near_rejoin = None

    def _near_wants(self, far_id: str, active: Mapping[str, bool]) -> None:
        """The near room wants these layers of a relayed participant (its uplink rule, as for a
        browser's encodings): the relay tells A with a tile as wide as the highest one, so A
        sends no layer above it (``LayerStreams.follow``) and its publisher may stop it."""
        rids = next((t.rids for t in self.upstream.tracks()
                     if t.participant_id == far_id and t.kind is Kind.VIDEO and t.rids), None)
        tile = tile_for(rids, active) if rids else None
        if tile is not None and self._far_tiles.get(far_id) != tile:
            self._far_tiles[far_id] = tile
            self._spawn(self._send_tiles())

    async def _send_tiles(self) -> None:
        if self._ws is None or self._ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._ws.send_str(json.dumps({"type": "tiles", "tiles": [
                {"participant_id": far_id, "width": width, "height": height,
                 "visible": width > 0}
                for far_id, (width, height) in self._far_tiles.items()
                if far_id not in self.gone]}))

    def sender_report(self, producer_id: str, ntp_timestamp: int, rtp_timestamp: int) -> None:
        pass  # the far server makes its own sender reports from what it receives

    def summary(self) -> dict[str, Any]:
        return {
            "participants": {far_id: p.participant_id for far_id, p in self._near.items()},
            "packets_relayed": self.upstream.packets,
            "sender_reports_relayed": self.upstream.sender_reports,
            "tracks": sorted(t for p in self._near.values() for t in p.tracks),
            "keyframe_requests_sent": self.keyframe_requests_sent,
            "nacks_sent": self.nacks_sent,
            "audio_packets_back": sum(slot.sent for slot in self.voices.slots),
            "offer_errors": self.offer_errors,
            "reconnects": self.reconnects,
            "near_rejoins": self.near_rejoins,
            "asked_of_far": {far_id: f"{w}x{h}" for far_id, (w, h) in self._far_tiles.items()},
            "drops": {reason.value: n for reason, n in self.upstream.drops.items()},
            "moderation": self.moderation.summary(),
        }
