"""Issue 14 follow-ups in the browser's cluster failover (web/failover.js), on real
`diemcau serve --redis` processes, a real redis-server and headless Chromium:

- the "rejoin" button (after a leave, or once the automatic reconnection gave up) goes through
  the cluster's nodes in the same order as the automatic path, not only the page's node;
- a node registered after the page loaded is outside the page's CSP: the page never opens a
  socket there (no CSP violation) but loads the page from that node, with its credentials
  (a guest's rejoin token in the fragment), and rejoins there;
- a guest waiting in the lobby knows the other nodes: when the lobby's node dies the guest
  waits again through another one (without spending another invitation use), told so in
  Vietnamese, and a host there can let them in.

Run inside a private network namespace (docs/architecture.md#network-namespaces).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import signal
import time
import urllib.parse
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis
from pagewait import wait_js
from test_cluster_failover import (
    JOINED,
    TIMEOUT_MS,
    Page,
    api,
    cluster,  # noqa: F401 (the fixture)
    open_page,
    page_csp,
    placed_on,
    until,
)

from tests.cluster.redisproc import RedisServer, running_redis
from tests.serverproc import Server, running_server

pytestmark = [pytest.mark.browser, pytest.mark.media]

ROOM = "Giao-ban"
WAIT_S = 30.0


def login(server: Server) -> str:
    password = re.search(r"Operator account 'admin', password (\S+)", server.log_text())
    assert password, server.log_text()
    return str(api(server.base_url, "POST", "/api/login",
                   {"username": "admin", "password": password.group(1)})["token"])


def csp_blocked(page: Page) -> list[str]:
    return [line for line in page.lines if "Content Security Policy" in line]


async def swept(redis_server: RedisServer, node_id: str) -> None:
    """Wait until a live node has freed the dead ``node_id`` (its rooms unplaced)."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        await until(lambda: not client.sismember("dc:nodes", node_id), WAIT_S,
                    f"{node_id} swept")
    finally:
        client.close()


async def test_the_rejoin_button_goes_through_the_other_nodes(
        cluster: tuple[RedisServer, list[Server]], browser: Any) -> None:  # noqa: F811
    redis_server, servers = cluster
    a = servers[0]
    base = a.base_url
    others = sorted(s.base_url for s in servers[1:])
    token = login(a)
    api(base, "POST", "/api/rooms", {"name": ROOM, "org_id": 1}, token)
    link = api(base, "POST", f"/api/rooms/{ROOM}/tokens", {"name": "Chủ trì", "role": "host"},
               token)["link"]
    await until(lambda: all(o.replace("http", "ws", 1) in page_csp(base) for o in others),
                10.0, "the other nodes in A's CSP")
    page = await open_page(browser, base + link + ("" if "name=" in link else "&name=Chu%20tri"),
                           "host")
    try:
        await wait_js(page.page, JOINED, TIMEOUT_MS)
        await wait_js(page.page, "window.diemcau.nodes.order().length === 3", TIMEOUT_MS)
        await page.page.click("#leave-btn")
        await wait_js(page.page, "window.diemcau.state === 'left'", TIMEOUT_MS)
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(5)
        await swept(redis_server, "node0")
        assert await page.page.locator("#rejoin-btn").is_visible()
        await page.page.click("#rejoin-btn")
        await wait_js(page.page, f"{JOINED} && window.diemcau.nodes.current !== {json.dumps(base)}",
                      TIMEOUT_MS)
        current = await page.page.evaluate("window.diemcau.nodes.current")
        assert current in others, current
        assert placed_on(redis_server, ROOM) in ("node1", "node2")
        assert page.joins[-1][0].startswith(current.replace("http", "ws", 1)), page.joins
        assert not csp_blocked(page)
    except Exception:
        print(page.tail())
        raise
    finally:
        with contextlib.suppress(Exception):
            await page.page.context.close()


def start_node(stack: ExitStack, tmp_path: Path, redis_server: RedisServer, i: int,
               data: Path) -> Server:
    home = tmp_path / f"node{i}"
    home.mkdir()
    return stack.enter_context(running_server(
        home, open_rooms=False, data_dir=data,
        extra_args=["--redis", redis_server.url, "--node-id", f"node{i}"]))


