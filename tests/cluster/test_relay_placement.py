"""With ``--redis`` a relay runs on the node that runs its room (issue 14)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from loadtest.client import SyntheticParticipant
from tests.cluster.nodes import start_nodes
from tests.cluster.redisproc import running_redis
from tests.integration.test_relay import call, operator_token
from tests.serverproc import running_server


async def test_a_relay_is_started_on_the_rooms_node(tmp_path: Path) -> None:
    with ExitStack() as stack:
        redis_server = stack.enter_context(running_redis(tmp_path))
        nodes = start_nodes(stack, tmp_path, redis_server.url, 2)
        far_home = tmp_path / "far"
        far_home.mkdir()
        far = stack.enter_context(running_server(far_home))
        person = SyntheticParticipant(nodes[0].base_url, "huyen", "An", audio=False, video=False)
        try:
            await person.join()  # the room is placed on node0
            token = operator_token(nodes[1].base_url, nodes[1].log_text())
            body = {"source_url": far.base_url, "source_room": "tinh"}
            status, answer = await call("POST", nodes[1].base_url + "/api/rooms/huyen/relays",
                                        token, body)
            assert status == 409 and answer["error"] == "wrong-node", answer
            assert nodes[0].base_url in answer["message"]
            token = operator_token(nodes[0].base_url, nodes[0].log_text())
            status, answer = await call("POST", nodes[0].base_url + "/api/rooms/huyen/relays",
                                        token, body)
            assert status == 201 and answer["state"] == "running", answer
        finally:
            await person.leave()
