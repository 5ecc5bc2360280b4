"""An SFU worker process: one ``Worker`` (whole rooms) served to signaling over a socket.

Started by ``sfu/plane_pool.py`` as ``python -c ...`` with one end of a socketpair (its file
descriptor number in argv). The first frame is a ``Hello`` with the media configuration; then
every frame is a call of ``sfu/plane_wire.py``, applied to the in-process ``Worker`` in order.
What the worker tells participants comes back as ``Event`` frames; a ``Stats`` frame every
``STATS_INTERVAL_S`` is both the metrics and the heartbeat (counters and diagnostics gathered
every ``STATS_FULL_EVERY``-th of them).

Recording: a local subscriber of a room in this process is a stand-in that sends the track
announcements, the RTP (already rewritten by the room's consumers) and the sender reports to
signaling, where the ``RecordingService``'s own ``RoomRecorder`` writes the files. So a worker
that dies takes no recording with it: signaling finishes the files cleanly.

The process ends when signaling closes the socket (or dies), or after a ``Shutdown`` call.
SIGINT and SIGTERM are ignored: a Ctrl-C or a service stop reaches the whole process group, and
signaling drains the rooms first, then closes us.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any

import msgspec
from aiortc.sdp import candidate_from_sdp

from sfu.consumer import PacketWriter
from sfu.events import MediaEvent
from sfu.local_subscriber import TrackInfo
from sfu.native import describe
from sfu.plane import BadDescription, NotDescribed, Target, UnknownParticipant
from sfu.plane_relay import RelayHost
from sfu.plane_wire import (
    STATS_INTERVAL_S,
    AddIce,
    Call,
    Hello,
    Join,
    Leave,
    LocalRtp,
    LocalSenderReport,
    LocalTrack,
    LocalTrackRemoved,
    Pin,
    Publish,
    Ready,
    RelayKeyframe,
    RelayMuted,
    RelayPublish,
    RelayRtp,
    RelaySenderReport,
    RelayTrack,
    RelayTrackGone,
    Reply,
    Report,
    RequestKeyframe,
    SetAudioOnly,
    SetMuted,
    SetShown,
    SetTiles,
    SetUplink,
    Shutdown,
    Stats,
    SubscribeAnswer,
    SubscribeLocal,
    UnsubscribeLocal,
    decode_call,
    event_report,
    frame,
    read_frame,
)
from sfu.types import Kind
from sfu.worker import Worker

logger = logging.getLogger(__name__)

MAX_BUFFERED = 16 << 20
"""Bytes waiting for signaling to read, past which recorder RTP is dropped (and counted)."""
SHUTDOWN_S = 10.0
"""How long a ``Shutdown`` may take to drain the rooms."""


class Channel:
    """The worker's side of the socket: frames out, with recorder RTP shed when signaling lags
    (events are never shed: a lost ``SubscribeOffer`` would stall a participant)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.local_dropped = 0
        self.reports_out = 0  # frames other than Stats and recorder RTP: none per packet

    def send(self, message: Report) -> None:
        if self.writer.is_closing():
            return
        if type(message) is not Stats:
            self.reports_out += 1
        self.writer.write(frame(message))

    def send_rtp(self, message: LocalRtp) -> bool:
        if self.writer.is_closing() or \
                self.writer.transport.get_write_buffer_size() > MAX_BUFFERED:
            self.local_dropped += 1
            return False
        self.writer.write(frame(message))
        return True


class _RemoteFeed:
    """A recorded track's ``PacketWriter``: its RTP goes to signaling's recorder."""

    __slots__ = ("channel", "room", "subscriber", "producer_id")

    def __init__(self, channel: Channel, room: str, subscriber: str, producer_id: str) -> None:
        self.channel, self.room, self.subscriber = channel, room, subscriber
        self.producer_id = producer_id

    def send_rtp(self, packet: bytes) -> bool:
        return self.channel.send_rtp(LocalRtp(self.room, self.subscriber, self.producer_id,
                                              packet))


