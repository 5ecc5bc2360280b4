"""The console of a cluster (issue 14: "the REST API and console see every node's rooms"): an
operator on any node sees each room's seats across the cluster and the node it meets on; the
live tab of a meeting on another node says so and links to that node's console (moderation and
recording happen where the meeting is), and on the room's own node it shows the participants.

Two real `diemcau serve --redis` processes, a real redis-server, Debian's chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import aiohttp
import pytest
from pagewait import wait_js

from tests.cluster.nodes import start_nodes
from tests.cluster.redisproc import running_redis
from tests.cluster.test_moderated_where_it_meets import ROOM, call
from tests.cluster.test_rejoin import join
from tests.integration.test_recording import operator_token
from tests.serverproc import Server

pytestmark = [pytest.mark.browser, pytest.mark.media]

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

UI_TIMEOUT_MS = 15_000


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Server]]:
    with ExitStack() as stack:
        redis_server = stack.enter_context(running_redis(tmp_path))
        yield start_nodes(stack, tmp_path, redis_server.url, 2)


async def _console(browser, server: Server):
    context = await browser.new_context(locale="vi-VN")
    page = await context.new_page()
    await page.goto(server.base_url + "/console", timeout=UI_TIMEOUT_MS)
    password = server.log_text().split("Operator account 'admin', password ", 1)[1].split()[0]
    login = page.locator("#login-form")
    await login.locator("[name=username]").fill("admin")
    await login.locator("[name=password]").fill(password)
    await login.locator("button[type=submit]").click()
    return page


async def test_the_console_sees_the_clusters_rooms_and_points_to_the_meetings_node(
        nodes: list[Server], browser) -> None:
    for server in nodes:
        token = operator_token(server.base_url, server.log_text())
        _, orgs = call("GET", server.base_url + "/api/organisations", token)
        status, room = call("POST", server.base_url + "/api/rooms", token,
                            {"name": ROOM, "org_id": orgs[0]["id"]})
        assert status == 201, room
    async with aiohttp.ClientSession() as http:
        ws, _, home_url = await join(http, nodes[1].base_url, ROOM, "Chu toa")
        try:
            home = next(i for i, s in enumerate(nodes) if s.base_url == home_url)
            other = nodes[1 - home]
            # the other node's console: one person in the room, meeting on the home node
            page = await _console(browser, other)
            badge = page.locator(f'#room-list [data-room="{ROOM}"] .badge[data-count="1"]'
                                 f'[data-node="node{home}"]')
            await badge.wait_for(timeout=UI_TIMEOUT_MS)
            await page.click(f'#room-list [data-room="{ROOM}"]')
            await page.click('#tabs [data-tab="live"]')
            note = page.locator("#live-elsewhere")
            await note.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
            link = await note.locator("a").get_attribute("href")
            assert link == home_url + "/console", link
            assert await page.locator("#live-here").is_hidden()
            # the home node's console: the participant, and no note
            page_home = await _console(browser, nodes[home])
            await page_home.click(f'#room-list [data-room="{ROOM}"]')
            await page_home.click('#tabs [data-tab="live"]')
            await wait_js(page_home, "document.querySelectorAll("
                          "'#participants tr[data-participant-id]').length === 1",
                          timeout=UI_TIMEOUT_MS)
            assert await page_home.locator("#live-elsewhere").is_hidden()
        finally:
            await ws.close()
