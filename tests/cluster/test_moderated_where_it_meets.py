"""A live meeting is moderated and recorded on the node it meets on (issue 14: "the REST API and
console see every node's rooms"): on another node of the cluster its participants, lobby, mutes
and recordings would be an empty, wrong picture (and a recording started there would record
nobody), so those calls get 421 `wrong-node` with the room's node address, which the console
links to. Two real `diemcau serve --redis` processes, a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.cluster.nodes import start_nodes
from tests.cluster.redisproc import RedisServer, running_redis
from tests.cluster.test_rejoin import join
from tests.cluster.test_shared_store import call as call_json
from tests.integration.test_recording import operator_token
from tests.serverproc import Server

ROOM = "giao-ban"


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[RedisServer, list[Server]]]:
    with ExitStack() as stack:
        redis_server = stack.enter_context(running_redis(tmp_path))
        servers = start_nodes(stack, tmp_path, redis_server.url, 2)
        yield redis_server, servers


def call(method: str, url: str, token: str, body: Any = None) -> tuple[int, Any]:
    """A JSON REST call to ``url`` (test_shared_store's ``call``, with the whole URL)."""
    return call_json(url, method, "", token, body)


async def test_a_meeting_is_moderated_on_its_node_and_elsewhere_points_there(
        two_nodes: tuple[RedisServer, list[Server]]) -> None:
    _, servers = two_nodes
    tokens = [operator_token(s.base_url, s.log_text()) for s in servers]
    for server, token in zip(servers, tokens, strict=True):  # each node's own store
        status, orgs = call("GET", server.base_url + "/api/organisations", token)
        assert status == 200 and orgs, orgs
        status, room = call("POST", server.base_url + "/api/rooms", token,
                            {"name": ROOM, "org_id": orgs[0]["id"]})
        assert status == 201, room
    async with aiohttp.ClientSession() as http:
        ws, joined, home = await join(http, servers[0].base_url, ROOM, "Chu toa")
        try:
            here = next(i for i, s in enumerate(servers) if s.base_url == home)
            there = 1 - here
            r = f"/api/rooms/{ROOM}"
            status, people = call("GET", home + r + "/participants", tokens[here])
            assert status == 200 and [p["name"] for p in people] == ["Chu toa"], people
            elsewhere = servers[there].base_url
            for method, path in (("GET", "/participants"), ("GET", "/lobby"),
                                 ("POST", "/recording"), ("DELETE", "/recording"),
                                 ("POST", f"/participants/{joined['participant_id']}/mute")):
                body = {"kind": "audio"} if path.endswith("/mute") else None
                status, error = call(method, elsewhere + r + path, tokens[there], body)
                assert status == 421, (method, path, status, error)
                assert error["error"] == "wrong-node"
                assert error["node_address"] == home, error
            # the meeting was not touched from the other node: no recording, nobody muted
            status, people = call("GET", home + r + "/participants", tokens[here])
            assert status == 200 and not people[0]["audio_muted"], people
            status, recordings = call("GET", home + f"/api/recordings?room={ROOM}",
                                      tokens[here])
            assert status == 200 and recordings == []
        finally:
            await ws.close()
