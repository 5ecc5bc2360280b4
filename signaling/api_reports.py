"""The operator's REST routes for issue 13: the daily report (JSON, Markdown or printable HTML)
and the audit trail (list, verify). Operators only: the report names every room and
participant, the audit trail every address."""

from __future__ import annotations

import asyncio
import datetime as dt

import msgspec
from aiohttp import web

from signaling.api_http import ApiError, Call, Route, reply
from signaling.journal import verify_audit
from signaling.report import DEFAULT_UTC_OFFSET_MIN, DailyReport, daily_report, parse_day
from signaling.report_render import render
from signaling.store.journal_models import AuditRow

MAX_AUDIT_ROWS = 5000
CONTENT_TYPES = {"md": "text/markdown", "html": "text/html"}
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"


class AuditVerifyOut(msgspec.Struct, frozen=True):
    ok: bool
    rows: int
    first_seq: int
    head: str
    problems: list[str]


async def _flushed(call: Call) -> None:
    """What the journal holds in memory is written first: the answer includes the last
    second's events (and the call that asks)."""
    if call.control.journal is not None:
        await call.control.journal.flush()


def _int(call: Call, name: str, default: int, low: int, high: int) -> int:
    text = call.request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, "bad-request", f"{name} must be a whole number", name) from None
    if not low <= value <= high:
        raise ApiError(400, "bad-request", f"{name} must lie within {low}..{high}", name)
    return value


def _float(call: Call, name: str) -> float | None:
    text = call.request.query.get(name)
    try:
        return None if text is None else float(text)
    except ValueError:
        raise ApiError(400, "bad-request", f"{name} is a Unix time in seconds", name) from None


async def report_daily(call: Call) -> web.Response:
    query = call.request.query
    offset = _int(call, "utc_offset", DEFAULT_UTC_OFFSET_MIN, -720, 840)
    now = call.control.clock()
    try:
        day = parse_day(query["date"]) if "date" in query else \
            dt.datetime.fromtimestamp(now, dt.timezone(dt.timedelta(minutes=offset))).date()
    except ValueError as exc:
        raise ApiError(400, "bad-request", str(exc), "date") from None
    fmt = query.get("format", "json")
    if fmt not in ("json", *CONTENT_TYPES):
        raise ApiError(400, "bad-request", "format is json, md or html", "format")
    await _flushed(call)
    report = await daily_report(call.control.store, day, now, offset)
    if fmt == "json":
        return reply(report)
    # Plots take a while to draw: off the event loop.
    text = await asyncio.to_thread(render, report, fmt)
    response = web.Response(text=text, content_type=CONTENT_TYPES[fmt], charset="utf-8")
    if fmt == "html":  # self-contained: its own style and data: plots, never a script
        response.headers["Content-Security-Policy"] = REPORT_CSP
    return response


async def list_audit(call: Call) -> web.Response:
    query = call.request.query
    await _flushed(call)
    rows = await call.control.store.list_audit(
        since=_float(call, "since"), until=_float(call, "until"), room=query.get("room"),
        actor=query.get("actor"), limit=_int(call, "limit", 1000, 1, MAX_AUDIT_ROWS))
    return reply(rows)


async def verify_audit_chain(call: Call) -> web.Response:
    await _flushed(call)
    walk = await verify_audit(call.control.store)
    return reply(AuditVerifyOut(ok=not walk.problems, rows=walk.rows, first_seq=walk.first_seq,
                                head=walk.head, problems=walk.problems))


REPORT_ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/reports/daily", report_daily, "The daily report (query: date=YYYY-MM-DD, "
          "format=json|md|html, utc_offset=minutes east of UTC, default 420)", "operator",
          answer=DailyReport),
    Route("GET", "/api/audit", list_audit, "The audit trail, newest first (query: since, until "
          "as Unix seconds, room, actor, limit)", "operator", answer=list[AuditRow]),
    Route("GET", "/api/audit/verify", verify_audit_chain, "Walk the audit trail's hash chain",
          "operator", answer=AuditVerifyOut),
)