async def add_node_with_the_room(stack: ExitStack, tmp_path: Path, redis_server: RedisServer,
                                 data: Path, a: Server) -> Server:
    """Node C joins the cluster after A's pages loaded (A's CSP names it once it registered),
    and the room is placed on it."""
    c = start_node(stack, tmp_path, redis_server, 2, data)
    await until(lambda: c.base_url.replace("http", "ws", 1) in page_csp(a.base_url), 10.0,
                "C in A's CSP")
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.set(f"dc:place:{ROOM}", "node2", px=60_000)
    finally:
        client.close()
    return c


async def test_a_node_added_after_the_page_loaded_is_reached_by_moving_the_page(
        tmp_path: Path, browser: Any) -> None:
    with ExitStack() as stack:
        redis_server = stack.enter_context(running_redis(tmp_path))
        data = tmp_path / "data"
        data.mkdir()
        a, b = (start_node(stack, tmp_path, redis_server, i, data) for i in range(2))
        token = login(a)
        api(a.base_url, "POST", "/api/rooms", {"name": ROOM, "org_id": 1}, token)
        invite = api(a.base_url, "POST", f"/api/rooms/{ROOM}/invitations", {"max_uses": 1},
                     token)["link"]
        await until(lambda: b.base_url.replace("http", "ws", 1) in page_csp(a.base_url), 10.0,
                    "B in A's CSP")
        # The page from A: its CSP (and its node list) name A and B
        page = await open_page(browser, a.base_url + "/", "guest")
        try:
            allowed = await page.page.evaluate("window.diemcau.nodes.allowed")
            assert allowed == sorted([a.base_url, b.base_url]), allowed
            # C joins the cluster later, and the room is placed on it
            c = await add_node_with_the_room(stack, tmp_path, redis_server, data, a)
            # A guest opens the invitation in this page: A sends it to C, outside its CSP
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(invite).query)
            await page.page.evaluate(
                "(q) => history.replaceState(null, '', '/?invite=' + encodeURIComponent(q))",
                query["invite"][0])
            await page.page.fill("#room-input", ROOM)
            await page.page.fill("#name-input", "Khach")
            await page.page.click("#join-btn")
            await wait_js(page.page, f"location.origin === {json.dumps(c.base_url)} && {JOINED}",
                          TIMEOUT_MS)
            assert "moved" not in page.page.url and "rejoin" not in page.page.url, page.page.url
            joins = page.joins
            assert joins[0][0].startswith(a.base_url.replace("http", "ws", 1)), joins
            assert joins[-1][0].startswith(c.base_url.replace("http", "ws", 1)), joins
            # the invitation was not spent by the redirect: the moved page joined with it
            assert "invite" in joins[-1][1], joins
            assert not csp_blocked(page), csp_blocked(page)

            # The page (now C's, whose CSP names A, B and C) loses C: it rejoins through A or
            # B on its rejoin token (its single-use invitation is spent)
            os.kill(c.proc.pid, signal.SIGKILL)
            c.proc.wait(5)
            try:
                await wait_js(page.page, f"{JOINED} && window.diemcau.nodes.current !== "
                                         f"{json.dumps(c.base_url)}", 60_000)
            except TimeoutError:
                print(await page.page.evaluate(
                    "() => { const d = window.diemcau; return JSON.stringify({url: location.href,"
                    " state: d.state, loss: d.lastLoss, gaveUp: d.reconnectGaveUp,"
                    " order: d.nodes.order(), allowed: d.nodes.allowed,"
                    " others: d.nodes.others, reconnects: d.reconnects}); }"))
                raise
            assert "token" in page.joins[-1][1] and "invite" not in page.joins[-1][1]
            assert not csp_blocked(page), csp_blocked(page)
        except Exception:
            print(page.tail())
            raise
        finally:
            with contextlib.suppress(Exception):
                await page.page.context.close()


LOBBY_PROBE = """() => {
  const d = window.diemcau;
  const notice = document.getElementById('notice-text');
  return d ? {state: d.state, node: d.nodes.current, notice: notice ? notice.textContent : ''}
           : null;
}"""


