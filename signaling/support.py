"""Support staff (issue 13): every live room with per-participant diagnostics, and a notice of
each scheduled meeting a configurable lead time (default 1 h) before it starts, in the console
(``GET /api/support/notices``) and as a ``meeting_reminder`` webhook.

``due_notices`` is the pure part (time passed in); ``SupportNotifier`` checks every 30 s, and the
store's ``support_notices`` table (one row per meeting occurrence) keeps a notice from being sent
twice, across restarts too. A server that was down at the lead time sends it late, up to the
meeting's start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from signaling.api_http import EXTRA_ROUTES, Call, Route, make_handler, reply
from signaling.config import HookSettings
from signaling.store import Meeting, Room
from signaling.store.schedule import next_start
from signaling.store.sqlite_ops import SqliteOps, SupportNotice

if TYPE_CHECKING:
    from aiohttp import web

    from sfu.plane import MediaPlane
    from signaling.webhooks import WebhookService

logger = logging.getLogger(__name__)

CHECK_EVERY_S = 30.0


def due_notices(meetings: Iterable[Meeting], rooms: dict[int, Room], now: float,
                lead_s: float) -> list[SupportNotice]:
    """Occurrences that start within ``lead_s`` from ``now`` (and have not started yet)."""
    out = []
    for meeting in meetings:
        starts = next_start(meeting, now)
        room = rooms.get(meeting.room_id)
        if starts is None or room is None or starts - lead_s > now:
            continue
        out.append(SupportNotice(meeting.id, starts, room.name, meeting.title, now))
    return out


@dataclass(eq=False)
class SupportNotifier:
    store: SqliteOps
    settings: HookSettings
    webhooks: WebhookService | None = None
    clock: Callable[[], float] = time.time
    sent: int = 0

    async def check(self) -> list[SupportNotice]:
        """One pass: send the notices now due; returns those sent."""
        store: Any = self.store  # the full SqliteStore: rooms and meetings too
        meetings = await store.list_meetings()
        rooms = {room.id: room for room in await store.list_rooms()}
        sent = []
        for notice in due_notices(meetings, rooms, self.clock(), self.settings.support_lead_s):
            if not await self.store.add_support_notice(notice):
                continue  # already told
            sent.append(notice)
            self.sent += 1
            minutes = max(0, round((notice.starts_at - notice.sent_at) / 60))
            logger.info("support: meeting %r in room %r starts in %d min", notice.title,
                        notice.room, minutes)
            if self.webhooks is not None:
                self.webhooks.emit("meeting_reminder", {
                    "meeting_id": notice.meeting_id, "room": notice.room, "title": notice.title,
                    "starts_at": notice.starts_at, "minutes_before": minutes})
        return sent

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("support notices: check failed")
            await asyncio.sleep(CHECK_EVERY_S)


# -- the console's REST routes ---------------------------------------------------------------


class ParticipantDiagnosticsOut(msgspec.Struct, kw_only=True):
    """One participant as support staff see it (``sfu/diagnostics.py``)."""

    id: str
    name: str
    publish_state: str
    subscribe_state: str
    layers_received: dict[str, int | None]
    estimate_bps: float | None
    loss: float
    rtt_s: float | None
    audio_only: bool
    audio_only_reason: str | None


class LiveRoomOut(msgspec.Struct, kw_only=True):
    room: str
    pinned: str | None
    participants: list[ParticipantDiagnosticsOut]


class NoticeOut(msgspec.Struct, kw_only=True):
    meeting_id: int
    room: str
    title: str
    starts_at: float
    sent_at: float


class NoticesOut(msgspec.Struct, kw_only=True):
    lead_s: float
    notices: list[NoticeOut]


def support_routes(plane: Callable[[], MediaPlane], room_names: Callable[[], Iterable[str]],
                   notifier: Callable[[], SupportNotifier]) -> tuple[Route, ...]:
    async def live_rooms(call: Call) -> web.Response:
        rooms: list[LiveRoomOut] = []
        names = sorted(room_names())
        media = plane() if names else None
        for name in names:
            assert media is not None
            state = media.room_state(name)
            if state is None:
                continue
            rooms.append(LiveRoomOut(room=name, pinned=state.pinned, participants=[
                ParticipantDiagnosticsOut(**asdict(d)) for d in media.diagnostics(name)]))
        return reply(rooms)

    async def notices(call: Call) -> web.Response:
        service = notifier()
        since = service.clock() - 86400
        listed = await service.store.list_support_notices(since)
        return reply(NoticesOut(lead_s=service.settings.support_lead_s, notices=[
            NoticeOut(meeting_id=n.meeting_id, room=n.room, title=n.title,
                      starts_at=n.starts_at, sent_at=n.sent_at) for n in listed]))

    return (
        Route("GET", "/api/support/rooms", live_rooms,
              "Every live room, each participant with diagnostics", "support",
              answer=list[LiveRoomOut]),
        Route("GET", "/api/support/notices", notices,
              "Scheduled meetings support was told of (the last day and ahead)", "support",
              answer=NoticesOut),
    )


def add_support_routes(app: web.Application, routes: tuple[Route, ...]) -> None:
    from aiohttp import web as aiohttp_web

    app[EXTRA_ROUTES] = app.get(EXTRA_ROUTES, ()) + routes
    app.router.add_routes([aiohttp_web.route(r.method, r.path, make_handler(r))
                           for r in routes])
