"""The media plane as SFU worker processes, one per core: ``diemcau serve --workers N``.

``WorkerPool`` implements ``sfu.plane.MediaPlane`` in the signaling process. Each worker process
(``sfu/plane_server.py``) owns whole rooms: a room is placed, when it first appears, on the live
worker with the fewest participants (then rooms), and stays there until it empties; a room never
spans two processes. Calls go over ``sfu/plane_wire.py``; typed events come back and are
delivered to the participant's sink as the in-process ``Worker`` would.

The interface's synchronous answers come from the pool's own view of each room (who is in it,
muted, pinned; whether a subscriber offer awaits an answer), kept here because every change to
them passes through here: ``join`` returns the room as it was, ``room_state`` and ``stats`` never
wait for a worker. Subscribe answers are checked (``check_answer``) here, so a bad one is refused
at once as before.

A worker that dies or hangs ends only its rooms: each participant's sink gets
``Removed(MEDIA_WORKER_LOST)``, local subscribers lose their tracks, ``on_room_lost`` callbacks
run (the recording service stops those recordings cleanly), and the worker is restarted, at most
``MAX_RESTARTS`` times per ``RESTART_WINDOW_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aiortc.sdp import candidate_to_sdp

from sfu.consumer import PacketWriter
from sfu.diagnostics import ParticipantDiagnostics
from sfu.events import (
    EventSink,
    LeaveReason,
    ParticipantState,
    Removed,
    SubscribeOffer,
)
from sfu.local_subscriber import LocalSubscriber, TrackInfo
from sfu.plane import (
    BadDescription,
    NotDescribed,
    PlaneStats,
    RoomState,
    Target,
    UnknownParticipant,
)
from sfu.plane_process import WorkerLost, WorkerProcess
from sfu.plane_relay import RemotePublication
from sfu.plane_wire import (
    AddIce,
    Call,
    Event,
    IceCandidate,
    Join,
    Leave,
    LocalRtp,
    LocalSenderReport,
    LocalTrack,
    LocalTrackRemoved,
    Pin,
    Publish,
    RelayKeyframeWanted,
    RelayPublish,
    Reply,
    Report,
    RequestKeyframe,
    SetAudioOnly,
    SetMuted,
    SetShown,
    SetTiles,
    SetUplink,
    Stats,
    SubscribeAnswer,
    SubscribeLocal,
    UnsubscribeLocal,
    decode_event,
)
from sfu.policy.downlink import Tile
from sfu.relay import Publication
from sfu.subscriber_negotiator import check_answer, describe_error
from sfu.types import Kind
from sfu.worker import MediaConfig

logger = logging.getLogger(__name__)

MAX_RESTARTS = 5
RESTART_WINDOW_S = 300.0
"""A worker slot is restarted at most MAX_RESTARTS times in this window; then it stays down
(logged) and its share of rooms goes to the others."""
RESTART_DELAY_S = 0.5
"""First wait before a restart; doubled for each recent restart of the same slot."""


class MediaUnavailable(RuntimeError):
    """No media worker is running to take a new room."""


_REMOTE_ERRORS: dict[str, type[Exception]] = {
    "unknown-participant": UnknownParticipant,
    "not-described": NotDescribed,
    "bad-description": BadDescription,
}


_BUILTIN_ERRORS: dict[str, type[Exception]] = {cls.__name__: cls for cls in (
    ValueError, AssertionError, KeyError, IndexError, LookupError, TypeError, AttributeError,
    RuntimeError, OverflowError, UnicodeError, NotImplementedError)}
_remote_types: dict[tuple[str, type[Exception]], type[Exception]] = {}
MAX_REMOTE_TYPES = 64


def _text(self: BaseException) -> str:
    return str(self.args[0]) if self.args else ""


def remote_exception(reply: Reply) -> Exception:
    """The worker's exception as signaling would have seen it in one process: an instance of
    the same kind (our own classes, or the builtin one), with the same class name and text
    (the session's error messages quote both)."""
    base = _REMOTE_ERRORS.get(reply.error or "") or _BUILTIN_ERRORS.get(reply.exception,
                                                                         RuntimeError)
    name = reply.exception if reply.exception.isidentifier() else base.__name__
    cls = _remote_types.get((name, base))
    if cls is None:
        if len(_remote_types) >= MAX_REMOTE_TYPES:
            return base(reply.message)
        cls = _remote_types[(name, base)] = type(name, (base,), {"__str__": _text})
    return cls(reply.message)


def _raise_for(reply: Reply) -> None:
    if reply.error is not None:
        raise remote_exception(reply)


@dataclass(eq=False)
class _Member:
    state: ParticipantState
    sink: EventSink
    offer_pending: bool = False


@dataclass(eq=False)
class _Local:
    subscriber: LocalSubscriber
    writers: dict[str, PacketWriter | None] = field(default_factory=dict)  # by producer id


@dataclass(eq=False)
class _Slot:
    index: int
    config: MediaConfig
    process: WorkerProcess | None = None
    stats: Stats | None = None
    rooms: set[str] = field(default_factory=set)
    restarts: deque[float] = field(default_factory=deque)  # monotonic times
    restarting: asyncio.Task[None] | None = None

    @property
    def live(self) -> bool:
        return self.process is not None and self.process.alive


@dataclass(eq=False)
class _Room:
    name: str
    slot: _Slot
    participants: dict[str, _Member] = field(default_factory=dict)
    pinned: str | None = None
    local: dict[str, _Local] = field(default_factory=dict)
    published: dict[str, RemotePublication] = field(default_factory=dict)  # relays', by id

    def state(self) -> RoomState:
        return RoomState(self.name, tuple(m.state for m in self.participants.values()),
                         self.pinned)


def split_port_range(port_range: tuple[int, int] | None, parts: int
                     ) -> list[tuple[int, int] | None]:
    """Each worker its own slice of ``--rtc-port-range`` (they cannot share a socket)."""
    if port_range is None:
        return [None] * parts
    low, high = port_range
    size = (high - low + 1) // parts
    if size < 2:
        raise ValueError(f"port range {low}-{high} is too small for {parts} media workers")
    return [(low + i * size, low + (i + 1) * size - 1) for i in range(parts)]


class WorkerPool:
    """``MediaPlane`` over ``workers`` SFU processes."""

    def __init__(self, config: MediaConfig, workers: int, log_level: str = "INFO") -> None:
        if workers < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.config = config
        self.ice_servers = config.ice_servers
        self.log_level = log_level
        self.slots = [_Slot(i, replace(config, port_range=ports)) for i, ports
                      in enumerate(split_port_range(config.port_range, workers))]
        self.rooms: dict[str, _Room] = {}
        self.retired: Counter[str] = Counter()  # totals of workers that are gone
        self.retired_drops: Counter[str] = Counter()
        self.workers_lost = 0
        self.on_room_lost: list[Callable[[str], None]] = []
        self._closing = False

    # -- lifecycle --------------------------------------------------------------------------------

    async def open(self) -> None:
        """Start every worker process; raises if none starts."""
        results = await asyncio.gather(*(self._spawn(slot) for slot in self.slots),
                                       return_exceptions=True)
        for slot, result in zip(self.slots, results, strict=True):
            if isinstance(result, BaseException):
                logger.error("media worker %d did not start: %r", slot.index, result)
                self._schedule_restart(slot)
        if not any(slot.live for slot in self.slots):
            await self.close()
            raise MediaUnavailable("no media worker process started")
        logger.info("media plane: %d worker processes (pids %s)", len(self.slots),
                    ", ".join(str(s.process.pid) for s in self.slots if s.process))

    async def _spawn(self, slot: _Slot) -> None:
        slot.process = await WorkerProcess.spawn(slot.index, slot.config, self.log_level,
                                                 self._on_report, self._on_lost)

    def start(self) -> None:
        """Nothing to arm here: each worker process runs its own timers (see ``open``)."""

    async def close(self) -> None:
        self._closing = True
        for slot in self.slots:
            if slot.restarting is not None:
                slot.restarting.cancel()
        await asyncio.gather(*(slot.process.close() for slot in self.slots
                               if slot.process is not None), return_exceptions=True)
        self.rooms.clear()

    def pids(self) -> list[int | None]:
        """Each slot's worker process id (None while it is down): for operators and tests."""
        return [slot.process.pid if slot.live and slot.process else None for slot in self.slots]

    # -- placement --------------------------------------------------------------------------------

    def _load(self, slot: _Slot) -> tuple[int, int, int]:
        people = sum(len(self.rooms[name].participants) for name in slot.rooms)
        return people, len(slot.rooms), slot.index

    def _room_for(self, room: str) -> _Room:
        live = self.rooms.get(room)
        if live is not None:
            return live
        candidates = [slot for slot in self.slots if slot.live]
        if not candidates:
            raise MediaUnavailable("no media worker is running; try again shortly")
        slot = min(candidates, key=self._load)
        live = self.rooms[room] = _Room(room, slot)
        slot.rooms.add(room)
        return live

    def _drop_if_empty(self, live: _Room) -> None:
        if not live.participants and not live.local and self.rooms.get(live.name) is live:
            del self.rooms[live.name]
            live.slot.rooms.discard(live.name)

    def _member(self, room: str, participant_id: str) -> tuple[_Room, _Member]:
        live = self.rooms.get(room)
        member = live.participants.get(participant_id) if live is not None else None
        if live is None or member is None:
            raise UnknownParticipant(participant_id)
        return live, member

    def _send(self, live: _Room, call: Call) -> None:
        process = live.slot.process
        if process is None:
            raise WorkerLost(f"the media worker of room {live.name!r} is gone")
        process.send(call)

    def _send_or_drop(self, live: _Room, call: Join | SubscribeLocal | RelayPublish) -> None:
        """Send what may have just made the room: a room nobody entered is not kept."""
        try:
            self._send(live, call)
        except WorkerLost:
            self._drop_if_empty(live)
            raise

    async def _call(self, live: _Room, make: Callable[[int], Leave | Publish | AddIce]) -> Reply:
        process = live.slot.process
        if process is None:
            raise WorkerLost(f"the media worker of room {live.name!r} is gone")
        reply = await process.call(make)
        _raise_for(reply)
        return reply

    # -- the MediaPlane interface -----------------------------------------------------------------

    def join(self, room: str, participant_id: str, name: str, events: EventSink,
             all_layers: bool = False) -> RoomState:
        live = self._room_for(room)
        before = live.state()
        self._send_or_drop(live, Join(room, participant_id, name, all_layers))
        live.participants[participant_id] = _Member(ParticipantState(participant_id, name),
                                                    events)
        return before

    async def leave(self, room: str, participant_id: str) -> None:
        live = self.rooms.get(room)
        if live is None or live.participants.pop(participant_id, None) is None:
            return
        live.published.pop(participant_id, None)
        self._drop_if_empty(live)
        try:
            await self._call(live, lambda i: Leave(i, room, participant_id))
        except (WorkerLost, TimeoutError) as exc:
            logger.warning("leave of %s in %r: %r", participant_id, room, exc)

    async def publish(self, room: str, participant_id: str, offer_sdp: str,
                      screen_mids: Collection[str] = ()) -> str:
        live, _ = self._member(room, participant_id)
        reply = await self._call(live, lambda i: Publish(i, room, participant_id, offer_sdp,
                                                         list(screen_mids)))
        if reply.value is None:
            raise RuntimeError("the media worker gave no answer")
        return reply.value

    def subscribe_answer(self, room: str, participant_id: str, answer_sdp: str) -> bool:
        live, member = self._member(room, participant_id)
        try:
            check_answer(answer_sdp)
        except Exception as exc:  # aiortc's parser raises all sorts
            raise BadDescription(describe_error(exc)) from None
        if not member.offer_pending:
            return False
        member.offer_pending = False
        self._send(live, SubscribeAnswer(room, participant_id, answer_sdp))
        return True

    async def add_ice_candidate(self, room: str, participant_id: str, target: Target,
                                candidate: Any | None) -> None:
        live, _ = self._member(room, participant_id)
        wire = None if candidate is None else IceCandidate(
            candidate_to_sdp(candidate), candidate.sdpMid, candidate.sdpMLineIndex)
        await self._call(live, lambda i: AddIce(i, room, participant_id, target.value, wire))

    def set_muted(self, room: str, participant_id: str, kind: Kind, muted: bool) -> None:
        live, member = self._member(room, participant_id)
        self._send(live, SetMuted(room, participant_id, kind, muted))
        member.state = (replace(member.state, audio_muted=muted) if kind is Kind.AUDIO
                        else replace(member.state, video_muted=muted))

    def pin(self, room: str, participant_id: str | None) -> None:
        live = self.rooms.get(room)
        if live is None:
            raise KeyError(room)
        if participant_id is not None and participant_id not in live.participants:
            raise UnknownParticipant(participant_id)
        self._send(live, Pin(room, participant_id))
        live.pinned = participant_id

    def set_tiles(self, room: str, participant_id: str, tiles: Mapping[str, Tile]) -> None:
        live, _ = self._member(room, participant_id)
        self._send(live, SetTiles(room, participant_id, dict(tiles)))

    def set_shown(self, room: str, participant_id: str, shown: Sequence[str]) -> None:
        live, _ = self._member(room, participant_id)
        self._send(live, SetShown(room, participant_id, list(shown)))

    def publish_local(self, room: str, participant_id: str, name: str,
                      events: EventSink) -> Publication:
        """A relay's near participant in the room's worker; its RTP crosses the socket
        (``sfu/plane_relay.py``)."""
        live = self._room_for(room)
        if participant_id in live.participants:
            raise ValueError(f"{participant_id!r} is already in {room!r}")
        self._send_or_drop(live, RelayPublish(room, participant_id, name))
        live.participants[participant_id] = _Member(ParticipantState(participant_id, name),
                                                    events)
        publication = live.published[participant_id] = RemotePublication(
            room, participant_id, lambda call: self._send(live, call))
        return publication

    def diagnostics(self, room: str) -> tuple[ParticipantDiagnostics, ...]:
        """As the room's worker last reported them (every ``STATS_INTERVAL_S``)."""
        live = self.rooms.get(room)
        if live is None:
            return ()
        report = live.slot.stats
        return tuple(report.diagnostics.get(room, ())) if report is not None else ()

    def set_audio_only(self, room: str, participant_id: str, enabled: bool) -> None:
        live, _ = self._member(room, participant_id)
        self._send(live, SetAudioOnly(room, participant_id, enabled))

    def set_uplink_estimate(self, room: str, participant_id: str, bps: int | None) -> None:
        live, _ = self._member(room, participant_id)
        self._send(live, SetUplink(room, participant_id, bps))

    def request_keyframe(self, room: str, participant_id: str) -> int:
        """Asked of the worker without waiting: returns 0 (the count is known only there)."""
        live, _ = self._member(room, participant_id)
        self._send(live, RequestKeyframe(room, participant_id))
        return 0

    def subscribe_local(self, room: str, subscriber_id: str,
                        subscriber: LocalSubscriber) -> None:
        live = self._room_for(room)
        # A relay's voices keep their audio level (the far server's extension id), and its
        # video is not wanted: the worker does not copy the room's video across for nothing.
        self._send_or_drop(live, SubscribeLocal(room, subscriber_id,
                                                getattr(subscriber, "audio_level_ext_id", 0),
                                                getattr(subscriber, "wants_video", True)))
        live.local[subscriber_id] = _Local(subscriber)

    def unsubscribe_local(self, room: str, subscriber_id: str) -> None:
        live = self.rooms.get(room)
        local = live.local.pop(subscriber_id, None) if live is not None else None
        if live is None or local is None:
            return
        for producer_id in list(local.writers):
            local.subscriber.track_removed(producer_id)
        self._drop_if_empty(live)
        with contextlib.suppress(WorkerLost):
            self._send(live, UnsubscribeLocal(room, subscriber_id))

    def room_state(self, room: str) -> RoomState | None:
        live = self.rooms.get(room)
        return live.state() if live is not None else None

    def stats(self) -> PlaneStats:
        # Rooms and participants from the pool's own view (current at once, as in one
        # process); the rest as each worker last reported it (every STATS_INTERVAL_S).
        stats = PlaneStats(rooms=len(self.rooms), totals=Counter(self.retired),
                           datagram_drops=Counter(self.retired_drops),
                           participants=sum(len(r.participants) for r in self.rooms.values()))
        stats.totals["workers_lost"] = self.workers_lost
        for slot in self.slots:
            report = slot.stats
            if report is None:
                continue
            stats.producers += report.producers
            stats.consumers += report.consumers
            stats.totals.update(report.totals)  # float seconds too
            stats.totals["recorder_packets_shed"] += report.local_dropped
            stats.paused.update(report.paused)
            stats.datagram_drops.update(report.datagram_drops)
            for key, value in report.audio_only.items():
                stats.audio_only[key] = stats.audio_only.get(key, 0) + value
        return stats

    # -- what workers report ----------------------------------------------------------------------

    def _local(self, process: WorkerProcess, room: str, subscriber: str) -> _Local | None:
        live = self.rooms.get(room)
        if live is None or live.slot.process is not process:
            return None
        return live.local.get(subscriber)

    def _on_report(self, process: WorkerProcess, report: Report) -> None:
        if isinstance(report, LocalRtp):  # the busiest report first
            local = self._local(process, report.room, report.subscriber)
            writer = local.writers.get(report.producer_id) if local is not None else None
            if writer is not None:
                writer.send_rtp(report.packet)
        elif isinstance(report, Event):
            self._on_event(process, report)
        elif isinstance(report, RelayKeyframeWanted):
            live = self.rooms.get(report.room)
            if live is not None and live.slot.process is process:
                publication = live.published.get(report.participant)
                if publication is not None:
                    publication.keyframe_wanted(report)
        elif isinstance(report, Stats):
            self.slots[process.index].stats = report
        elif isinstance(report, LocalTrack):
            local = self._local(process, report.room, report.subscriber)
            if local is not None:
                local.writers[report.producer_id] = local.subscriber.track_added(TrackInfo(
                    report.producer_id, report.participant_id, report.participant_name,
                    report.kind, report.codec))
        elif isinstance(report, LocalTrackRemoved):
            local = self._local(process, report.room, report.subscriber)
            if local is not None and report.producer_id in local.writers:
                del local.writers[report.producer_id]
                local.subscriber.track_removed(report.producer_id)
        elif isinstance(report, LocalSenderReport):
            local = self._local(process, report.room, report.subscriber)
            if local is not None and report.producer_id in local.writers:
                local.subscriber.sender_report(report.producer_id, report.ntp_timestamp,
                                               report.rtp_timestamp)

    def _on_event(self, process: WorkerProcess, report: Event) -> None:
        live = self.rooms.get(report.room)
        if live is None or live.slot.process is not process:
            return
        member = live.participants.get(report.participant)
        if member is None:
            return  # left meanwhile: in one process it would not hear this either
        event = decode_event(report)
        if isinstance(event, SubscribeOffer):
            member.offer_pending = True
        elif isinstance(event, Removed):
            del live.participants[report.participant]
            live.published.pop(report.participant, None)
            self._drop_if_empty(live)
        member.sink(event)

    def _on_lost(self, process: WorkerProcess, reason: str) -> None:
        slot = self.slots[process.index]
        if slot.process is not process:
            return
        self.workers_lost += 1
        if slot.stats is not None:  # counters stay monotonic across the loss
            self.retired.update(slot.stats.totals)  # float seconds too
            self.retired["recorder_packets_shed"] += slot.stats.local_dropped
            self.retired_drops.update(slot.stats.datagram_drops)
        slot.stats = None
        lost = [self.rooms.pop(name) for name in sorted(slot.rooms) if name in self.rooms]
        slot.rooms.clear()
        logger.error("media worker %d (pid %d) lost: %s; ending its %d rooms", slot.index,
                     process.pid, reason, len(lost))
        removed = Removed(LeaveReason.MEDIA_WORKER_LOST)
        for live in lost:
            for participant_id, member in list(live.participants.items()):
                try:
                    member.sink(removed)
                except Exception:
                    logger.exception("telling %s of the lost worker failed", participant_id)
            live.participants.clear()
            for local in live.local.values():
                for producer_id in list(local.writers):
                    with contextlib.suppress(Exception):
                        local.subscriber.track_removed(producer_id)
            live.local.clear()
            for callback in self.on_room_lost:
                try:
                    callback(live.name)
                except Exception:
                    logger.exception("room-lost callback for %r failed", live.name)
        if not self._closing:
            self._schedule_restart(slot)

    def _schedule_restart(self, slot: _Slot) -> None:
        now = time.monotonic()
        while slot.restarts and now - slot.restarts[0] > RESTART_WINDOW_S:
            slot.restarts.popleft()
        if len(slot.restarts) >= MAX_RESTARTS:
            logger.error("media worker %d restarted %d times in %.0f s: left down", slot.index,
                         len(slot.restarts), RESTART_WINDOW_S)
            return
        delay = RESTART_DELAY_S * 2 ** len(slot.restarts)
        slot.restarts.append(now)
        slot.restarting = asyncio.ensure_future(self._restart(slot, delay))

    async def _restart(self, slot: _Slot, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            await self._spawn(slot)
        except Exception as exc:
            slot.restarting = None
            logger.error("media worker %d did not restart: %r", slot.index, exc)
            if not self._closing:
                self._schedule_restart(slot)
            return
        slot.restarting = None
        assert slot.process is not None
        if self._closing:
            await slot.process.close()
            return
        logger.warning("media worker %d restarted (pid %d)", slot.index, slot.process.pid)
