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
from sfu.events import MediaEvent, Removed
from sfu.plane import MediaPlane, NotDescribed, Target
from sfu.types import Kind
from signaling.admission import Admitted, Credentials, Waiting
from signaling.config import Config
from signaling.control import ControlPlane
from signaling.media_events import participant_json, to_json
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

OUTBOX_LIMIT = 1000
"""Messages queued for a client that does not read; beyond this the client is disconnected."""


class Session:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        plane: MediaPlane,
        config: Config,
        control: ControlPlane | None = None,
        sessions: SessionRegistry | None = None,
        address: str = "?",
    ) -> None:
        self.ws = ws
        self.plane = plane
        self.config = config
        self.control = control
        self.sessions = sessions if sessions is not None else SessionRegistry()
        self.address = address
        self.participant_id: str | None = None  # set while in the media room
        self._early_events: list[MediaEvent] | None = None
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

    def on_media_event(self, event: MediaEvent) -> None:
        """The media plane's events for this participant, as client messages."""
        if self._early_events is not None:
            self._early_events.append(event)  # `joined` is not queued yet
            return
        self.send(to_json(event))
        if isinstance(event, Removed):
            self.participant_id = None  # the media plane already took us out
            self._closing = True
            self._outbox.put_nowait(None)

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
            if self.participant_id is None and not isinstance(message, Join | Ping):
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
                                                     session_id, connection=f"{id(self):x}")
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
        # `joined` is queued before anything the room may send on our behalf: events wait here
        # until it is (the plane tells the others synchronously inside join).
        self._early_events = []
        before = self.plane.join(admitted.room, admitted.session_id, admitted.name,
                                 self.on_media_event)
        self.participant_id = admitted.session_id
        self.send({
            "type": "joined", "participant_id": admitted.session_id, "room": admitted.room,
            "participants": [participant_json(p) for p in before.participants],
            "role": admitted.role,
            "can_publish": admitted.can_publish, "can_subscribe": admitted.can_subscribe,
            "rejoin_token": admitted.rejoin_token, "pinned": before.pinned,
            "locked": locked,
            "ice_servers": [{"urls": url} for url in self.plane.ice_servers],
        })
        early, self._early_events = self._early_events, None
        for event in early:
            self.on_media_event(event)
        logger.info("%s (%s, %s) joined room %r", admitted.name, admitted.session_id,
                    admitted.role, admitted.room)

    async def _room_locked(self, room: str) -> bool:
        if self.control is None:
            return False
        stored = await self.control.store.find_room(room)
        return bool(stored is not None and stored.locked)

    async def on_publish(self, message: Publish) -> None:
        room, participant_id = self._in_room()
        if self.admitted is not None and not self.admitted.can_publish:
            raise ProtocolError("not-allowed", "this join does not allow publishing")
        try:
            answer = await self.plane.publish(room, participant_id, message.sdp)
        except Exception as exc:  # aiortc raises ValueError, but also AssertionError etc.
            raise ProtocolError("bad-sdp", f"cannot use this offer: {_describe(exc)}") from None
        self.send({"type": "publish_answer", "sdp": answer})

    async def on_subscribe_answer(self, message: SubscribeAnswer) -> None:
        room, participant_id = self._in_room()
        if not self.plane.subscribe_answer(room, participant_id, message.sdp):
            raise ProtocolError("bad-state", "no subscribe_offer is waiting for an answer")

    async def on_ice(self, message: Ice) -> None:
        room, participant_id = self._in_room()
        target = Target(message.target)
        init = message.candidate
        if init is None or not init.candidate:
            await self._add_candidate(room, participant_id, target, None)  # end of candidates
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
        await self._add_candidate(room, participant_id, target, candidate)

    async def _add_candidate(self, room: str, participant_id: str, target: Target,
                             candidate: RTCIceCandidate | None) -> None:
        try:
            await self.plane.add_ice_candidate(room, participant_id, target, candidate)
        except NotDescribed as exc:
            raise ProtocolError("bad-state", str(exc)) from None
        except Exception as exc:
            raise ProtocolError("bad-message", f"ICE candidate refused: {_describe(exc)}") from None

    async def on_mute(self, message: Mute) -> None:
        room, participant_id = self._in_room()
        self.plane.set_muted(room, participant_id, Kind(message.kind), message.muted)

    async def on_tiles(self, message: Tiles) -> None:
        room, participant_id = self._in_room()
        self.plane.set_tiles(room, participant_id, {
            tile.participant_id: Tile(tile.width, tile.height, tile.visible)
            for tile in message.tiles
        })

    async def on_audio_only(self, message: AudioOnly) -> None:
        room, participant_id = self._in_room()
        self.plane.set_audio_only(room, participant_id, message.enabled)

    async def on_uplink(self, message: Uplink) -> None:
        room, participant_id = self._in_room()
        self.plane.set_uplink_estimate(room, participant_id, message.available_bps)

    def _in_room(self) -> tuple[str, str]:
        """(room, participant id); handlers past the join check run only while in the room."""
        if self.participant_id is None or self.room_name is None:
            raise ProtocolError("not-joined", "not in a room")
        return self.room_name, self.participant_id

    async def on_leave(self, message: Leave) -> None:
        await self.leave()
        self.send({"type": "left", "reason": "requested"})
        self._closing = True
        self._outbox.put_nowait(None)

    async def on_ping(self, message: Ping) -> None:
        self.send({"type": "pong", "id": message.id})

    async def leave(self, release: bool = True) -> None:
        participant_id, room_name, session_id = (
            self.participant_id, self.room_name, self._session_id)
        self.participant_id = None
        # The seat first: closing the media (peer connections) can take a while, and a
        # waiting participant should not find the room full meanwhile.
        if session_id is not None:
            self.sessions.discard(session_id, self)
            if release and self.control is not None and room_name is not None:
                identity = self.admitted.identity if self.admitted else (
                    self._waiting.principal.identity if self._waiting else "")
                self.control.admission.release(room_name, identity, session_id)
        self._waiting = None
        if participant_id is not None and room_name is not None:
            await self.plane.leave(room_name, participant_id)
            logger.info("%s left room %r", participant_id, room_name)

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
