"""The meeting-room kiosk: an endpoint device asks which meeting it has, and when.

``POST /api/kiosk/schedule`` with ``{"endpoint_id": N, "endpoint_secret": "..."}`` answers the
endpoint's scheduled meetings (room name, title, next start, whether one is on now). The kiosk
page (web/kiosk.js) polls it and joins over the WebSocket with the same credentials at the start
time; admission (signaling/admission.py) checks them again there. Failures drain the same
per-endpoint and per-address buckets as a join with a wrong endpoint secret, so the schedule is
no side door for guessing secrets.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated

import msgspec
from aiohttp import web

from signaling import ratelimit
from signaling.auth import secret_matches
from signaling.control import CONTROL
from signaling.ratelimit import account_key, address_key
from signaling.store import NotFound
from signaling.store.models import Meeting
from signaling.store.schedule import EARLY_JOIN_S, is_on, next_start, parse_time

MAX_BODY_BYTES = 4096


class ScheduleRequest(msgspec.Struct, forbid_unknown_fields=True):
    endpoint_id: Annotated[int, msgspec.Meta(ge=1, le=2**53)]
    endpoint_secret: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


_decoder = msgspec.json.Decoder(ScheduleRequest)


def meeting_entry(meeting: Meeting, room: str, now: float) -> dict[str, object]:
    """One meeting as the kiosk sees it (pure: ``now`` passed in)."""
    in_progress = is_on(meeting, now)
    starts = next_start(meeting, now)
    ends_at: float | None = None
    if in_progress:
        tz = dt.timezone(dt.timedelta(minutes=meeting.utc_offset_min))
        local = dt.datetime.fromtimestamp(now, tz)
        end = dt.datetime.combine(local.date(), parse_time(meeting.end), tz)
        if end.timestamp() <= now:  # the occurrence began yesterday (over midnight)
            end += dt.timedelta(days=1)
        ends_at = end.timestamp()
    return {"room": room, "title": meeting.title, "meeting_id": meeting.id,
            "in_progress": in_progress, "joinable": is_on(meeting, now, EARLY_JOIN_S),
            "starts_at": starts, "ends_at": ends_at}


def order(entries: list[dict[str, object]]) -> list[dict[str, object]]:
    """Meetings on now first, then by next start; those with no start left go last."""
    def key(entry: dict[str, object]) -> tuple[int, float]:
        starts = entry["starts_at"]
        return (0 if entry["in_progress"] else 1,
                float(starts) if isinstance(starts, int | float) else float("inf"))
    return sorted(entries, key=key)


def _error(status: int, code: str, message: str, **headers: str) -> web.HTTPException:
    error = web.HTTPException(
        text=msgspec.json.encode({"error": code, "message": message}).decode(),
        content_type="application/json", headers=headers or None)
    error.set_status(status)
    return error


async def schedule(request: web.Request) -> web.Response:
    control = request.app[CONTROL]
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _error(413, "too-large",
                     f"body larger than {MAX_BODY_BYTES} bytes")
    body = await request.content.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise _error(413, "too-large",
                     f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        asked = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise _error(400, "bad-request", str(exc)) from None
    now = control.clock()
    address = request.remote or "?"
    keys = [(ratelimit.PASSWORD_ACCOUNT, account_key(f"endpoint:{asked.endpoint_id}", address)),
            (ratelimit.PASSWORD_ADDRESS, address_key(address))]
    wait = control.limiter.take_all(keys, now)
    if wait > 0:
        raise _error(429, "rate-limited",
                     f"too many failed attempts; try again in {int(wait) + 1} s",
                     **{"Retry-After": str(int(wait) + 1)})
    try:
        endpoint = await control.store.get_endpoint(asked.endpoint_id)
    except NotFound:
        endpoint = None
    if endpoint is None or not secret_matches(endpoint.secret_hash, asked.endpoint_secret):
        raise _error(401, "bad-password", "wrong endpoint id or secret")
    control.limiter.refund_all(keys, now)
    meetings = await control.store.list_meetings(endpoint_id=endpoint.id)
    rooms = {room.id: room.name for room in await control.store.list_rooms()}
    entries = order([meeting_entry(m, rooms[m.room_id], now) for m in meetings
                     if m.room_id in rooms])
    return web.json_response(
        {"endpoint": {"id": endpoint.id, "name": endpoint.name}, "now": now,
         "server_time": time.time(), "meetings": entries},
        headers={"Cache-Control": "no-store"})


def add_kiosk_routes(app: web.Application) -> None:
    app.router.add_post("/api/kiosk/schedule", schedule)