async def test_a_lobby_guest_whose_node_dies_waits_again_through_another(
        cluster: tuple[RedisServer, list[Server]], browser: Any) -> None:  # noqa: F811
    redis_server, servers = cluster
    a = servers[0]
    base = a.base_url
    token = login(a)
    api(base, "POST", "/api/rooms", {"name": ROOM, "org_id": 1, "lobby": True}, token)
    invite = api(base, "POST", f"/api/rooms/{ROOM}/invitations", {"max_uses": 1},
                 token)["link"]
    others = sorted(s.base_url for s in servers[1:])
    await until(lambda: all(o.replace("http", "ws", 1) in page_csp(base) for o in others),
                10.0, "the other nodes in A's CSP")
    page = await open_page(browser, base + invite + "&name=Khach", "guest")
    try:
        await wait_js(page.page, "window.diemcau && window.diemcau.state === 'lobby'",
                      TIMEOUT_MS)
        assert placed_on(redis_server, ROOM) == "node0"
        # the lobby guest knows the other nodes (and, from a cluster, `cluster` updates)
        await wait_js(page.page, "window.diemcau.nodes.order().length === 3", TIMEOUT_MS)
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(5)
        notices: set[str] = set()
        deadline = time.monotonic() + 60
        probe: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            probe = await page.page.evaluate(LOBBY_PROBE)
            if probe and probe["notice"]:
                notices.add(probe["notice"])
            if probe and probe["state"] == "lobby" and probe["node"] in others:
                break
            await asyncio.sleep(0.05)
        assert probe and probe["state"] == "lobby" and probe["node"] in others, \
            (probe, page.tail())
        # told in Vietnamese that the lobby moved and the host must let them in again
        assert any("phòng chờ" in n for n in notices), notices
        # waiting again cost no second use of the single-use invitation
        assert "token" in page.joins[-1][1] and "invite" not in page.joins[-1][1], page.joins
        where = probe["node"]
        # a host lets the guest in at the lobby's new node
        waiting: list[dict[str, Any]] = []

        def listed() -> bool:
            waiting[:] = api(where, "GET", f"/api/rooms/{ROOM}/lobby", token=token)
            return bool(waiting)
        await until(listed, 10.0, "the guest in the new lobby")
        api(where, "POST", f"/api/rooms/{ROOM}/lobby/{waiting[0]['id']}/admit", token=token)
        await wait_js(page.page, JOINED, TIMEOUT_MS)
        assert not csp_blocked(page)
    except Exception:
        print(page.tail())
        raise
    finally:
        with contextlib.suppress(Exception):
            await page.page.context.close()


async def test_a_page_whose_reachable_nodes_all_die_moves_to_a_later_node(
        tmp_path: Path, browser: Any) -> None:
    """Nodes A and B serve the page; C registers later (outside the page's CSP); A and B die:
    the page moves to C by itself and rejoins there with its join token."""
    with ExitStack() as stack:
        redis_server = stack.enter_context(running_redis(tmp_path))
        data = tmp_path / "data"
        data.mkdir()
        a, b = (start_node(stack, tmp_path, redis_server, i, data) for i in range(2))
        token = login(a)
        api(a.base_url, "POST", "/api/rooms", {"name": ROOM, "org_id": 1}, token)
        link = api(a.base_url, "POST", f"/api/rooms/{ROOM}/tokens",
                   {"name": "Chủ trì", "role": "host"}, token)["link"]
        await until(lambda: b.base_url.replace("http", "ws", 1) in page_csp(a.base_url), 10.0,
                    "B in A's CSP")
        page = await open_page(browser, a.base_url + link
                               + ("" if "name=" in link else "&name=Chu%20tri"), "host")
        try:
            await wait_js(page.page, JOINED, TIMEOUT_MS)
            c = start_node(stack, tmp_path, redis_server, 2, data)
            # the page hears of C (a `cluster` message) but may not open a socket there
            await wait_js(page.page, "window.diemcau.nodes.outside().length === 1", TIMEOUT_MS)
            killed_at = time.monotonic()
            for victim in (a, b):
                os.kill(victim.proc.pid, signal.SIGKILL)
            for victim in (a, b):
                victim.proc.wait(5)
            await wait_js(page.page, f"location.origin === {json.dumps(c.base_url)} && {JOINED}",
                          60_000)
            moved_s = time.monotonic() - killed_at
            assert "moved" not in page.page.url, page.page.url
            assert page.joins[-1][0].startswith(c.base_url.replace("http", "ws", 1))
            assert "token" in page.joins[-1][1], page.joins
            assert not csp_blocked(page), csp_blocked(page)
            load = os.getloadavg()
            print(f"\nmoved to a node outside the page's CSP and joined {moved_s:.1f} s after "
                  f"kill -9 of its nodes; load average {load[0]:.2f}")
        except Exception:
            print(page.tail())
            raise
        finally:
            with contextlib.suppress(Exception):
                await page.page.context.close()


HOSTILE = ["javascript:alert(1)", "data:text/html,x", "//evil.example", "http://u:p@127.0.0.1:1",
           "http://127.0.0.1:1/path", "http://127.0.0.1:1/?q", "ws://127.0.0.1:1",
           '"><script>alert(1)</script>']


