"""Worker: the media plane of one process (rooms, peer connections, ICE settings).

One worker per process today; the design leaves room for one per core behind signaling, which is
why the worker owns its rooms and nothing else in the process reaches into them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCBundlePolicy

from sfu import aiortc_hooks
from sfu.audio_only import DEFAULT_THRESHOLD_BPS, AudioOnlyGate
from sfu.demux import DatagramDrops
from sfu.downlink import DownlinkPolicy
from sfu.publisher import Publisher
from sfu.room import Notify, Participant, Room
from sfu.subscriber import Subscriber

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

    def downlink_policy(self) -> DownlinkPolicy:
        return DownlinkPolicy(gate=AudioOnlyGate(
            threshold_bps=self.audio_only_below_bps,
            recover_factor=self.audio_only_recover_factor,
            enter_after_s=self.audio_only_enter_s,
            recover_after_s=self.audio_only_recover_s,
        ))


class Worker:
    def __init__(self, config: MediaConfig) -> None:
        self.config = config
        self.rooms: dict[str, Room] = {}
        self._ports = (
            aiortc_hooks.PortAllocator(*config.port_range) if config.port_range else None
        )
        self._addresses = list(config.ice_addresses) if config.ice_addresses else None
        self._maintain_task: asyncio.Task[None] | None = None
        self.retired: Counter[str] = Counter()  # counters of participants who left
        self.datagram_drops = DatagramDrops()  # garbage on the media ports, by reason

    MAINTAIN_INTERVAL_S = 0.5

    def start(self) -> None:
        """Start the periodic room maintenance (call from a running loop)."""
        self._maintain_task = asyncio.ensure_future(self._maintain_forever())

    async def _maintain_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.MAINTAIN_INTERVAL_S)
            now = loop.time()
            for room in list(self.rooms.values()):
                try:
                    room.maintain(now)
                except Exception:
                    logger.exception("maintenance of room %r failed", room.name)

    def _new_pc(self) -> RTCPeerConnection:
        servers = [RTCIceServer(urls=url) for url in self.config.ice_servers]
        # Always pass iceServers explicitly: aiortc's default is a public STUN server.
        return RTCPeerConnection(
            RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )

    def configure_ice(self, pc: RTCPeerConnection) -> None:
        aiortc_hooks.configure_ice(pc, self._addresses, self._ports, self.datagram_drops)

    def room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(name, self.retired)
        return room

    def join(
        self,
        room_name: str,
        participant_id: str,
        name: str,
        notify: Notify,
        send_offer: Callable[[str, dict[str, dict[str, str]]], Awaitable[None]],
    ) -> Participant:
        room = self.room(room_name)
        loop_time = asyncio.get_running_loop().time
        participant = Participant(participant_id, name, notify, joined_at=loop_time())
        participant.uplink.gate = self.config.downlink_policy().gate  # same thresholds up

        def on_producer(producer: object) -> None:
            room.producer_ready(producer)  # type: ignore[arg-type]

        participant.publisher = Publisher(
            participant_id, self._new_pc(), on_producer, loop_time, self.configure_ice
        )
        participant.subscriber = Subscriber(
            participant_id, self._new_pc(), send_offer, loop_time, self.configure_ice,
            notify=notify, policy=self.config.downlink_policy(),
            transport_cc=self.config.transport_cc,
        )
        room.add(participant)
        return participant

    async def leave(self, room_name: str, participant_id: str) -> None:
        room = self.rooms.get(room_name)
        if room is None:
            return
        await room.remove(participant_id)
        if not room.participants:
            self.rooms.pop(room_name, None)

    async def close(self) -> None:
        """Drain every room (graceful shutdown)."""
        if self._maintain_task is not None:
            self._maintain_task.cancel()
        for name, room in list(self.rooms.items()):
            for participant_id in list(room.participants):
                participant = room.participants.get(participant_id)
                if participant is not None:
                    participant.notify({"type": "left", "reason": "server-shutdown"})
                await room.remove(participant_id)
            self.rooms.pop(name, None)
