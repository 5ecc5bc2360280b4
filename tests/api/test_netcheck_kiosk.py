"""The pre-join network check (signaling/netcheck.py) and the kiosk's schedule
(signaling/kiosk.py) over HTTP, on a real SQLite file; their limits and bad input."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from signaling.auth import Passwords, new_secret_token
from signaling.control import CONTROL, ControlPlane, control_ctx
from signaling.kiosk import add_kiosk_routes
from signaling.netcheck import (
    MAX_TRANSFER_BYTES,
    NETCHECK,
    NetcheckBudget,
    add_netcheck_routes,
)

AiohttpClient = Callable[[web.Application], Awaitable[TestClient]]
ICT = dt.timezone(dt.timedelta(hours=7))


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: AiohttpClient,
                 store_url: str | None) -> TestClient:
    app = web.Application(client_max_size=1 << 20)
    app.cleanup_ctx.append(control_ctx(tmp_path, passwords=Passwords.fast(), store_url=store_url))
    add_netcheck_routes(app, 2_000_000)
    add_kiosk_routes(app)
    return await aiohttp_client(app)


# -- network check ---------------------------------------------------------------------------------


async def test_info_names_the_threshold_and_limit(client: TestClient) -> None:
    response = await client.get("/api/netcheck")
    assert response.status == 200
    body = await response.json()
    assert body["audio_only_below_bps"] == 2_000_000
    assert body["max_bytes"] == MAX_TRANSFER_BYTES
    assert response.headers["Cache-Control"] == "no-store"


async def test_download_sends_exactly_what_was_asked(client: TestClient) -> None:
    response = await client.get("/api/netcheck/down", params={"bytes": "300000"})
    assert response.status == 200
    data = await response.read()
    assert len(data) == 300_000
    assert len(set(data[:4096])) > 200  # random bytes: no link compression flatters the check


@pytest.mark.parametrize("value", ["0", "-5", "abc", "1e6", str(MAX_TRANSFER_BYTES + 1),
                                   "9" * 30, ""])
async def test_download_refuses_bad_sizes(client: TestClient, value: str) -> None:
    response = await client.get("/api/netcheck/down", params={"bytes": value})
    assert response.status == 400
    assert "bytes must" in await response.text()


async def test_upload_counts_the_body_without_keeping_it(client: TestClient) -> None:
    body = b"x" * (2 << 20)  # over the app's 1 MiB client_max_size: streamed, never read()
    response = await client.post("/api/netcheck/up", data=body)
    assert response.status == 200
    answer = await response.json()
    assert answer["bytes"] == len(body) and answer["seconds"] >= 0


async def test_upload_over_the_limit_is_refused(client: TestClient) -> None:
    response = await client.post("/api/netcheck/up", data=b"x" * (MAX_TRANSFER_BYTES + 1))
    assert response.status == 413

    async def chunked() -> object:  # no Content-Length: counted as it arrives
        for _ in range(MAX_TRANSFER_BYTES // (64 << 10) + 2):
            yield b"y" * (64 << 10)

    response = await client.post("/api/netcheck/up", data=chunked())
    assert response.status == 413
    health = await client.get("/api/netcheck")  # the server carries on
    assert health.status == 200


async def test_one_address_runs_out_of_budget_then_gets_429(client: TestClient) -> None:
    budget: NetcheckBudget = client.app[NETCHECK]
    statuses = []
    for _ in range(8):  # 8 x 4 MiB = 32 MiB > the 24 MiB budget
        response = await client.get("/api/netcheck/down",
                                    params={"bytes": str(MAX_TRANSFER_BYTES)})
        await response.read()
        statuses.append(response.status)
    assert statuses[:6] == [200] * 6 and statuses[6] == 429
    refused = await client.get("/api/netcheck/down", params={"bytes": "1000"})
    assert refused.status in (200, 429)  # small ones may fit what refilled meanwhile
    big = await client.get("/api/netcheck/down", params={"bytes": str(MAX_TRANSFER_BYTES)})
    assert big.status == 429 and int(big.headers["Retry-After"]) >= 1
    assert budget._in_flight == {}  # every transfer gave its slot back


async def test_a_trickling_upload_is_cut_and_frees_its_slot(client: TestClient) -> None:
    budget: NetcheckBudget = client.app[NETCHECK]
    budget.transfer_timeout_s = 0.5

    async def trickle() -> object:  # 1 byte every 0.1 s: would hold a slot for days
        for _ in range(100):
            yield b"z"
            await asyncio.sleep(0.1)

    response = await client.post("/api/netcheck/up", data=trickle())
    assert response.status == 408
    assert budget._in_flight == {}
    assert (await client.get("/api/netcheck/down", params={"bytes": "10"})).status == 200


def test_budget_core_in_flight_caps_refill_and_ipv6_prefixes() -> None:
    budget = NetcheckBudget(budget_bytes=1000, refill_per_s=100, max_in_flight_per_address=1,
                            max_in_flight_total=2)
    assert budget.start("10.0.0.1", 600, now=0) == 0.0
    assert budget.start("10.0.0.1", 10, now=0) > 0  # one in flight per address
    budget.finish("10.0.0.1", now=0)
    assert budget.start("10.0.0.1", 600, now=0) == pytest.approx(2.0)  # 400 left, 200 short
    assert budget.start("10.0.0.1", 600, now=2.0) == 0.0  # refilled
    budget.finish("10.0.0.1", now=2.0)
    # An IPv6 /64 is one client.
    assert budget.start("2001:db8::1", 900, now=0) == 0.0
    budget.finish("2001:db8::1", now=0)
    assert budget.start("2001:db8::2", 900, now=0) > 0
    # The whole server's cap.
    assert budget.start("10.0.0.2", 1, now=3) == 0.0
    assert budget.start("10.0.0.3", 1, now=3) == 0.0
    assert budget.start("10.0.0.4", 1, now=3) > 0
    # An upload that sent less than it reserved gets the rest back.
    budget.finish("10.0.0.2", unused=0, now=3)
    budget.finish("10.0.0.3", now=3)
    assert budget.start("10.0.0.5", 1000, now=3) == 0.0
    budget.finish("10.0.0.5", unused=900, now=3)
    assert budget.start("10.0.0.5", 900, now=3) == 0.0


def test_budget_forgets_idle_addresses() -> None:
    budget = NetcheckBudget(budget_bytes=100, refill_per_s=100, max_addresses=3)
    for i in range(3):
        assert budget.start(f"10.0.1.{i}", 50, now=0) == 0.0
        budget.finish(f"10.0.1.{i}", now=0)
    assert budget.start("10.0.1.9", 50, now=10) == 0.0  # full: the refilled ones are dropped
    assert len(budget._buckets) == 1


# -- kiosk schedule --------------------------------------------------------------------------------


async def _endpoint(control: ControlPlane) -> tuple[int, str]:
    org = (await control.store.list_rooms())[0].org_id
    room = await control.store.create_room("Giao-ban", org)
    secret, secret_hash = new_secret_token()
    device = await control.store.create_endpoint("Phòng họp huyện", org, secret_hash)
    await control.store.create_meeting(room.id, "Giao ban tuần", "2025-01-06", "08:30", "10:00",
                                       endpoint_ids=(device.id,))
    return device.id, secret


async def test_kiosk_schedule_says_when_to_join(client: TestClient) -> None:
    control: ControlPlane = client.app[CONTROL]
    endpoint_id, secret = await _endpoint(control)
    now = [dt.datetime(2025, 1, 6, 8, 0, tzinfo=ICT).timestamp()]
    control.clock = lambda: now[0]
    body = {"endpoint_id": endpoint_id, "endpoint_secret": secret}
    response = await client.post("/api/kiosk/schedule", json=body)
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["endpoint"]["name"] == "Phòng họp huyện"
    (meeting,) = answer["meetings"]
    assert meeting["room"] == "Giao-ban" and meeting["in_progress"] is False
    assert meeting["starts_at"] == dt.datetime(2025, 1, 6, 8, 30, tzinfo=ICT).timestamp()
    assert meeting["joinable"] is False  # 30 min early: outside the 15 min window
    now[0] += 45 * 60  # 08:45: on
    (meeting,) = (await (await client.post("/api/kiosk/schedule", json=body)).json())["meetings"]
    assert meeting["in_progress"] is True and meeting["joinable"] is True
    assert meeting["ends_at"] == dt.datetime(2025, 1, 6, 10, 0, tzinfo=ICT).timestamp()
    assert meeting["starts_at"] == dt.datetime(2025, 1, 13, 8, 30, tzinfo=ICT).timestamp()


async def test_kiosk_schedule_refuses_bad_secrets_and_rate_limits(client: TestClient) -> None:
    control: ControlPlane = client.app[CONTROL]
    endpoint_id, secret = await _endpoint(control)
    now = [1_736_000_000.0]
    control.clock = lambda: now[0]
    statuses = []
    for _ in range(6):
        response = await client.post("/api/kiosk/schedule", json={
            "endpoint_id": endpoint_id, "endpoint_secret": secret.upper()})
        statuses.append(response.status)
        assert (await response.json())["error"] in ("bad-password", "rate-limited")
    assert statuses == [401] * 5 + [429]
    # Even the right secret waits now (the bucket is per endpoint and address).
    response = await client.post("/api/kiosk/schedule", json={
        "endpoint_id": endpoint_id, "endpoint_secret": secret})
    assert response.status == 429 and "Retry-After" in response.headers
    now[0] += 61
    response = await client.post("/api/kiosk/schedule", json={
        "endpoint_id": endpoint_id, "endpoint_secret": secret})
    assert response.status == 200


@pytest.mark.parametrize("body, status", [
    (b"not json", 400),
    (b"{}", 400),
    (b'{"endpoint_id": 0, "endpoint_secret": "x"}', 400),
    (b'{"endpoint_id": "1", "endpoint_secret": "x"}', 400),
    (b'{"endpoint_id": 1, "endpoint_secret": "x", "extra": 1}', 400),
    (b'{"endpoint_id": 999, "endpoint_secret": "x"}', 401),
    (b'{"endpoint_id": 1, "endpoint_secret": "' + b"a" * 5000 + b'"}', 413),
    (b"[" * 100_000, 413),
])
async def test_kiosk_schedule_bad_input(client: TestClient, body: bytes, status: int) -> None:
    response = await client.post("/api/kiosk/schedule", data=body,
                                 headers={"Content-Type": "application/json"})
    assert response.status == status
    assert (await response.json())["error"] in ("bad-request", "bad-password", "too-large")
