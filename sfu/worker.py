"""Worker: the media plane of one process (rooms, peer connections, ICE settings).

The worker implements ``sfu.plane.MediaPlane``: signaling and the recorder address participants
by room and id and hear back typed events, so nothing else in the process reaches into rooms.
One worker per process today; the same interface lets a worker per core sit behind signaling.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCBundlePolicy

from sfu import aiortc_hooks, gctune, memtune
from sfu.diagnostics import ParticipantDiagnostics, room_diagnostics
from sfu.events import EventSink, LeaveReason, Removed, SubscribeOffer, TrackDescription
from sfu.link_stats import LinkStats, participant_link
from sfu.local_subscriber import LocalSubscriber
from sfu.plane import (
    BadDescription,
    NotDescribed,
    PlaneStats,
    RoomState,
    Target,
    UnknownParticipant,
)
from sfu.policy.audio_only import DEFAULT_THRESHOLD_BPS, AudioOnlyGate
from sfu.policy.downlink import DownlinkPolicy, Tile
from sfu.policy.last_n import DEFAULT_LAST_N
from sfu.policy.uplink import UplinkPolicy
from sfu.producer import Producer
from sfu.publisher import Publisher
from sfu.relay import LocalPublication
from sfu.room import Participant, Room, retire_counters
from sfu.scheduler import Scheduler, Timer
from sfu.subscriber import Subscriber
from sfu.subscriber_negotiator import check_answer, describe_error
from sfu.types import Kind
from sfu.wire.demux import DatagramDrops
from sfu.wire.sdp_directions import silent_mids

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediaConfig:
    ice_addresses: tuple[str, ...] | None = None  # None: every non-loopback interface
    port_range: tuple[int, int] | None = None
    ice_servers: tuple[str, ...] = ()  # STUN/TURN URLs; none by default (no public STUN)
    audio_only_below_bps: int = DEFAULT_THRESHOLD_BPS
    audio_only_recover_factor: float = 1.25
    audio_only_enter_s: float = 0.25
    audio_only_recover_s: float = 5.0
    transport_cc: bool = True
    last_n: int = DEFAULT_LAST_N  # videos each participant receives (0: all)
    room_last_n: tuple[tuple[str, int], ...] = ()  # (room, N): per-room overrides

    def downlink_policy(self) -> DownlinkPolicy:
        return DownlinkPolicy(gate=AudioOnlyGate(
            threshold_bps=self.audio_only_below_bps,
            recover_factor=self.audio_only_recover_factor,
            enter_after_s=self.audio_only_enter_s,
            recover_after_s=self.audio_only_recover_s,
        ))


ICE_WAIT_S = 5.0
"""How long a trickled subscriber candidate may wait for the answer it belongs to."""


class Worker:
    def __init__(self, config: MediaConfig) -> None:
        self.config = config
        self.ice_servers = config.ice_servers
        self.rooms: dict[str, Room] = {}
        self._ports = (
            aiortc_hooks.PortAllocator(*config.port_range) if config.port_range else None
        )
        self._addresses = list(config.ice_addresses) if config.ice_addresses else None
        self.scheduler = Scheduler()  # every periodic timer of this worker's rooms
        self._maintain_timer: Timer | None = None
        self.retired: Counter[str] = Counter()  # counters of participants who left
        self.datagram_drops = DatagramDrops()  # garbage on the media ports, by reason
        self.trimmer = memtune.worker_trimmer()  # glibc's free memory back after joins/leaves
        self._trim_timer: Timer | None = None
        # freezes after joins, reclaims after leaves (sfu/gctune.py); made in start(), once
        # the process is tuned for forwarding
        self.gc_keeper: gctune.GcKeeper | None = None

    MAINTAIN_INTERVAL_S = 0.5
    TRIM_CHECK_INTERVAL_S = 1.0  # the sender reports' beat: no wake-up of its own

    def _changed(self) -> None:
        if self.trimmer is not None:
            self.trimmer.changed(asyncio.get_running_loop().time())

    def start(self) -> None:
        """Start the periodic room maintenance (call from a running loop)."""
        if self.gc_keeper is None:
            self.gc_keeper = gctune.worker_keeper()
        if self._maintain_timer is None:
            self._maintain_timer = self.scheduler.every(
                self.MAINTAIN_INTERVAL_S, self.maintain, "worker maintenance"
            )
        if self.trimmer is not None and self._trim_timer is None:
            trimmer = self.trimmer
            self._trim_timer = self.scheduler.every(
                self.TRIM_CHECK_INTERVAL_S,
                lambda: trimmer.tick(asyncio.get_running_loop().time(), memtune.rss_bytes),
                "malloc trim")

    def maintain(self) -> None:
        now = asyncio.get_running_loop().time()
        for room in list(self.rooms.values()):
            try:
                room.maintain(now)
            except Exception:
                logger.exception("maintenance of room %r failed", room.name)
        if self.gc_keeper is not None:
            self.gc_keeper.tick(now, sum(len(room.participants) for room in self.rooms.values()))

    def _new_pc(self) -> RTCPeerConnection:
        servers = [RTCIceServer(urls=url) for url in self.config.ice_servers]
        # Always pass iceServers explicitly: aiortc's default is a public STUN server.
        return RTCPeerConnection(
            RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )

    def configure_ice(self, pc: RTCPeerConnection) -> None:
        aiortc_hooks.configure_ice(pc, self._addresses, self._ports, self.datagram_drops)

    def link_stats(self, room: str, participant_id: str) -> LinkStats | None:
        """What we know of a participant's downlink (``sfu.link_stats.LinkStatsSource``)."""
        live = self.rooms.get(room)
        participant = live.participants.get(participant_id) if live is not None else None
        if participant is None:
            return None
        return participant_link(participant, asyncio.get_running_loop().time())

    def room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            last_n = dict(self.config.room_last_n).get(name, self.config.last_n)
            room = self.rooms[name] = Room(name, self.retired, last_n)
        return room

    def join(self, room: str, participant_id: str, name: str, events: EventSink,
             all_layers: bool = False) -> RoomState:
        live = self.room(room)
        before = _room_state(live)
        loop_time = asyncio.get_running_loop().time
        participant = Participant(
            participant_id, name, events, joined_at=loop_time(),
            uplink_policy=UplinkPolicy(gate=self.config.downlink_policy().gate),  # same rule up
        )

        def on_producer(producer: Producer) -> None:
            live.producer_ready(producer)

        async def send_offer(sdp: str, tracks: dict[str, TrackDescription]) -> None:
            events(SubscribeOffer(sdp, tracks))

        participant.publisher = Publisher(
            participant_id, self._new_pc(), on_producer, loop_time, self.configure_ice,
            scheduler=self.scheduler,
        )
        participant.subscriber = Subscriber(
            participant_id, self._new_pc(), send_offer, loop_time, self.configure_ice,
            notify=events, policy=self.config.downlink_policy(),
            transport_cc=self.config.transport_cc, scheduler=self.scheduler,
            all_layers=all_layers,
        )
        participant.publisher.start()
        participant.subscriber.start()
        live.add(participant)
        self._changed()
        return before

    async def leave(self, room: str, participant_id: str) -> None:
        live = self.rooms.get(room)
        if live is None:
            return
        if await live.remove(participant_id) is not None and self.gc_keeper is not None:
            self.gc_keeper.policy.left()
        self._changed()
        if not live.participants and not live.local:
            self.rooms.pop(room, None)

    async def close(self) -> None:
        """Drain every room (graceful shutdown), then stop every timer left."""
        if self._maintain_timer is not None:
            self._maintain_timer.cancel()
            self._maintain_timer = None
        if self._trim_timer is not None:
            self._trim_timer.cancel()
            self._trim_timer = None
        for name, room in list(self.rooms.items()):
            for participant_id in list(room.participants):
                participant = room.participants.get(participant_id)
                if participant is not None:
                    participant.notify(Removed(LeaveReason.SERVER_SHUTDOWN))
                await room.remove(participant_id)
            self.rooms.pop(name, None)
        self.scheduler.close()

    # -- the rest of the MediaPlane interface ------------------------------------------------------

    def participant(self, room: str, participant_id: str) -> Participant:
        live = self.rooms.get(room)
        participant = live.participants.get(participant_id) if live is not None else None
        if participant is None:
            raise UnknownParticipant(participant_id)
        return participant

    async def publish(self, room: str, participant_id: str, offer_sdp: str,
                      screen_mids: Collection[str] = ()) -> str:
        participant = self.participant(room, participant_id)
        publisher = participant.publisher
        assert publisher is not None
        answer = await publisher.answer(offer_sdp, screen_mids)
        # A screen share that stopped: its m-line went inactive; the others drop its track.
        for mid in silent_mids(offer_sdp):
            producer = publisher.producers.get(mid)
            if producer is not None and producer.source == "screen":
                self.rooms[room].drop_producer(participant, producer)
        return answer

    def subscribe_answer(self, room: str, participant_id: str, answer_sdp: str) -> bool:
        subscriber = self.participant(room, participant_id).subscriber
        assert subscriber is not None
        try:
            check_answer(answer_sdp)
        except Exception as exc:  # aiortc's parser raises all sorts
            raise BadDescription(describe_error(exc)) from None
        applied = subscriber.set_answer(answer_sdp)
        if applied and self.gc_keeper is not None and subscriber.negotiator.negotiations == 1:
            # The join's last step: what it set up is alive and stays (sfu/gctune.py).
            self.gc_keeper.policy.settled(asyncio.get_running_loop().time())
        return applied

    async def add_ice_candidate(self, room: str, participant_id: str, target: Target,
                                candidate: Any | None) -> None:
        participant = self.participant(room, participant_id)
        connection = (participant.publisher if target is Target.PUBLISHER
                      else participant.subscriber)
        assert connection is not None
        if isinstance(connection, Subscriber):
            # The browser trickles right after its answer, which is applied in another task.
            await connection.wait_described(ICE_WAIT_S)
        if connection.pc.remoteDescription is None:
            raise NotDescribed(f"no {target.value} description yet for ICE")
        await connection.pc.addIceCandidate(candidate)

    def set_muted(self, room: str, participant_id: str, kind: Kind, muted: bool) -> None:
        participant = self.participant(room, participant_id)
        self.rooms[room].set_muted(participant, kind, muted)

    def pin(self, room: str, participant_id: str | None) -> None:
        live = self.rooms.get(room)
        if live is None:
            raise KeyError(room)
        if participant_id is not None and participant_id not in live.participants:
            raise UnknownParticipant(participant_id)
        live.pin(participant_id)

    def set_tiles(self, room: str, participant_id: str, tiles: Mapping[str, Tile]) -> None:
        subscriber = self.participant(room, participant_id).subscriber
        assert subscriber is not None
        subscriber.set_tiles(dict(tiles))

    def set_shown(self, room: str, participant_id: str, shown: Sequence[str]) -> None:
        participant = self.participant(room, participant_id)
        self.rooms[room].set_shown(participant, tuple(shown))

    def set_audio_only(self, room: str, participant_id: str, enabled: bool) -> None:
        subscriber = self.participant(room, participant_id).subscriber
        assert subscriber is not None
        subscriber.set_user_audio_only(enabled)

    def set_uplink_estimate(self, room: str, participant_id: str, bps: int | None) -> None:
        self.participant(room, participant_id).uplink.estimate_bps = bps

    def request_keyframe(self, room: str, participant_id: str) -> int:
        now = asyncio.get_running_loop().time()
        asked = 0
        for producer in self.participant(room, participant_id).producers:
            if producer.is_video:
                for layer in producer.layers:
                    producer.request_keyframe(now, layer.index)
                    asked += 1
        return asked

    def subscribe_local(self, room: str, subscriber_id: str,
                        subscriber: LocalSubscriber) -> None:
        self.room(room).add_local(subscriber_id, subscriber)

    def unsubscribe_local(self, room: str, subscriber_id: str) -> None:
        live = self.rooms.get(room)
        if live is None:
            return
        live.remove_local(subscriber_id)
        if not live.participants and not live.local:
            self.rooms.pop(room, None)

    def publish_local(self, room: str, participant_id: str, name: str,
                      events: EventSink) -> LocalPublication:
        """An in-process publisher (a relay): a participant without connections whose tracks
        are fed as RTP bytes (``sfu/relay.py``). ``leave`` removes it; then close the result."""
        live = self.room(room)
        if participant_id in live.participants:
            raise ValueError(f"{participant_id!r} is already in {room!r}")
        loop_time = asyncio.get_running_loop().time
        participant = Participant(participant_id, name, events, joined_at=loop_time())
        live.add(participant)
        return LocalPublication(room, participant_id, participant.relayed, live.producer_ready,
                                loop_time, live.withdraw)

    def diagnostics(self, room: str) -> tuple[ParticipantDiagnostics, ...]:
        live = self.rooms.get(room)
        return room_diagnostics(live, asyncio.get_running_loop().time()) if live else ()

    def room_state(self, room: str) -> RoomState | None:
        live = self.rooms.get(room)
        return _room_state(live) if live is not None else None

    def stats(self) -> PlaneStats:
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:
            now = 0.0
        stats = PlaneStats(rooms=len(self.rooms), totals=Counter(self.retired),
                           datagram_drops=Counter({drop.value: count for drop, count
                                                   in self.datagram_drops.counts.items()}))
        for live in self.rooms.values():
            for participant in live.participants.values():
                stats.participants += 1
                retire_counters(participant, now, stats.totals)
                stats.producers += len(participant.producers)
                subscriber = participant.subscriber
                if subscriber is not None:
                    # a relay's lower layers are consumers of their own (sfu/layer_streams.py)
                    consumers = [*subscriber.consumers.values(), *(
                        subscriber.layered.extras() if subscriber.layered is not None else ())]
                    stats.consumers += len(consumers)
                    policy = subscriber.downlink.policy
                    if policy.gate.audio_only or policy.user_audio_only:
                        stats.audio_only["down"] += 1
                    for consumer in consumers:
                        if consumer.pause_reason is not None:
                            stats.paused[consumer.pause_reason.value] += 1
                if participant.uplink.audio_only:
                    stats.audio_only["up"] += 1
        return stats


def _room_state(room: Room) -> RoomState:
    return RoomState(room.name, tuple(p.state() for p in room.participants.values()), room.pinned)
