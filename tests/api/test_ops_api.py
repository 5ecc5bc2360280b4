"""Issue 13 over the REST API on a real SQLite file: every changing call (and every failed
login) lands in the hash-chained audit trail with who, what, where and how it ended; refused
joins become events and audit entries; operators (only) read the daily report in JSON,
Markdown and HTML, the audit trail, and its verification."""

from __future__ import annotations

import datetime as dt

import pytest

from signaling.admission import Credentials
from signaling.auth import JoinRefused
from tests.api.conftest import Api


async def test_acts_and_failures_are_audited_and_readable_by_operators(api: Api) -> None:
    await api.call("POST", "/api/login", json={"username": "admin", "password": "wrong"},
                   expect=401)
    operator = await api.login("admin", api.bootstrap.password)
    org = await api.call("POST", "/api/organisations", operator, {"name": "Sở Y tế"}, 201)
    await api.call("POST", "/api/rooms", operator, {"name": "giao-ban", "org_id": org["id"]},
                   201)
    await api.call("POST", "/api/rooms/giao-ban/invitations", operator,
                   {"max_uses": 2, "ttl_s": 3600}, 201)
    await api.call("POST", "/api/rooms/giao-ban/lock", operator, {"locked": True})
    with pytest.raises(JoinRefused):
        await api.control.admission.admit("giao-ban", Credentials(
            name="x", username="admin", password="wrong"), "198.51.100.4", "s1")
    rows = await api.call("GET", "/api/audit?limit=50", operator)
    acts = [(r["actor"], r["action"], r["room"], r["outcome"]) for r in reversed(rows)]
    assert acts[:3] == [("login:admin", "api.login", "", "401"),
                        ("login:admin", "api.login", "", "ok"),
                        ("account:1", "api.create_organisation", "", "ok")]
    assert ("account:1", "api.create_invitation", "giao-ban", "ok") in acts
    assert ("account:1", "api.lock", "giao-ban", "ok") in acts
    assert ("account:admin", "room.join", "giao-ban", "bad-password") in acts
    assert all('"username":"admin"' in r["detail"] for r in rows if r["action"] != "room.join")
    assert all(r["address"] for r in rows)  # from where
    assert all("wrong" not in r["detail"] for r in rows)  # no bodies, no passwords
    assert [r["room"] for r in await api.call("GET", "/api/audit?room=giao-ban",
                                              operator)].count("giao-ban") >= 3
    verified = await api.call("GET", "/api/audit/verify", operator)
    assert verified["ok"] and verified["rows"] == len(rows) and not verified["problems"]
    events = await api.control.store.list_events(0.0, 1e12)
    assert [(e.kind, e.detail["code"]) for e in events] == [("join-refused", "bad-password")]


async def test_the_daily_report_is_for_operators_in_three_formats(api: Api) -> None:
    operator = await api.login("admin", api.bootstrap.password)
    await api.call("POST", "/api/accounts", operator, {
        "username": "host1", "password": "host-password", "role": "host", "org_id": 1}, 201)
    host = await api.login("host1", "host-password")
    await api.call("GET", "/api/reports/daily", host, expect=403)
    await api.call("GET", "/api/audit", host, expect=403)
    assert api.control.meetings is not None
    await api.control.meetings.joined("demo", "p1", "account:a", "An", "member", "192.0.2.1")
    api.control.meetings.left("demo", "p1", "requested")
    today = dt.datetime.now(dt.timezone(dt.timedelta(minutes=420))).date().isoformat()
    report = await api.call("GET", f"/api/reports/daily?date={today}", operator)
    assert report["date"] == today and report["totals"]["meetings"] == 1
    assert report["totals"]["participants"] == 1 and report["rooms"][0]["room"] == "demo"
    for fmt, kind, marker in (("md", "text/markdown", "| Meetings held | 1 (0 scheduled"),
                              ("html", "text/html", "data:image/png;base64,")):
        response = await api.client.get(f"/api/reports/daily?date={today}&format={fmt}",
                                        headers=operator)
        assert response.status == 200 and response.content_type == kind
        assert marker in await response.text()
        if fmt == "html":  # its own style and data: plots; no script, no framing
            assert "script-src" not in response.headers["Content-Security-Policy"]
            assert "img-src data:" in response.headers["Content-Security-Policy"]
    bad = await api.call("GET", "/api/reports/daily?date=03-12-2026", operator, expect=400)
    assert bad["field"] == "date"
    await api.call("GET", "/api/reports/daily?format=pdf", operator, expect=400)
    for query in ("date=9999-12-31", "date=0001-01-01&utc_offset=840", "utc_offset=99999",
                  "date=" + "9" * 5000):  # overflowing dates: a 400 naming the field
        bad = await api.call("GET", f"/api/reports/daily?{query}", operator, expect=400)
        assert bad["field"] in ("date", "utc_offset")


async def test_a_flood_of_refused_joins_stays_a_few_audit_rows(api: Api) -> None:
    for n in range(40):
        with pytest.raises(JoinRefused):
            await api.control.admission.admit("demo", Credentials(
                name="x", username="admin", password=f"guess-{n}"), "198.51.100.9", f"s{n}")
    assert api.control.journal is not None
    await api.control.journal.flush()
    rows = await api.control.store.list_audit(room="demo")
    joins = [(r.action, r.outcome) for r in rows if r.action == "room.join"]
    # the first bad password, the first rate-limited refusal: repeats merge in the join audit
    assert sorted(joins) == [("room.join", "bad-password"), ("room.join", "rate-limited")]
    events = await api.control.store.list_events(0.0, 1e12)
    assert len(events) == 2


async def test_a_flood_of_failed_logins_is_one_audit_row_a_minute(api: Api) -> None:
    clock = {"now": 1_800_000_000.0}
    api.control.clock = lambda: clock["now"]

    async def attempt(password: str) -> int:
        response = await api.client.post("/api/login", json={"username": "admin",
                                                             "password": password})
        return response.status

    statuses = {await attempt(f"guess-{n}") for n in range(25)}
    assert statuses <= {401, 429} and 401 in statuses
    clock["now"] += 61
    assert await attempt("again") in (401, 429)
    assert api.control.journal is not None
    await api.control.journal.flush()
    rows = [r for r in await api.control.store.list_audit() if r.action == "api.login"]
    assert len(rows) <= 4  # the first 401 and 429 of each minute, not 26 rows
    assert rows[-1].outcome == "401" and rows[-1].actor == "login:admin"
    assert '"repeats_before":' in rows[0].detail  # the next minute's row counts the merged