class RemoteLocalSubscriber:
    """The ``LocalSubscriber`` standing in for one in signaling (the recorder)."""

    def __init__(self, channel: Channel, room: str, subscriber: str,
                 audio_level_ext_id: int = 0, video: bool = True) -> None:
        self.channel, self.room, self.subscriber = channel, room, subscriber
        self.audio_level_ext_id = audio_level_ext_id  # read by LocalConsumers (a relay's)
        self.video = video  # False (a relay's voices): no video is consumed or sent across

    def track_added(self, track: TrackInfo) -> PacketWriter | None:
        if track.kind is Kind.VIDEO and not self.video:
            return None
        self.channel.send(LocalTrack(self.room, self.subscriber, track.producer_id,
                                     track.participant_id, track.participant_name, track.kind,
                                     track.codec))
        # Signaling's subscriber decides there whether it wants the track; unwanted RTP is
        # dropped on arrival (one decision, in one place).
        return _RemoteFeed(self.channel, self.room, self.subscriber, track.producer_id)

    def track_removed(self, producer_id: str) -> None:
        self.channel.send(LocalTrackRemoved(self.room, self.subscriber, producer_id))

    def sender_report(self, producer_id: str, ntp_timestamp: int, rtp_timestamp: int) -> None:
        self.channel.send(LocalSenderReport(self.room, self.subscriber, producer_id,
                                            ntp_timestamp, rtp_timestamp))


_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (UnknownParticipant, "unknown-participant"),
    (NotDescribed, "not-described"),
    (BadDescription, "bad-description"),
)


def error_reply(call_id: int, exc: Exception) -> Reply:
    kind = next((name for cls, name in _ERRORS if isinstance(exc, cls)), "error")
    return Reply(call_id, error=kind, message=str(exc)[:500], exception=type(exc).__name__[:60])


STATS_FULL_EVERY = 4
"""The worker's counters and every room's diagnostics walk every consumer (2,450 pairs in a
room of 50: ~4.5 ms, 0.9 % of a core at two reports a second): they are gathered every 4th
report (2 s); the reports between resend them (each report is also the heartbeat)."""


class PlaneServer:
    """Applies calls to the worker; answers the ones with an id."""

    def __init__(self, worker: Worker, channel: Channel) -> None:
        self.worker = worker
        self.channel = channel
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()
        self.relays = RelayHost(worker.publish_local, channel.send)  # sfu/plane_relay.py
        self._reports = 0
        self._gathered: Stats | None = None
        self.calls_in = 0  # calls read, relay RTP aside (a relay's packets cross by design)

    def sink(self, room: str, participant: str) -> Any:
        channel = self.channel

        def send(event: MediaEvent) -> None:
            channel.send(event_report(room, participant, event))

        return send

    def handle(self, call: Call) -> None:
        if type(call) is RelayRtp:  # the busiest call: a relay's packet, once per packet
            self.relays.rtp(call)
            return
        worker = self.worker
        try:
            match call:
                case Join():
                    worker.join(call.room, call.participant, call.name,
                                self.sink(call.room, call.participant), call.all_layers)
                case SubscribeAnswer():
                    worker.subscribe_answer(call.room, call.participant, call.sdp)
                case SetMuted():
                    worker.set_muted(call.room, call.participant, call.kind, call.muted)
                case Pin():
                    worker.pin(call.room, call.participant)
                case SetTiles():
                    worker.set_tiles(call.room, call.participant, call.tiles)
                case SetShown():
                    worker.set_shown(call.room, call.participant, call.shown)
                case SetAudioOnly():
                    worker.set_audio_only(call.room, call.participant, call.enabled)
                case SetUplink():
                    worker.set_uplink_estimate(call.room, call.participant, call.bps)
                case RequestKeyframe():
                    worker.request_keyframe(call.room, call.participant)
                case SubscribeLocal():
                    worker.subscribe_local(call.room, call.subscriber, RemoteLocalSubscriber(
                        self.channel, call.room, call.subscriber, call.audio_level_ext_id,
                        call.video))
                case UnsubscribeLocal():
                    worker.unsubscribe_local(call.room, call.subscriber)
                case RelayPublish():
                    self.relays.publish(call, self.sink(call.room, call.participant))
                case RelayTrack() | RelayTrackGone() | RelayMuted() | RelaySenderReport() \
                        | RelayKeyframe():
                    self.relays.handle(call)
                case Leave() | Publish() | AddIce() | Shutdown():
                    self._spawn(self._answer(call))
                case Hello():
                    logger.warning("a second hello ignored")
        except (KeyError, BadDescription) as exc:
            # Signaling checked the same against its own view; a race (a participant who left
            # meanwhile) ends here, as it would in one process.
            logger.debug("%s refused: %r", type(call).__name__, exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, call: Leave | Publish | AddIce | Shutdown) -> None:
        worker = self.worker
        value: str | None = None
        try:
            match call:
                case Leave():
                    await worker.leave(call.room, call.participant)
                    self.relays.left(call.room, call.participant)
                case Publish():
                    value = await worker.publish(call.room, call.participant, call.sdp,
                                                 call.screen_mids)
                case AddIce():
                    candidate = None
                    if call.candidate is not None:
                        candidate = candidate_from_sdp(call.candidate.sdp)
                        candidate.sdpMid = call.candidate.sdp_mid
                        candidate.sdpMLineIndex = call.candidate.sdp_mline_index
                    await worker.add_ice_candidate(call.room, call.participant,
                                                   Target(call.target), candidate)
                case Shutdown():
                    await asyncio.wait_for(worker.close(), SHUTDOWN_S)
                    self.stopping.set()
        except Exception as exc:
            self.channel.send(error_reply(call.id, exc))
            return
        self.channel.send(Reply(call.id, value=value))

    def stats(self) -> Stats:
        """The next report: gathered afresh every ``STATS_FULL_EVERY`` calls."""
        self._reports += 1
        if self._gathered is None or (self._reports - 1) % STATS_FULL_EVERY == 0:
            stats = self.worker.stats()
            self._gathered = Stats(
                stats.rooms, stats.participants, stats.producers, stats.consumers,
                dict(stats.totals), dict(stats.audio_only), dict(stats.paused),
                dict(stats.datagram_drops), self.channel.local_dropped,
                {room: list(self.worker.diagnostics(room)) for room in self.worker.rooms})
        else:
            self._gathered = msgspec.structs.replace(
                self._gathered, local_dropped=self.channel.local_dropped)
        # Fresh in every report: how much crosses the socket besides media (tests bound it
        # per forwarded packet: nothing may cross per packet).
        self._gathered.totals.update(plane_reports_out=self.channel.reports_out,
                                     plane_calls_in=self.calls_in)
        return self._gathered


