"""One participant's WebSocket session: decode, dispatch through a table of handlers, reply.

Every failure of one message becomes an ``error`` to its sender; nothing a client sends can take
the session's task down, let alone the room or the server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web
from aiortc import RTCIceCandidate
from aiortc.sdp import candidate_from_sdp

from sfu.downlink import Tile
from sfu.room import Participant
from sfu.subscriber import check_answer, describe_error
from sfu.types import Kind
from sfu.worker import Worker
from signaling.admission import Admitted, Credentials, Waiting
from signaling.config import Config
from signaling.control import ControlPlane
from signaling.messages import (
    AudioOnly,
    Ice,
    Join,
    Leave,
    Mute,
    Ping,
    ProtocolError,
    Publish,
    SubscribeAnswer,
    Tiles,
    Uplink,
    decode,
)
from signaling.moderation import SessionRegistry

logger = logging.getLogger(__name__)

ICE_WAIT_S = 5.0
"""How long a trickled subscriber candidate may wait for the answer it belongs to."""
OUTBOX_LIMIT = 1000
"""Messages queued for a client that does not read; beyond this the client is disconnected."""


class Session:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        worker: Worker,
        config: Config,
        control: ControlPlane | None = None,
        sessions: SessionRegistry | None = None,
        address: str = "?",
    ) -> None:
        self.ws = ws
        self.worker = worker
        self.config = config
        self.control = control
        self.sessions = sessions if sessions is not None else SessionRegistry()
        self.address = address
        self.participant: Participant | None = None
        self.room_name: str | None = None
        self.admitted: Admitted | None = None
        self._session_id: str | None = None  # the participant id, from join on (lobby too)
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._waiting: Waiting | None = None
        self._closing = False
        self._handlers: dict[type, Callable[[Any], Awaitable[None]]] = {
            Join: self.on_join,
            Publish: self.on_publish,
            SubscribeAnswer: self.on_subscribe_answer,
            Ice: self.on_ice,
            Mute: self.on_mute,
            Tiles: self.on_tiles,
            AudioOnly: self.on_audio_only,
            Uplink: self.on_uplink,
            Leave: self.on_leave,
            Ping: self.on_ping,
        }

    # -- output ----------------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message (callable from synchronous room code); one writer keeps order."""
        if self._closing:
            return
        if self._outbox.qsize() >= OUTBOX_LIMIT:
            logger.warning("client %s does not read; disconnecting", self.participant_id)
            self._closing = True
            self._outbox.put_nowait(None)
            return
        self._outbox.put_nowait(message)

    async def _write_forever(self) -> None:
        while True:
            message = await self._outbox.get()
            if message is None:
                await self.ws.close()
                return
            try:
                await self.ws.send_json(message)
            except (ConnectionError, RuntimeError):
                return

    @property
    def participant_id(self) -> str | None:
        return self.participant.id if self.participant else None

    # -- input -----------------------------------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.ensure_future(self._write_forever())
        try:
            async for frame in self.ws:
                if frame.type == WSMsgType.TEXT:
                    await self.handle_frame(frame.data)
                elif frame.type == WSMsgType.BINARY:
                    self.send(ProtocolError("bad-json", "binary frames are not accepted").to_json())
                elif frame.type == WSMsgType.ERROR:
                    logger.info("websocket error: %s", self.ws.exception())
                    break
                if self._closing:
                    break
        finally:
            await self.leave()
            self._outbox.put_nowait(None)
            try:
                await asyncio.wait_for(writer, 2.0)
            except (TimeoutError, asyncio.CancelledError):
                writer.cancel()

    async def handle_frame(self, raw: str) -> None:
        ref: str | None = None
        try:
            # A quick character count first: a str has at least as many bytes as characters.
            size = len(raw)
            if size > self.config.max_message_bytes or (
                size * 4 > self.config.max_message_bytes
                and (size := len(raw.encode("utf-8", "surrogatepass")))
                > self.config.max_message_bytes
            ):
                raise ProtocolError(
                    "too-large",
                    f"message of {size} bytes exceeds the limit of "
                    f"{self.config.max_message_bytes}",
                )
            message = decode(raw)
            ref = message.__struct_config__.tag  # type: ignore[assignment]
            if self.participant is None and not isinstance(message, Join | Ping):
                if self._waiting is None:
                    raise ProtocolError("not-joined", "send `join` first", ref)
                if not isinstance(message, Leave):  # a lobby guest may only wait or go
                    raise ProtocolError("in-lobby", "waiting for the host to let you in", ref)
            await self._handlers[type(message)](message)
        except ProtocolError as exc:
            if exc.ref is None:
                exc.ref = ref
            self.send(exc.to_json())
        except Exception:
            reference = uuid.uuid4().hex[:8]
            logger.exception("internal error [%s] handling %s", reference, ref)
            self.send(
                ProtocolError("internal", f"server error (reference {reference})", ref).to_json()
            )

    # -- handlers --------------------------------------------------------------------------------

    async def on_join(self, message: Join) -> None:
        if self._session_id is not None:
            raise ProtocolError("already-joined", f"already in room {self.room_name!r}")
        session_id = uuid.uuid4().hex[:12]
        if self.control is None:  # no control plane (media-only tests): everyone is a member
            self._session_id, self.room_name = session_id, message.room
            self.sessions.add(session_id, self)
            await self.finish_join(Admitted(message.room, session_id, f"anon:{session_id}",
                                            message.name, "member", True, True))
            return
        credentials = Credentials(
            name=message.name, token=message.token, username=message.username,
            password=message.password, room_password=message.room_password,
            invite=message.invite, endpoint_id=message.endpoint_id,
            endpoint_secret=message.endpoint_secret, take_over=message.take_over,
        )
        outcome = await self.control.admission.admit(message.room, credentials, self.address,
                                                     session_id)
        self._session_id, self.room_name = session_id, message.room
        self.sessions.add(session_id, self)
        if isinstance(outcome, Waiting):
            self._waiting = outcome
            self.send({"type": "lobby", "room": message.room, "participant_id": session_id})
            logger.info("%s waits in the lobby of %r", message.name, message.room)
            return
        await self.finish_join(outcome)

    async def finish_join(self, admitted: Admitted) -> None:
        """Seated (at once, or by a host from the lobby): enter the media room."""
        self._waiting = None
        if admitted.replaced_session:
            old = self.sessions.get(admitted.replaced_session)
            if old is not None and old is not self:
                await old.kick("taken-over", release=False)
        self.admitted = admitted
        locked = await self._room_locked(admitted.room)  # before joining: no await after it
        room = self.worker.room(admitted.room)
        others = [p.describe() for p in room.participants.values()]
        self.participant = self.worker.join(
            admitted.room, admitted.session_id, admitted.name, self.send, self._send_offer
        )
        # Queued before anything the room may send on our behalf, so `joined` comes first.
        self.send({
            "type": "joined", "participant_id": admitted.session_id, "room": admitted.room,
            "participants": others, "role": admitted.role,
            "can_publish": admitted.can_publish, "can_subscribe": admitted.can_subscribe,
            "rejoin_token": admitted.rejoin_token, "pinned": room.pinned,
            "locked": locked,
            "ice_servers": [{"urls": url} for url in self.worker.config.ice_servers],
        })
        logger.info("%s (%s, %s) joined room %r", admitted.name, admitted.session_id,
                    admitted.role, admitted.room)

    async def _room_locked(self, room: str) -> bool:
        if self.control is None:
            return False
        stored = await self.control.store.find_room(room)
        return bool(stored is not None and stored.locked)

    async def _send_offer(self, sdp: str, tracks: dict[str, dict[str, str]]) -> None:
        self.send({"type": "subscribe_offer", "sdp": sdp, "tracks": tracks})

    async def on_publish(self, message: Publish) -> None:
        assert self.participant is not None and self.participant.publisher is not None
        if self.admitted is not None and not self.admitted.can_publish:
            raise ProtocolError("not-allowed", "this join does not allow publishing")
        try:
            answer = await self.participant.publisher.answer(message.sdp)
        except Exception as exc:  # aiortc raises ValueError, but also AssertionError etc.
            raise ProtocolError("bad-sdp", f"cannot use this offer: {_describe(exc)}") from None
        self.send({"type": "publish_answer", "sdp": answer})

    async def on_subscribe_answer(self, message: SubscribeAnswer) -> None:
        assert self.participant is not None and self.participant.subscriber is not None
        try:
            check_answer(message.sdp)
        except Exception as exc:  # aiortc's parser raises all sorts; the offer stays pending
            raise ProtocolError("bad-sdp", f"cannot use this answer: {describe_error(exc)}",
                                "subscribe_answer") from None
        if not self.participant.subscriber.set_answer(message.sdp):
            raise ProtocolError("bad-state", "no subscribe_offer is waiting for an answer")

    async def on_ice(self, message: Ice) -> None:
        assert self.participant is not None
        connection = (
            self.participant.publisher if message.target == "publisher"
            else self.participant.subscriber
        )
        assert connection is not None
        if message.target == "subscriber":
            # The browser trickles right after its answer, which we apply in another task.
            await self.participant.subscriber.wait_described(ICE_WAIT_S)  # type: ignore[union-attr]
        if connection.pc.remoteDescription is None:
            raise ProtocolError("bad-state", f"no {message.target} description yet for ICE")
        init = message.candidate
        if init is None or not init.candidate:
            await connection.pc.addIceCandidate(None)  # end of candidates
            return
        try:
            candidate = candidate_from_sdp(init.candidate.removeprefix("candidate:"))
            check_candidate(candidate)
        except Exception as exc:
            raise ProtocolError("bad-message", f"bad ICE candidate: {_describe(exc)}") from None
        candidate.sdpMid = init.sdpMid
        candidate.sdpMLineIndex = init.sdpMLineIndex
        if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
            candidate.sdpMLineIndex = 0
        try:
            await connection.pc.addIceCandidate(candidate)
        except Exception as exc:
            raise ProtocolError("bad-message", f"ICE candidate refused: {_describe(exc)}") from None

    async def on_mute(self, message: Mute) -> None:
        assert self.participant is not None and self.room_name is not None
        room = self.worker.rooms.get(self.room_name)
        if room is not None:
            room.set_muted(self.participant, Kind(message.kind), message.muted)

    async def on_tiles(self, message: Tiles) -> None:
        assert self.participant is not None and self.participant.subscriber is not None
        self.participant.subscriber.set_tiles({
            tile.participant_id: Tile(tile.width, tile.height, tile.visible)
            for tile in message.tiles
        })

    async def on_audio_only(self, message: AudioOnly) -> None:
        assert self.participant is not None and self.participant.subscriber is not None
        self.participant.subscriber.set_user_audio_only(message.enabled)

    async def on_uplink(self, message: Uplink) -> None:
        assert self.participant is not None
        self.participant.uplink_estimate_bps = message.available_bps

    async def on_leave(self, message: Leave) -> None:
        await self.leave()
        self.send({"type": "left", "reason": "requested"})
        self._closing = True
        self._outbox.put_nowait(None)

    async def on_ping(self, message: Ping) -> None:
        self.send({"type": "pong", "id": message.id})

    async def leave(self, release: bool = True) -> None:
        participant, room_name, session_id = self.participant, self.room_name, self._session_id
        self.participant = None
        # The seat first: closing the media (peer connections) can take a while, and a
        # waiting participant should not find the room full meanwhile.
        if session_id is not None:
            self.sessions.discard(session_id, self)
            if release and self.control is not None and room_name is not None:
                identity = self.admitted.identity if self.admitted else (
                    self._waiting.principal.identity if self._waiting else "")
                self.control.admission.release(room_name, identity, session_id)
        self._waiting = None
        if participant is not None and room_name is not None:
            await self.worker.leave(room_name, participant.id)
            logger.info("%s left room %r", participant.id, room_name)

    async def kick(self, reason: str, release: bool = True) -> None:
        """Moderation or take-over: tell the client why, leave, and close the socket."""
        self.send({"type": "left", "reason": reason})
        await self.leave(release=release)
        self._closing = True
        self._outbox.put_nowait(None)


CANDIDATE_TYPES = {"host", "srflx", "prflx", "relay"}


def check_candidate(candidate: RTCIceCandidate) -> None:
    """aioice trusts what it is given: a port of 99999 later kills the ICE socket."""
    if not 0 < candidate.port < 65536:
        raise ValueError(f"port {candidate.port} is out of range")
    if candidate.protocol.lower() not in ("udp", "tcp"):
        raise ValueError(f"protocol {candidate.protocol!r} is not udp or tcp")
    if candidate.type not in CANDIDATE_TYPES:
        raise ValueError(f"type {candidate.type!r} is not one of {sorted(CANDIDATE_TYPES)}")
    if not candidate.ip.endswith(".local"):
        ipaddress.ip_address(candidate.ip)  # ValueError names the bad address


def _describe(exc: BaseException) -> str:
    """A message naming the problem even when aiortc raises a bare AssertionError/KeyError."""
    text = str(exc)
    name = type(exc).__name__
    if not text or isinstance(exc, AssertionError | KeyError | IndexError):
        text = f"{name}{': ' + text if text else ''} (malformed or unsupported SDP)"
    return text[:200]