async def test_the_page_node_list_and_a_move_accept_only_plain_node_addresses(
        server_url: str, browser: Any) -> None:
    """Without --redis the page has no node list (any socket it opens is its own node's); the
    list in a page's meta keeps only plain http(s) base URLs; no move to anything else; a
    redirect to a hostile address is never a reason to move; a moved page's fragment (the
    rejoin token) leaves the address bar."""
    page = await open_page(browser, f"{server_url}/?room=hostile&name=An#moved=1&rejoin=abc",
                           "hostile")
    try:
        await wait_js(page.page, JOINED, TIMEOUT_MS)
        assert "#" not in page.page.url and "rejoin" not in page.page.url, page.page.url
        assert await page.page.evaluate("window.diemcau.nodes.allowed") is None
        assert await page.page.evaluate("window.diemcau.nodes.outside()") == []
        result = await page.page.evaluate(
            """async (values) => {
              const m = await import('/static/failover.js');
              const doc = new DOMParser().parseFromString('<meta name="diemcau-nodes">',
                                                          'text/html');
              doc.querySelector('meta').setAttribute('content',
                [...values, 'http://127.0.0.1:7', 'https://Node.Example'].join(' '));
              const nodes = new m.NodeList();
              return {
                kept: m.pageNodes(doc),
                moves: values.map((v) => m.movePage(v, { room: 'r', name: 'n' })),
                outside: values.map((address) => m.redirectOutside(
                  { code: 'wrong-node', details: { address } }, nodes)),
              };
            }""", HOSTILE)
        assert result["kept"] == ["http://127.0.0.1:7", "https://node.example"], result
        assert result["moves"] == [False] * len(HOSTILE), result
        assert result["outside"] == [None] * len(HOSTILE), result
        assert page.page.url.startswith(server_url)  # still here
    finally:
        await page.page.context.close()


async def test_a_kiosk_whose_room_runs_on_a_later_node_moves_there(
        tmp_path: Path, browser: Any) -> None:
    """A kiosk page stays open for days: its meeting's room placed on a node that registered
    after the page loaded (outside its CSP) is reached by moving the kiosk page there, with
    its device secret in the fragment."""
    with ExitStack() as stack:
        redis_server = stack.enter_context(running_redis(tmp_path))
        data = tmp_path / "data"
        data.mkdir()
        a, b = (start_node(stack, tmp_path, redis_server, i, data) for i in range(2))
        token = login(a)
        api(a.base_url, "POST", "/api/rooms", {"name": ROOM, "org_id": 1}, token)
        device = api(a.base_url, "POST", "/api/endpoints",
                     {"name": "Phòng họp Huyện A", "org_id": 1}, token)
        start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        end = start + dt.timedelta(minutes=30)
        if end.date() != start.date():
            pytest.skip("too close to midnight UTC for a same-day meeting")
        await until(lambda: b.base_url.replace("http", "ws", 1) in page_csp(a.base_url), 10.0,
                    "B in A's CSP")
        page = await open_page(
            browser, f"{a.base_url}/kiosk?endpoint={device['id']}#secret={device['secret']}",
            "kiosk", viewport={"width": 1920, "height": 1080})
        try:
            await wait_js(page.page, "window.diemcau && window.diemcau.kiosk"
                                     " && window.diemcau.kiosk.state === 'waiting'", TIMEOUT_MS)
            c = await add_node_with_the_room(stack, tmp_path, redis_server, data, a)
            api(a.base_url, "POST", f"/api/rooms/{ROOM}/meetings", {
                "title": "Giao ban tuần", "first_date": start.date().isoformat(),
                "start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"),
                "weekly": False, "utc_offset_min": 0, "endpoint_ids": [device["id"]]}, token)
            await page.page.evaluate("() => { window.diemcau.kiosk.poll(); }")
            await wait_js(page.page, f"location.origin === {json.dumps(c.base_url)}"
                                     " && window.diemcau && window.diemcau.kiosk"
                                     " && window.diemcau.state === 'joined'"
                                     " && window.diemcau.kiosk.state === 'in-meeting'", 60_000)
            assert "secret" not in page.page.url, page.page.url
            assert "endpoint_secret" in page.joins[-1][1], page.joins
            assert page.joins[-1][0].startswith(c.base_url.replace("http", "ws", 1))
            assert not csp_blocked(page), csp_blocked(page)
        except Exception:
            print(page.tail())
            raise
        finally:
            with contextlib.suppress(Exception):
                await page.page.context.close()
