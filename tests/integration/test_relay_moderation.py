"""B's hosts moderate the people a relay brings in (issue 14): a chair on server A relayed into
a room of server B; B's operator mutes the relayed chair's audio, then removes the chair, with
B's ordinary REST calls. B's participants stop receiving that audio (and then the video), see
the chair muted and then gone; A's meeting is untouched: A's listener keeps receiving the chair,
who is told nothing. Both calls are in B's audit trail.

Two real server processes, real aiortc peers, inside the network namespace (as
tests/integration/test_relay.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.client import SyntheticParticipant, wait_until
from tests.integration.test_relay import DEADLINE_S, FRAMES, call, near_id_of, operator_token
from tests.serverproc import running_server

pytestmark = pytest.mark.media

LEAK = 5
"""Frames a B viewer may still decode after a mute or removal took effect (in flight, and
what aiortc's jitter buffer held)."""


@pytest.mark.parametrize("workers", ["0", "2"], ids=["in-process", "workers-2"])
async def test_b_mutes_and_removes_the_relayed_chair_and_a_goes_on(
        tmp_path: Path, workers: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    args = ["--workers", workers]
    with (running_server(tmp_path / "a", extra_args=args) as server_a,
          running_server(tmp_path / "b", extra_args=args) as server_b):
        token_a = operator_token(server_a.base_url, server_a.log_text())
        token_b = operator_token(server_b.base_url, server_b.log_text())
        _, orgs = await call("GET", server_b.base_url + "/api/organisations", token_b)
        status, room = await call("POST", server_b.base_url + "/api/rooms", token_b,
                                  {"name": "huyen", "org_id": orgs[0]["id"]})
        assert status == 201, room  # moderated rooms are stored rooms
        chair = SyntheticParticipant(server_a.base_url, "trung-uong", "Chair")
        listener = SyntheticParticipant(server_a.base_url, "trung-uong", "Tinh", video=False)
        viewers = [SyntheticParticipant(server_b.base_url, "huyen", f"Huyen {n}", audio=False,
                                        video=False) for n in (1, 2)]
        b_room = server_b.base_url + "/api/rooms/huyen"
        relays = b_room + "/relays"
        try:
            await chair.join()
            await listener.join()
            status, relay = await call("POST", relays, token_b, {
                "source_url": server_a.base_url, "source_room": "trung-uong",
                "participants": [chair.participant_id]})
            assert status == 201, relay
            for viewer in viewers:
                await viewer.join()
            near = await near_id_of(relays, token_b, str(chair.participant_id))
            far = str(chair.participant_id)
            assert await wait_until(lambda: all(
                v.received[near]["video"] > FRAMES and v.received[near]["audio"] > FRAMES
                for v in viewers), DEADLINE_S), [dict(v.received) for v in viewers]
            status, people = await call("GET", b_room + "/participants", token_b)
            listed = {p["id"]: p for p in people}
            assert listed[near]["role"] == "relay" and not listed[near]["audio_muted"], people

            # 1. B mutes the relayed chair's audio: B stops forwarding it, B's clients see it
            status, body = await call("POST", f"{b_room}/participants/{near}/mute", token_b,
                                      {"kind": "audio"})
            assert status == 204, body
            assert await wait_until(lambda: all(any(
                e["type"] == "track_muted" and e.get("participant_id") == near
                and e.get("kind") == "audio" and e.get("muted") for e in v.events)
                for v in viewers), DEADLINE_S)
            status, people = await call("GET", b_room + "/participants", token_b)
            assert {p["id"]: p for p in people}[near]["audio_muted"] is True, people
            heard = [v.received[near]["audio"] for v in viewers]
            seen = [v.received[near]["video"] for v in viewers]
            a_heard = listener.received[far]["audio"]
            # A's listener goes on hearing the chair (whose audio still reaches the relay) while
            # B's viewers hear nothing more of it, and keep seeing the chair
            assert await wait_until(lambda: listener.received[far]["audio"] > a_heard + 3 * FRAMES
                                    and all(v.received[near]["video"] > s + FRAMES
                                            for v, s in zip(viewers, seen, strict=True)),
                                    DEADLINE_S)
            assert all(v.received[near]["audio"] <= h + LEAK
                       for v, h in zip(viewers, heard, strict=True)), \
                (heard, [dict(v.received) for v in viewers])

            # 2. B removes the relayed chair: out of B's room; A's meeting goes on
            status, body = await call("DELETE", f"{b_room}/participants/{near}", token_b)
            assert status == 204, body
            assert await wait_until(lambda: all(near not in v.others for v in viewers),
                                    DEADLINE_S), [v.others for v in viewers]
            status, people = await call("GET", b_room + "/participants", token_b)
            assert near not in {p["id"] for p in people}, people
            _, listed_relays = await call("GET", relays, token_b)
            stats = listed_relays[0]["stats"]
            assert stats["participants"] == {} and stats["tracks"] == [], stats
            assert stats["moderation"] == {"removed": [far], "muted": {far: ["audio"]}}, stats
            assert listed_relays[0]["state"] == "running"  # the relay itself stays
            seen = [v.received[near]["video"] for v in viewers]
            a_seen = listener.received[far]["video"]
            assert await wait_until(
                lambda: listener.received[far]["video"] > a_seen + 2 * FRAMES, DEADLINE_S)
            assert all(v.received[near]["video"] <= s + LEAK
                       for v, s in zip(viewers, seen, strict=True)), seen
            # A: the chair was told nothing, is not muted there, and still has the relay
            assert not [e for e in chair.events if e["type"] in ("muted_by_host", "left")]
            status, people_a = await call("GET", server_a.base_url
                                          + "/api/rooms/trung-uong/participants", token_a)
            if status == 200:  # an open room without a stored record answers 404 there
                chair_a = {p["id"]: p for p in people_a}[far]
                assert not chair_a["audio_muted"], people_a
            assert any(name == "huyen (relay)" for name in chair.others.values()), chair.others

            # 3. The same codes as for a local participant: gone now, 404
            status, body = await call("DELETE", f"{b_room}/participants/{near}", token_b)
            assert status == 404, body
            status, body = await call("POST", f"{b_room}/participants/{near}/mute", token_b,
                                      {"kind": "video"})
            assert status == 404, body

            # 4. Audited on B
            status, audit = await call("GET", server_b.base_url + "/api/audit?room=huyen",
                                       token_b)
            assert status == 200, audit
            done = {(row["action"], row["outcome"]) for row in audit
                    if row["target"] == f"pid={near}"}
            assert {("api.mute", "ok"), ("api.remove", "ok")} <= done, audit
        finally:
            for person in (chair, listener, *viewers):
                await person.leave()