async def serve(sock: socket.socket) -> None:
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 16)
    first = await read_frame(reader)
    if first is None:
        return
    hello = decode_call(first)
    if not isinstance(hello, Hello):
        raise SystemExit(f"expected a hello frame first, got {type(hello).__name__}")
    logging.basicConfig(level=hello.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s worker{hello.index} %(name)s: "
                               "%(message)s")
    fanout = describe()  # this process's own path: a worker is not signaling (sfu/native.py)
    logger.info("media fan-out: %s", fanout)
    worker = Worker(hello.config)
    worker.start()
    channel = Channel(writer)
    server = PlaneServer(worker, channel)
    channel.send(Ready(os.getpid(), fanout))
    loop = asyncio.get_running_loop()
    heartbeat = loop.call_soon(lambda: None)

    def beat() -> None:
        nonlocal heartbeat
        try:
            channel.send(server.stats())
        except Exception:
            logger.exception("stats failed")
        heartbeat = loop.call_later(STATS_INTERVAL_S, beat)

    beat()
    try:
        while not server.stopping.is_set():
            body = await read_frame(reader)
            if body is None:
                break  # signaling closed the socket (or died): nothing is left to serve
            try:
                call = decode_call(body)
            except ValueError as exc:
                logger.error("%s", exc)
                continue
            if type(call) is not RelayRtp:
                server.calls_in += 1
            try:
                server.handle(call)
            except Exception:  # one call that fails must not end the worker's other rooms
                logger.exception("%s failed", type(call).__name__)
            if type(call) is not RelayRtp:  # a relay's packets start no task: a burst at once
                await asyncio.sleep(0)  # let a call's task start before the next call
    finally:
        heartbeat.cancel()
        if not server.stopping.is_set():
            try:
                await asyncio.wait_for(worker.close(), SHUTDOWN_S)
            except Exception:
                logger.exception("closing the worker failed")
        try:
            await asyncio.wait_for(writer.drain(), 2.0)
        except Exception:
            pass
        writer.close()


def main(argv: list[str]) -> None:
    """Entry point of the worker process: ``argv[0]`` is the socket's descriptor."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[0]))
    from sfu.memtune import tune_allocator

    tune_allocator()  # glibc's options, before any thread starts (sfu/memtune.py)
    from sfu.gctune import tune_for_forwarding

    tune_for_forwarding()  # imports done: frozen, never rescanned (sfu/gctune.py)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(sock))
    else:
        uvloop.run(serve(sock))


if __name__ == "__main__":
    main(sys.argv[1:])
