"""A cluster node dies under its browsers (issue 14): three `diemcau serve --redis` processes
sharing one data directory, a real redis-server, headless Chromium. Two meeting pages (a join
token, a single-use invitation) and a meeting-room kiosk, all loaded from node A, meet in a room
placed on A; A is killed with SIGKILL; every page rejoins the room through another node by
itself, with the same credentials (the guest's invitation is not spent again), and decodes
video again. The time from the kill to video decoding again (the failover time) is printed.

The kiosk, whose page node is gone, then moves to the node it rejoined through at its next
schedule poll. Also: the node list a page uses comes only from its server's signaling and
holds only plain http(s) base URLs (never the URL's parameters, never credentials).

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
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import CHROMIUM
from pagewait import wait_js

from tests.cluster.nodes import start_nodes
from tests.cluster.redisproc import RedisServer, running_redis
from tests.serverproc import Server

pytestmark = [pytest.mark.browser, pytest.mark.media]

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

ROOM = "Giao-ban"
JOINED = "window.diemcau && window.diemcau.state === 'joined'"
TIMEOUT_MS = 30_000
FAILOVER_TIMEOUT_S = 60.0

# Where a page is: joined, at which node, video frames decoded on its current subscriber
# connection (a new one after a rejoin: it counts from 0), and the status line.
PROBE_JS = """async () => {
  const d = window.diemcau;
  if (!d) return null;
  let frames = 0;
  const pc = d.pcs.subscriber;
  if (pc) {
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') frames += r.framesDecoded || 0;
    });
  }
  const notice = document.getElementById('notice-text');
  return {state: d.state, node: d.nodes ? d.nodes.current : null, frames,
          notice: notice ? notice.textContent : ''};
}"""


def api(base: str, method: str, path: str, body: object = None,
        token: str | None = None) -> Any:
    request = urllib.request.Request(
        base + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json",
                 **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RedisServer, list[Server]]]:
    """Redis and three nodes on one data directory (one store, one signing secret)."""
    with ExitStack() as stack:
        redis_server = stack.enter_context(running_redis(tmp_path))
        data = tmp_path / "data"
        data.mkdir()
        servers = start_nodes(stack, tmp_path, redis_server.url, 3, open_rooms=False,
                              data_dir=data)
        yield redis_server, servers


def placed_on(redis_server: RedisServer, room: str) -> str | None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        node = client.get(f"dc:place:{room}")
        return node.decode() if node else None
    finally:
        client.close()


async def until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout_s} s")
        await asyncio.sleep(0.1)


def page_csp(base: str) -> str:
    with urllib.request.urlopen(base + "/", timeout=5) as response:
        return str(response.headers.get("Content-Security-Policy", ""))


class Page:
    def __init__(self, page: Any, tag: str) -> None:
        self.page = page
        self.tag = tag
        self.lines: list[str] = []
        page.on("console", lambda msg: self.lines.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda err: self.lines.append(f"pageerror: {err}"))
        self.joins: list[tuple[str, list[str]]] = []  # (socket URL, the join's field names)
        page.on("websocket", self._on_ws)

    def _on_ws(self, ws: Any) -> None:
        self.lines.append(f"websocket {ws.url}")

        def sent(payload: Any) -> None:
            with contextlib.suppress(ValueError, TypeError):
                message = json.loads(payload)
                if isinstance(message, dict) and message.get("type") == "join":
                    self.joins.append((ws.url, sorted(message)))
        ws.on("framesent", sent)

    def tail(self) -> str:
        return f"---- console of {self.tag} ----\n" + "\n".join(self.lines[-50:])


async def open_page(browser: Any, url: str, tag: str, viewport: dict[str, int] | None = None
                    ) -> Page:
    context = await browser.new_context(locale="vi-VN", permissions=["camera", "microphone"],
                                        viewport=viewport or {"width": 1280, "height": 800})
    page = Page(await context.new_page(), tag)
    await page.page.goto(url, timeout=15_000)
    return page


async def back_with_video(page: Page, dead: str, killed_at: float) -> dict[str, Any]:
    """Poll until the page is joined at another node than ``dead`` and decodes video there;
    returns when (s after the kill) and whether the Vietnamese "reconnecting" line showed."""
    notices: set[str] = set()
    deadline = killed_at + FAILOVER_TIMEOUT_S
    probe: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        probe = await page.page.evaluate(PROBE_JS)
        if probe:
            if probe["notice"]:
                notices.add(probe["notice"])
            if probe["state"] == "joined" and probe["node"] not in (None, dead) \
                    and probe["frames"] > 0:
                return {"s": round(time.monotonic() - killed_at, 2), "node": probe["node"],
                        "notices": sorted(notices)}
        await asyncio.sleep(0.05)
    raise AssertionError(f"{page.tag}: no video through another node within "
                         f"{FAILOVER_TIMEOUT_S} s: {probe}\n{page.tail()}")


async def test_pages_of_a_killed_node_rejoin_through_another_with_video(
        cluster: tuple[RedisServer, list[Server]], browser: Any) -> None:
    redis_server, servers = cluster
    a = servers[0]
    base = a.base_url
    others = sorted(s.base_url for s in servers[1:])
    password = re.search(r"Operator account 'admin', password (\S+)", a.log_text())
    assert password, a.log_text()
    token = api(base, "POST", "/api/login",
                {"username": "admin", "password": password.group(1)})["token"]
    api(base, "POST", "/api/rooms", {"name": ROOM, "org_id": 1}, token)
    host_link = api(base, "POST", f"/api/rooms/{ROOM}/tokens",
                    {"name": "Chủ trì", "role": "host"}, token)["link"]
    invite_link = api(base, "POST", f"/api/rooms/{ROOM}/invitations", {"max_uses": 1},
                      token)["link"]
    device = api(base, "POST", "/api/endpoints", {"name": "Phòng họp Huyện A", "org_id": 1},
                 token)
    now = dt.datetime.now(dt.UTC)
    start = now.replace(second=0, microsecond=0)
    end = start + dt.timedelta(minutes=30)
    if end.date() != start.date():
        pytest.skip("too close to midnight UTC for a same-day meeting")
    api(base, "POST", f"/api/rooms/{ROOM}/meetings", {
        "title": "Giao ban tuần", "first_date": start.date().isoformat(),
        "start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"), "weekly": False,
        "utc_offset_min": 0, "endpoint_ids": [device["id"]]}, token)
    # A's pages may open their WebSocket at the other nodes (CSP), once A has seen them
    await until(lambda: all(o.replace("http", "ws", 1) in page_csp(base) for o in others),
                10.0, "the other nodes in A's CSP")

    pages: list[Page] = []
    try:
        host_url = base + host_link + ("" if "name=" in host_link else "&name=Chu%20tri")
        pages.append(await open_page(browser, host_url, "host"))
        await wait_js(pages[0].page, JOINED, TIMEOUT_MS)  # the room is placed on A (least id)
        assert placed_on(redis_server, ROOM) == "node0"
        pages.append(await open_page(browser, base + invite_link + "&name=Khach", "guest"))
        pages.append(await open_page(
            browser, f"{base}/kiosk?endpoint={device['id']}#secret={device['secret']}",
            "kiosk", viewport={"width": 1920, "height": 1080}))
        for page in pages:
            await wait_js(page.page, JOINED, TIMEOUT_MS)
        for page in pages:  # everyone decodes video at A, and knows the other two nodes
            await wait_js(page.page, "(async () => (await (" + PROBE_JS + ")()).frames > 0)()",
                          TIMEOUT_MS)
            order = await page.page.evaluate("window.diemcau.nodes.order()")
            assert order == [base, *others], order
        # the kiosk's join() returns once its own camera is published too, which on a busy
        # machine may come after it already decodes the others' video
        await wait_js(pages[2].page, "window.diemcau.kiosk.state === 'in-meeting'", TIMEOUT_MS)
        guest_ids = await pages[1].page.evaluate("window.diemcau.selfId")

        killed_at = time.monotonic()
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(5)
        results = await asyncio.gather(*(back_with_video(p, base, killed_at) for p in pages))
        failover_s = max(r["s"] for r in results)

        new_node = placed_on(redis_server, ROOM)
        assert new_node in ("node1", "node2"), new_node
        where = servers[int(new_node[-1])].base_url
        for page, result in zip(pages, results, strict=True):
            assert result["node"] == where, (page.tag, result)
            # the status line said "reconnecting" in Vietnamese meanwhile
            assert any("kết nối lại" in n for n in result["notices"]), (page.tag, result)
            assert await page.page.evaluate("window.diemcau.reconnectGaveUp") is not True
        # everyone sees the two others again, by name
        for page, names in ((pages[0], ("Khach", "Phòng họp Huyện A")),
                            (pages[1], ("Chủ trì", "Phòng họp Huyện A")),
                            (pages[2], ("Chủ trì", "Khach"))):
            for name in names:
                await page.page.locator(".tile:not(.self) .name", has_text=name).first \
                    .wait_for(timeout=TIMEOUT_MS)
        # the guest came back on its rejoin token (its single-use invitation was spent at the
        # first join), as a new participant of the new node; the kiosk on its device secret
        assert await pages[1].page.evaluate("window.diemcau.selfId") not in (None, guest_ids)
        guest_join = pages[1].joins[-1]
        assert guest_join[0].startswith(where.replace("http", "ws", 1)), pages[1].joins
        assert "token" in guest_join[1] and "invite" not in guest_join[1], pages[1].joins
        assert "invite" in pages[1].joins[0][1], pages[1].joins
        assert "endpoint_secret" in pages[2].joins[-1][1], pages[2].joins
        await wait_js(pages[2].page, "window.diemcau.kiosk.state === 'in-meeting'", TIMEOUT_MS)
        for page in pages:
            blocked = [line for line in page.lines if "Content Security Policy" in line]
            assert not blocked, blocked
        load = os.getloadavg()
        print("\nfailover after kill -9 of the room's node: video again at "
              + ", ".join(f"{p.tag} {r['s']:.1f} s" for p, r in zip(pages, results,
                                                                        strict=True))
              + f" (all by {failover_s:.1f} s); room node0 -> {new_node}; "
              f"load average {load[0]:.2f} {load[1]:.2f}")

        # The kiosk's page node is gone: at its next schedule poll (here after its meeting
        # "ends") it moves to the node it rejoined through, and joins its meeting from there.
        kiosk = pages[2].page
        await kiosk.evaluate("() => { window.diemcau.kiosk.endMeeting(); }")
        await wait_js(kiosk, f"location.origin === {json.dumps(where)} && window.diemcau"
                             " && window.diemcau.kiosk && window.diemcau.state === 'joined'"
                             " && window.diemcau.kiosk.state === 'in-meeting'", TIMEOUT_MS)
        assert "secret" not in kiosk.url  # the secret left the address bar again
        assert "endpoint_secret" in pages[2].joins[-1][1], pages[2].joins
        assert pages[2].joins[-1][0].startswith(where.replace("http", "ws", 1))
        await pages[0].page.locator(".tile:not(.self) .name", has_text="Phòng họp Huyện A") \
            .first.wait_for(timeout=TIMEOUT_MS)
        for page in pages:
            blocked = [line for line in page.lines if "Content Security Policy" in line]
            assert not blocked, blocked
    except Exception:
        for page in pages:
            print(page.tail())
        raise
    finally:
        for page in pages:
            with contextlib.suppress(Exception):
                await page.page.context.close()


HOSTILE = [
    "javascript:alert(1)", "data:text/html,x", "ftp://127.0.0.1:1", "ws://127.0.0.1:1",
    "//evil.example", "evil.example", "http://user:pw@127.0.0.1:1", "http://user@127.0.0.1:1",
    "http://127.0.0.1:1/path", "http://127.0.0.1:1/?q", "http://127.0.0.1:1/#f",
    "http://127.0.0.1:99999", "http://a b", "http://a<b", "http://" + "a" * 300, 42, None,
    {"toString": "http://127.0.0.1:9"}, ["http://127.0.0.1:9"],
]


async def test_the_node_list_comes_only_from_signaling_and_is_checked(
        server_url: str, browser: Any) -> None:
    evil = "http://127.0.0.1:9"
    page = await open_page(browser, f"{server_url}/?room=hostile&name=An&nodes={evil}"
                                    f"&node={evil}&address={evil}", "hostile")
    try:
        await wait_js(page.page, JOINED, TIMEOUT_MS)
        # no --redis: only this page's node, whatever the URL says
        assert await page.page.evaluate("window.diemcau.nodes.order()") == [server_url]
        assert await page.page.evaluate("window.diemcau.nodes.clustered") is False
        checked = await page.page.evaluate(
            "async (values) => { const m = await import('/static/failover.js');"
            " return values.map((v) => m.nodeOrigin(v)); }", HOSTILE)
        assert checked == [None] * len(HOSTILE), list(zip(HOSTILE, checked, strict=True))
        # a list from the server keeps only its valid entries, bounded, without duplicates
        kept = await page.page.evaluate(
            "(values) => { const n = window.diemcau.nodes; n.accept(values); return n.order(); }",
            [*HOSTILE, "http://127.0.0.1:2/", "https://Node.Example", "http://127.0.0.1:2"])
        assert kept == [server_url, "http://127.0.0.1:2", "https://node.example"], kept
        assert await page.page.evaluate("window.diemcau.nodes.accept('http://127.0.0.1:3')") \
            is False
        # a `wrong-node` redirect to anything but a plain http(s) base URL is not followed
        redirects = await page.page.evaluate(
            """async (values) => {
              const m = await import('/static/signaling.js');
              const out = [];
              for (const address of values) {
                const s = new m.Signaling('ws://127.0.0.1:9/ws');
                s.request = () => Promise.reject(
                  new m.SignalingError('wrong-node', 'elsewhere', 'join', { address }));
                s.connect = () => Promise.resolve();
                let code = null;
                try {
                  await s.requestJoin({ type: 'join' }, 'joined');
                } catch (err) { code = err.code; }
                out.push([code, s.url]);
              }
              return out;
            }""", [*HOSTILE, "http://127.0.0.1:7"])
        assert redirects[:-1] == [["wrong-node", "ws://127.0.0.1:9/ws"]] * len(HOSTILE), redirects
        # a good address is followed (then refused again, at most twice)
        assert redirects[-1] == ["wrong-node", "ws://127.0.0.1:7/ws"], redirects
        many = [f"http://127.0.0.1:{1000 + i}" for i in range(100)]
        assert len(await page.page.evaluate(
            "(values) => { const n = window.diemcau.nodes; n.accept(values); return n.order(); }",
            many)) == 33  # this node and at most 32 others
    finally:
        await page.page.context.close()
