"""A synthetic participant built on aiortc: joins through the real signaling, publishes, subscribes.

Used by the in-process tests, the forwarding benchmark and (later) the load test. It speaks the
same protocol as the browser client (docs/protocol.md). ``decode=True`` consumes remote tracks
through aiortc's decoders (proves media is decodable); ``decode=False`` only counts RTP packets
at the transport (cheap: for benchmarks with many subscribers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaBlackhole
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy

from sfu import aiortc_hooks

logger = logging.getLogger(__name__)


MAX_REDIRECTS = 2
"""A join sent to another node (``wrong-node``) follows at most this many redirects."""


class SignalingError(Exception):
    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(f"{message.get('code')}: {message.get('message')}")
        self.code = message.get("code")
        self.message = message


async def wait_until(predicate: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` has passed (bounded); its last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(every)
    return predicate()


class SyntheticParticipant:
    def __init__(
        self,
        base_url: str,
        room: str,
        name: str,
        *,
        audio: bool = True,
        video: bool = True,
        decode: bool = True,
        ice_addresses: list[str] | None = None,
        video_track_factory: Callable[[], MediaStreamTrack] | None = None,
        remb: bool = True,
        source_address: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # The signaling socket's own address (another 127.x.y.z): many people from many homes,
        # as the server's per-address limits see them.
        self.source_address = source_address
        self.room = room
        self.name = name
        self.audio = audio
        self.video = video
        self.decode = decode
        # False: the subscriber's receivers send no REMB (aiortc's estimate on a busy loopback
        # falls far below what it receives, and the server would pause video by bandwidth).
        self.remb = remb
        self.ice_addresses = ice_addresses if ice_addresses is not None else ["127.0.0.1"]
        self._video_track_factory = video_track_factory or VideoStreamTrack
        self.participant_id: str | None = None
        self.others: dict[str, str] = {}  # id -> name
        self.events: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        # frames (decode=True) or RTP packets (decode=False) received, per remote participant/kind
        self.received: dict[str, dict[str, int]] = defaultdict(lambda: {"audio": 0, "video": 0})
        self.tracks: dict[str, dict[str, str]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.redirects = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._consumed: set[str] = set()
        self._taken_receivers: set[int] = set()
        self._taken_transports: set[int] = set()
        self._offer_lock = asyncio.Lock()
        self.publisher = self._new_pc()
        self.subscriber = self._new_pc()
        self._blackhole = MediaBlackhole()

    @staticmethod
    def _new_pc() -> RTCPeerConnection:
        return RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )

    # -- signaling -------------------------------------------------------------------------------

    async def connect(self) -> None:
        connector = None if self.source_address is None else aiohttp.TCPConnector(
            local_addr=(self.source_address, 0))
        self._session = aiohttp.ClientSession(connector=connector)
        ws_url = self.base_url.replace("http", "ws", 1) + "/ws"
        self._ws = await self._session.ws_connect(ws_url, max_msg_size=8 << 20)
        self._reader = asyncio.ensure_future(self._read_forever())

    async def _disconnect_signaling(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_str(json.dumps(message))

    async def send_raw(self, raw: str) -> None:
        assert self._ws is not None
        await self._ws.send_str(raw)

    def expect(self, message_type: str) -> asyncio.Future[dict[str, Any]]:
        future = asyncio.get_running_loop().create_future()
        self._waiters[message_type] = future
        return future

    async def request(
        self, message: dict[str, Any], reply: str, timeout: float = 10.0
    ) -> dict[str, Any]:
        waiter = self.expect(reply)
        error_waiter = self.expect("error")
        await self.send(message)
        done, _ = await asyncio.wait(
            [waiter, error_waiter], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        for future in (waiter, error_waiter):
            if not future.done():
                future.cancel()
        if not done:
            raise TimeoutError(f"no {reply} within {timeout} s")
        result = done.pop().result()
        if result.get("type") == "error":
            raise SignalingError(result)
        return result

    async def _read_forever(self) -> None:
        assert self._ws is not None
        async for frame in self._ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(frame.data)
            kind = message.get("type")
            self.events.append(message)
            if kind == "error":
                self.errors.append(message)
            elif kind == "participant_joined":
                self.others[message["participant"]["id"]] = message["participant"]["name"]
            elif kind == "participant_left":
                self.others.pop(message["participant_id"], None)
            elif kind == "subscribe_offer":
                self._spawn(self._answer(message))
            elif kind == "slot":
                self._spawn(self._follow_slot(message))
            waiter = self._waiters.pop(kind, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- media -----------------------------------------------------------------------------------

    async def join(self, timeout: float = 10.0) -> dict[str, Any]:
        for hop in range(MAX_REDIRECTS + 1):
            if self._ws is None:
                await self.connect()
            try:
                joined = await self.request(
                    {"type": "join", "room": self.room, "name": self.name}, "joined", timeout
                )
                break
            except SignalingError as exc:
                # A cluster sends a join to the node running the room (docs/protocol.md).
                if exc.code != "wrong-node" or hop == MAX_REDIRECTS:
                    raise
                await self._disconnect_signaling()
                self.base_url = str(exc.message.get("address", self.base_url)).rstrip("/")
                self.redirects += 1
        self.participant_id = joined["participant_id"]
        for other in joined["participants"]:
            self.others[other["id"]] = other["name"]
        if self.audio or self.video:
            await self.publish(timeout)
        return joined

    async def publish(self, timeout: float = 10.0) -> None:
        if self.audio:
            self.publisher.addTransceiver(AudioStreamTrack(), direction="sendonly")
        if self.video:
            self.publisher.addTransceiver(self._video_track_factory(), direction="sendonly")
        aiortc_hooks.configure_ice(self.publisher, self.ice_addresses, None)
        offer = await self.publisher.createOffer()
        await self.publisher.setLocalDescription(offer)
        answer = await self.request(
            {"type": "publish", "sdp": self.publisher.localDescription.sdp},
            "publish_answer", timeout,
        )
        await self.publisher.setRemoteDescription(
            RTCSessionDescription(sdp=answer["sdp"], type="answer")
        )

    async def _answer(self, message: dict[str, Any]) -> None:
        async with self._offer_lock:
            pc = self.subscriber
            await pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="offer"))
            self.tracks = message["tracks"]
            if not self.remb:
                for transceiver in pc.getTransceivers():
                    aiortc_hooks.disable_remb(transceiver.receiver)
            aiortc_hooks.configure_ice(pc, self.ice_addresses, None)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            await self.send({"type": "subscribe_answer", "sdp": pc.localDescription.sdp})
            for transceiver in pc.getTransceivers():
                mid = transceiver.mid
                if mid is None or mid not in self.tracks or mid in self._consumed:
                    continue
                self._consumed.add(mid)
                self._spawn(self._consume(mid, transceiver.receiver.track))

    async def _follow_slot(self, message: dict[str, Any]) -> None:
        """A pooled video m-line shows another participant from now on (docs/protocol.md
        ``slot``): after any offer received before it (the lock keeps their order)."""
        async with self._offer_lock:
            mid, owner = message.get("mid"), message.get("participant_id")
            if isinstance(mid, str) and isinstance(owner, str):
                self.tracks[mid] = {"participant_id": owner, "kind": "video",
                                    "stream_id": owner,
                                    "source": str(message.get("source", "camera"))}

    def take_over_receivers(
        self,
        on_rtp: Callable[[bytes, int], None],
        on_rtcp: Callable[[bytes], None] = lambda _data: None,
        *,
        keep_remb: bool = False,
    ) -> list[Any]:
        """Counting receivers (benchmarks, load tests): on every new receiver of the subscriber
        connection stop aiortc's decoder (and its REMB unless ``keep_remb``), and deliver every
        new transport's decrypted packets to ``on_rtp``/``on_rtcp``. Call after the offer is
        applied and before the answer starts the connection. Returns the transports hooked now.
        """
        hooked = []
        for transceiver in self.subscriber.getTransceivers():
            receiver = transceiver.receiver
            if id(receiver) not in self._taken_receivers:
                self._taken_receivers.add(id(receiver))
                aiortc_hooks.disable_decoding(receiver, lambda _parameters: None)
                if not keep_remb:
                    aiortc_hooks.disable_remb(receiver)
            transport = receiver.transport
            if id(transport) not in self._taken_transports:
                self._taken_transports.add(id(transport))
                aiortc_hooks.hook_transport(transport, on_rtp, on_rtcp)
                hooked.append(transport)
        return hooked

    async def _consume(self, mid: str, track: MediaStreamTrack) -> None:
        # The mid's owner may change when the server reuses the m-line: look it up per frame.
        with contextlib.suppress(Exception):
            while True:
                await track.recv()
                info = self.tracks.get(mid)
                if info is not None:
                    self.received[info["participant_id"]][info["kind"]] += 1

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Poll ``predicate`` every 50 ms until true or ``timeout`` (bounded)."""
        return await wait_until(predicate, timeout)

    async def leave(self) -> None:
        with contextlib.suppress(Exception):
            if self._ws is not None and not self._ws.closed:
                await self.send({"type": "leave"})
        await self.close()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._reader is not None:
            self._reader.cancel()
        await self.publisher.close()
        await self.subscriber.close()
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
