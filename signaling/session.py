"""One participant's WebSocket session: decode, dispatch through a table of handlers, reply.

Every failure of one message becomes an ``error`` to its sender; nothing a client sends can take
the session's task down, let alone the room or the server.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from aiortc import RTCIceCandidate
from aiortc.sdp import candidate_from_sdp

from sfu.events import AudioOnlyChanged, MediaEvent, ParticipantLeft, Removed, SubscribeOffer
from sfu.plane import BadDescription, MediaPlane, NotDescribed, Target
from sfu.policy.downlink import Tile
from sfu.subscriber_negotiator import describe_error
from sfu.types import Kind
from signaling.admission import Admitted, Credentials, Waiting
from signaling.auth import JoinRefused
from signaling.candidates import check_candidate, strip_refused_candidates
from signaling.cluster.directory import lobby_extras
from signaling.config import Config
from signaling.control import ControlPlane, RecordingHooks
from signaling.limits import (
    MAX_SHOWN_PER_10S,
    MAX_TRICKLED_CANDIDATES,
    LimitExceeded,
    Window,
    announced_scopes,
    check_answer,
    check_offer,
    count_sections,
    refused_candidate_address,
)
from signaling.logsetup import bind_log_context
from signaling.media_events import participant_json, to_json
from signaling.meeting_log import MeetingLog
from signaling.messages import (
    AudioOnly,
    Chat,
    ChatDelete,
    Documents,
    Hand,
    Ice,
    Join,
    Leave,
    Mute,
    Ping,
    ProtocolError,
    Publish,
    Quality,
    Shown,
    SubscribeAnswer,
    Tiles,
    Uplink,
    decode,
)
from signaling.moderation import SessionRegistry
from signaling.resume import hold, resume_join, should_hold

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
        on_admitted: Callable[[], None] | None = None,
        refusals: Counter[str] | None = None,
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
        self._relay_layers = False  # join asked for every simulcast layer (a relay)
        self._closing = False
        self._close_code = WSCloseCode.OK
        self._leave_reason = "disconnected"  # for the event record (issue 13)
        self._on_admitted = on_admitted  # called once: joined, or waiting in the lobby
        self.refusals: Counter[str] = refusals if refusals is not None else Counter()
        self._offers = Window(config.max_offers_per_minute, 60.0)
        self._shown = Window(MAX_SHOWN_PER_10S, 10.0)
        self._trickled = {"publisher": 0, "subscriber": 0}
        # Candidates we passed on, per connection: see on_ice's end of candidates.
        self._usable = {"publisher": 0, "subscriber": 0}
        self._described = {"publisher": False, "subscriber": False}
        self._offer_sdp_bytes = 0  # size of the last subscribe_offer, bounds its answer
        self._offer_sections = 0
        self._candidate_scopes = announced_scopes(config.media.ice_addresses)
        # Automatic reconnection (signaling/resume.py): this seat's resume token; `held` is set
        # when a held seat is taken back or left.
        self.resume_token: str | None = None
        self.held = asyncio.Event()
        self.holding = False
        self.handed_over = False
        self._handlers: dict[type, Callable[[Any], Awaitable[None]]] = {
            Join: self.on_join,
            Publish: self.on_publish,
            SubscribeAnswer: self.on_subscribe_answer,
            Ice: self.on_ice,
            Mute: self.on_mute,
            Tiles: self.on_tiles,
            Shown: self.on_shown,
            AudioOnly: self.on_audio_only,
            Uplink: self.on_uplink,
            Leave: self.on_leave,
            Ping: self.on_ping,
            # meeting extras (issue 12): signaling/room_extras.py
            Chat: lambda m: self.sessions.extras.on_chat(self, m),
            ChatDelete: lambda m: self.sessions.extras.on_chat_delete(self, m),
            Hand: lambda m: self.sessions.extras.on_hand(self, m),
            Quality: lambda m: self.sessions.extras.on_quality(self, m),
            Documents: lambda m: self.sessions.extras.on_documents(self),
        }

    # -- output ----------------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message (callable from synchronous room code); one writer keeps order."""
        if self._closing or self.holding or self.handed_over:
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
                await self.ws.close(code=self._close_code)
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
        if isinstance(event, ParticipantLeft) and \
                event.participant_id in self.sessions.resume.handing_over:
            return  # a seat moving to its new connection: the others see no leave
        if isinstance(event, SubscribeOffer):  # what its answer may be measured against
            self._offer_sdp_bytes, self._offer_sections = len(event.sdp), count_sections(event.sdp)
        self.send(to_json(event))
        if isinstance(event, AudioOnlyChanged) and self._meetings is not None \
                and self.room_name is not None and self.participant_id is not None:
            self._meetings.audio_only(self.room_name, self.participant_id,
                                      event.direction.value, event.audio_only, event.reason,
                                      event.estimate_bps)
        if isinstance(event, Removed):
            self._left_meeting("removed")
            self.participant_id = None  # the media plane already took us out
            self._closing = True
            self._outbox.put_nowait(None)

    # -- input -----------------------------------------------------------------------------------

    @property
    def admitted_or_waiting(self) -> bool:
        return self.participant_id is not None or self._waiting is not None

    def _close_after(self, error: ProtocolError, code: WSCloseCode, reason: str) -> None:
        """Tell the client why, then close the socket (after what is queued before)."""
        self.refusals[reason] += 1
        self.send(error.to_json())
        self._close_code = code
        self._closing = True
        self._outbox.put_nowait(None)

    def _join_deadline(self) -> None:
        if self.admitted_or_waiting or self._closing:
            return
        logger.info("socket from %s did not join within %.0f s; closing", self.address,
                    self.config.join_timeout_s)
        self._close_after(
            ProtocolError("join-timeout", f"no successful `join` within "
                          f"{self.config.join_timeout_s:g} s; closing"),
            WSCloseCode.POLICY_VIOLATION, "join-timeout")

    async def run(self) -> None:
        writer = asyncio.ensure_future(self._write_forever())
        deadline = asyncio.get_running_loop().call_later(self.config.join_timeout_s,
                                                         self._join_deadline)
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
            deadline.cancel()
            if not (should_hold(self, self.ws.close_code) and await hold(self)):
                await self.leave()
            self._outbox.put_nowait(None)
            try:
                await asyncio.wait_for(writer, 2.0)
            except (TimeoutError, asyncio.CancelledError):
                writer.cancel()
            # Its bound methods held by itself: a cycle only the collector could free.
            self._handlers.clear()

    async def handle_frame(self, raw: str) -> None:
        ref: str | None = None
        try:
            # Until seated a socket is anybody's (a lobby guest may only ping or leave): a
            # small limit (aiohttp has read the frame already, at most max_message_bytes;
            # closing the socket stops a second one).
            joined = self.participant_id is not None
            limit = self.config.max_message_bytes if joined else \
                self.config.prejoin_max_message_bytes
            # A quick character count first: a str has at least as many bytes as characters.
            size = len(raw)
            if size > limit or (
                size * 4 > limit
                and (size := len(raw.encode("utf-8", "surrogatepass"))) > limit
            ):
                error = ProtocolError(
                    "too-large", f"message of {size} bytes exceeds the limit of {limit}"
                    + ("" if joined else " before `join` (or in the lobby); closing"))
                if not joined:
                    self._close_after(error, WSCloseCode.MESSAGE_TOO_BIG, "too-large-prejoin")
                    return
                raise error
            message = decode(raw)
            tag = message.__struct_config__.tag  # str | int | None to msgspec; ours are all str
            ref = tag if isinstance(tag, str) else None
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
        except LimitExceeded as exc:
            self.refusals[exc.what] += 1
            reply = ProtocolError("limit-exceeded", str(exc), ref).to_json()
            reply["limit"] = exc.limit
            self.send(reply)
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
        if message.resume is not None:
            await resume_join(self, message)
            return
        session_id = uuid.uuid4().hex[:12]
        self._relay_layers = message.relay_layers
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
        try:
            outcome = await self.control.admission.admit(message.room, credentials, self.address,
                                                         session_id, connection=f"{id(self):x}")
        except JoinRefused as exc:
            if self.control.events is not None:
                self.control.events.refused(message.room, message.name, exc.code, self.address)
            raise
        self._session_id, self.room_name = session_id, message.room
        self.sessions.add(session_id, self)
        if isinstance(outcome, Waiting):
            self._waiting = outcome
            self._admitted()
            self.send({"type": "lobby", "room": message.room, "participant_id": session_id,
                       **lobby_extras(self.control.admission.cluster, outcome)})
            logger.info("%s waits in the lobby of %r", message.name, message.room)
            return
        await self.finish_join(outcome)

    async def finish_join(self, admitted: Admitted) -> None:
        """Seated (at once, or by a host from the lobby): enter the media room."""
        # Every log line of this task and of those it starts from here names room and participant.
        bind_log_context(admitted.room, admitted.session_id)
        self._waiting = None
        if admitted.replaced_session:
            old = self.sessions.get(admitted.replaced_session)
            if old is not None and old is not self:
                await old.kick("taken-over", release=False)
        self.admitted = admitted
        self._admitted()
        locked = await self._room_locked(admitted.room)  # before joining: no await after it
        meeting = await self.sessions.extras.joining(self, admitted)  # chat, hands (issue 12)
        # `joined` is queued before anything the room may send on our behalf: events wait here
        # until it is (the plane tells the others synchronously inside join).
        self._early_events = []
        before = self.plane.join(admitted.room, admitted.session_id, admitted.name,
                                 self.on_media_event, all_layers=self._relay_layers and (
                                     admitted.role == "relay"
                                     or admitted.identity.startswith(("open:", "anon:"))))
        self.participant_id = admitted.session_id
        self.sessions.extras.joined(self, admitted)  # a pin kept by the sitting (--redis)
        self.resume_token = self.sessions.resume.issue(self)
        cluster = self.control.admission.cluster if self.control is not None else None
        self.send({
            "type": "joined", "participant_id": admitted.session_id, "room": admitted.room,
            "participants": [participant_json(p) for p in before.participants],
            "role": admitted.role,
            "can_publish": admitted.can_publish, "can_subscribe": admitted.can_subscribe,
            "rejoin_token": admitted.rejoin_token, "pinned": before.pinned,
            "locked": locked,
            "resume_token": self.resume_token,
            "reconnect_grace_s": self.config.reconnect_grace_s,
            "ice_servers": [{"urls": url} for url in self.plane.ice_servers] + (
                self.config.turn.ice_servers(admitted.session_id, time.time())
                if self.config.turn is not None else []),
            "recording": self._recordings is not None
            and self._recordings.is_recording(admitted.room),
            "meeting": meeting,
            # with --redis: the other live nodes, to rejoin through if this one dies
            **({"nodes": list(cluster.node.live_peers)} if cluster is not None else {}),
        })
        early, self._early_events = self._early_events, None
        for event in early:
            self.on_media_event(event)
        logger.info("%s (%s, %s) joined room %r", admitted.name, admitted.session_id,
                    admitted.role, admitted.room)
        if self._meetings is not None:
            await self._meetings.joined(
                admitted.room, admitted.session_id, admitted.identity, admitted.name,
                admitted.role, self.address, took_over=admitted.replaced_room == admitted.room)
        if self.control is not None and self.control.events is not None:
            self.control.events.joined(admitted.room, admitted.session_id, admitted.name,
                                       admitted.identity, admitted.role)
        if self._recordings is not None:
            await self._recordings.on_joined(admitted.room)  # --record-all, auto_record

    def _admitted(self) -> None:
        if self._on_admitted is not None:
            self._on_admitted()
            self._on_admitted = None

    async def _room_locked(self, room: str) -> bool:
        if self.control is None:
            return False
        stored = await self.control.store.find_room(room)
        return bool(stored is not None and stored.locked)

    async def on_publish(self, message: Publish) -> None:
        room, participant_id = self._in_room()
        if self.admitted is not None and not self.admitted.can_publish:
            raise ProtocolError("not-allowed", "this join does not allow publishing")
        # Counted on the text, before any parser runs: 700 m= lines stalled the loop 1.5 s.
        check_offer(message.sdp)
        wait = self._offers.retry_after(asyncio.get_running_loop().time())
        if wait:
            self.refusals["offer-rate"] += 1
            error = ProtocolError("rate-limited", f"more than {self._offers.limit} offers in "
                                  f"{self._offers.period_s:g} s; retry in {wait:.0f} s")
            raise _WithFields(error, retry_after=max(1, round(wait + 0.5)))
        sdp = self._strip_refused_candidates(message.sdp)
        self._usable["publisher"] += sdp.count("\na=candidate:")
        try:
            answer = await self.plane.publish(room, participant_id, sdp,
                                              frozenset(message.screen_mids))
        except Exception as exc:  # aiortc raises ValueError, but also AssertionError etc.
            raise ProtocolError("bad-sdp",
                                f"cannot use this offer: {describe_error(exc)}") from None
        self._described["publisher"] = True
        self.send({"type": "publish_answer", "sdp": answer})

    def _strip_refused_candidates(self, sdp: str) -> str:
        sdp, dropped = strip_refused_candidates(sdp, self._candidate_scopes)
        for scope, ip in dropped:
            self.refusals["candidate-address"] += 1
            logger.info("dropped a %s ICE candidate (%s) from an offer", scope, ip)
        return sdp

    async def on_subscribe_answer(self, message: SubscribeAnswer) -> None:
        room, participant_id = self._in_room()
        check_answer(message.sdp, self._offer_sections, self._offer_sdp_bytes)
        self._usable["subscriber"] += message.sdp.count("\na=candidate:")
        try:
            accepted = self.plane.subscribe_answer(room, participant_id, message.sdp)
        except BadDescription as exc:  # the offer stays pending
            raise ProtocolError("bad-sdp", f"cannot use this answer: {exc}",
                                "subscribe_answer") from None
        if not accepted:
            raise ProtocolError("bad-state", "no subscribe_offer is waiting for an answer")
        self._described["subscriber"] = True

    async def on_ice(self, message: Ice) -> None:
        room, participant_id = self._in_room()
        target = Target(message.target)
        init = message.candidate
        if init is None or not init.candidate:
            # End of candidates. When we refused every one (a client on a changed network may
            # list only loopback at first), aioice would fail at once with nothing to check;
            # without the end it keeps listening, and the client's checks from its real
            # address arrive as a peer-reflexive candidate.
            if self._usable[message.target] or not self._described[message.target]:
                await self._add_candidate(room, participant_id, target, None)  # or bad-state
            return
        if self._trickled[message.target] >= MAX_TRICKLED_CANDIDATES:
            raise LimitExceeded("trickled-candidates", MAX_TRICKLED_CANDIDATES,
                                f"more than {MAX_TRICKLED_CANDIDATES} ICE candidates for the "
                                f"{message.target} connection")
        try:
            candidate = candidate_from_sdp(init.candidate.removeprefix("candidate:"))
            check_candidate(candidate)
            scope = refused_candidate_address(candidate.ip, self._candidate_scopes)
        except Exception as exc:
            raise ProtocolError("bad-message",
                                f"bad ICE candidate: {describe_error(exc)}") from None
        self._trickled[message.target] += 1  # counted once well-formed: refused ones too
        if scope is not None:
            self.refusals["candidate-address"] += 1
            raise ProtocolError("candidate-refused", f"ICE candidate address {candidate.ip} is "
                                f"{scope}; this server does not send media there")
        candidate.sdpMid = init.sdpMid
        candidate.sdpMLineIndex = init.sdpMLineIndex
        if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
            candidate.sdpMLineIndex = 0
        await self._add_candidate(room, participant_id, target, candidate)
        self._usable[message.target] += 1

    async def _add_candidate(self, room: str, participant_id: str, target: Target,
                             candidate: RTCIceCandidate | None) -> None:
        try:
            await self.plane.add_ice_candidate(room, participant_id, target, candidate)
        except NotDescribed as exc:
            raise ProtocolError("bad-state", str(exc)) from None
        except Exception as exc:
            raise ProtocolError("bad-message",
                                f"ICE candidate refused: {describe_error(exc)}") from None

    async def on_mute(self, message: Mute) -> None:
        room, participant_id = self._in_room()
        self.plane.set_muted(room, participant_id, Kind(message.kind), message.muted)

    async def on_tiles(self, message: Tiles) -> None:
        room, participant_id = self._in_room()
        self.plane.set_tiles(room, participant_id, {
            tile.participant_id: Tile(tile.width, tile.height, tile.visible)
            for tile in message.tiles
        })

    async def on_shown(self, message: Shown) -> None:
        room, participant_id = self._in_room()
        if self._shown.retry_after(asyncio.get_running_loop().time()):
            self.refusals["shown-rate"] += 1
            raise ProtocolError("rate-limited", f"more than {MAX_SHOWN_PER_10S} `shown` "
                                "messages in 10 s; this one is ignored", "shown")
        self.plane.set_shown(room, participant_id, list(dict.fromkeys(message.participant_ids)))

    async def on_audio_only(self, message: AudioOnly) -> None:
        room, participant_id = self._in_room()
        self.plane.set_audio_only(room, participant_id, message.enabled)

    async def on_uplink(self, message: Uplink) -> None:
        room, participant_id = self._in_room()
        self.plane.set_uplink_estimate(room, participant_id, message.available_bps)

    @property
    def _meetings(self) -> MeetingLog | None:
        return self.control.meetings if self.control is not None else None

    def _left_meeting(self, reason: str) -> None:
        if self._meetings is not None and self.room_name is not None \
                and self.participant_id is not None:
            self._meetings.left(self.room_name, self.participant_id, reason, self.address)

    @property
    def _recordings(self) -> RecordingHooks | None:
        return self.control.recordings if self.control is not None else None

    def _in_room(self) -> tuple[str, str]:
        """(room, participant id); handlers past the join check run only while in the room."""
        if self.participant_id is None or self.room_name is None:
            raise ProtocolError("not-joined", "not in a room")
        return self.room_name, self.participant_id

    async def on_leave(self, message: Leave) -> None:
        self._leave_reason = "requested"
        await self.leave()
        self.send({"type": "left", "reason": "requested"})
        self._closing = True
        self._outbox.put_nowait(None)

    async def on_ping(self, message: Ping) -> None:
        self.send({"type": "pong", "id": message.id})

    async def leave(self, release: bool = True) -> None:
        if self.handed_over:  # the seat (and this session id) lives on in a resumed session
            self.participant_id = None
            return
        self._left_meeting(self._leave_reason)
        participant_id, room_name, session_id = (
            self.participant_id, self.room_name, self._session_id)
        self.participant_id = None
        self.sessions.resume.revoke(self.resume_token)
        self.resume_token = None
        self.held.set()  # a held seat that is left (removed, ended) waits no longer
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
            self.sessions.extras.on_left(room_name, participant_id)
            await self.plane.leave(room_name, participant_id)
            logger.info("%s left room %r", participant_id, room_name)
            if self.control is not None and self.control.events is not None:
                self.control.events.left(room_name, participant_id)
            if self._recordings is not None:
                await self._recordings.on_left(room_name)

    @property
    def closing(self) -> bool:
        return self._closing

    def close_socket(self, code: WSCloseCode) -> None:
        """Close our socket after what is queued (a seat taken back from a half-open one)."""
        self._close_code = code
        self._closing = True
        self._outbox.put_nowait(None)

    def adopt(self, old: Session) -> None:
        """Take over ``old``'s seat (resume): same participant id, same room."""
        self._session_id, self.room_name = old._session_id, old.room_name
        if self._session_id is not None:
            self.sessions.add(self._session_id, self)

    async def kick(self, reason: str, release: bool = True) -> None:
        """Moderation or take-over: tell the client why, leave, and close the socket."""
        self.send({"type": "left", "reason": reason})
        self._leave_reason = reason
        await self.leave(release=release)
        self._closing = True
        self._outbox.put_nowait(None)


class _WithFields(ProtocolError):
    """A ProtocolError with extra fields in its ``error`` (``retry_after``, ``limit``)."""

    def __init__(self, error: ProtocolError, **fields: object) -> None:
        super().__init__(error.code, error.message, error.ref)
        self.fields = fields

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), **self.fields}
