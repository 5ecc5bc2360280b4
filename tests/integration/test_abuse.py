"""Resource abuse of the signaling side, through a real server process (security issue 8).

Each test first reproduces one attack as an outside client would run it, then checks what the
attacker now gets: one ``error`` with a documented code (or an HTTP refusal before the
WebSocket opens), and nothing else. For attacks that used to stall the event loop the test
asserts on the refusal and on the refusal counter of /metrics (the expensive parse never ran),
never on timing.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from loadtest.client import SyntheticParticipant
from tests.integration.test_bad_input import (
    FIXTURE,
    MIB,
    REPLY_TIMEOUT_S,
    RawClient,
    expect_error,
    expect_pong,
    expect_silence,
    replies_to,
    wait_until,
)
from tests.serverproc import Server, free_port, running_server

SDP = FIXTURE.read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("abuse"), log_level="info") as proc:
        yield proc


def refused(server: Server, reason: str) -> float:
    """diemcau_signaling_refused_total{reason=...} from the server's /metrics."""
    with urllib.request.urlopen(server.base_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf'^diemcau_signaling_refused_total\{{reason="{reason}"\}} (\S+)$', text,
                      re.M)
    return float(match.group(1)) if match else 0.0


async def joined(server: Server, room: str) -> RawClient:
    client = await RawClient(server.base_url).connect()
    await client.send_raw(json.dumps({"type": "join", "room": room, "name": "x"}))
    assert await wait_until(lambda: any(e["type"] == "joined" for e in client.events),
                            REPLY_TIMEOUT_S), client.events
    return client


def rss_kib(server: Server) -> int:
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))  # type: ignore[union-attr]


# -- unauthenticated sockets ---------------------------------------------------------------------


async def test_big_frame_before_join_gets_too_large_and_closes(server: Server) -> None:
    client = await RawClient(server.base_url).connect()
    try:
        # 100 KiB before join: well under the joined limit, over the pre-join one
        await client.send_raw(json.dumps({"type": "ping", "id": "x" * (100 << 10)}))
        assert client.reader is not None
        await asyncio.wait_for(asyncio.shield(client.reader), REPLY_TIMEOUT_S)
        assert [e["code"] for e in client.events] == ["too-large"], client.events
        assert "before `join`" in client.events[0]["message"]
        assert client.ws is not None and client.ws.close_code == 1009
        assert refused(server, "too-large-prejoin") >= 1
    finally:
        await client.close()
    # the attack that grew the RSS from 88 to 184 MiB: 25 sockets sending ~4 MiB before join
    rss_before = rss_kib(server)
    flood = [RawClient(server.base_url) for _ in range(25)]
    try:
        for attacker in flood:
            try:
                await attacker.connect()
                await attacker.send_raw('{"type": "ping", "id": "' + "z" * (4 * MIB) + '"}')
            except (ConnectionError, aiohttp.WSServerHandshakeError):
                pass
        for attacker in flood:
            if attacker.reader is not None:
                await asyncio.wait_for(asyncio.shield(attacker.reader), REPLY_TIMEOUT_S)
            # 1009 from the frame header, or 1006 when the close beat the rest of our frame
            assert attacker.ws is None or attacker.ws.close_code in (1009, 1006)
            assert not [e for e in attacker.events if e.get("type") != "error"]
        print(f"server RSS {rss_before} KiB -> {rss_kib(server)} KiB after 25 sockets sent "
              "4 MiB each before join")
    finally:
        for attacker in flood:
            await attacker.close()
    # a joined client may still send a big (but not too big) frame and gets its answer
    member = await joined(server, "big-frames")
    try:
        await expect_pong(member)
        replies = await replies_to(member, lambda: member.send_raw(
            json.dumps({"type": "ping", "id": "y" * (100 << 10)})))
        assert [r["type"] for r in replies] == ["pong"]
    finally:
        await member.close()


async def test_unjoined_sockets_per_address_are_capped(server: Server) -> None:
    clients = [RawClient(server.base_url) for _ in range(16)]
    try:
        for client in clients:  # sockets that just sit there, never joining
            await client.connect()
        extra = RawClient(server.base_url)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refusal:
            await extra.connect()
        await extra.close()
        assert refusal.value.status == 429
        assert refused(server, "unjoined-per-address") >= 1
    finally:
        for client in clients:
            await client.close()
    # the slots are free again once those sockets are gone
    async def can_connect() -> bool:
        probe = RawClient(server.base_url)
        try:
            await probe.connect()
        except aiohttp.WSServerHandshakeError:
            return False
        finally:
            await probe.close()
        return True

    for _ in range(50):
        if await can_connect():
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("no new socket is accepted after the unjoined ones closed")


async def test_socket_that_never_joins_is_closed(tmp_path: Path) -> None:
    with running_server(tmp_path, extra_args=["--join-timeout", "1"]) as proc:
        client = await RawClient(proc.base_url).connect()
        try:
            assert client.reader is not None
            await asyncio.wait_for(asyncio.shield(client.reader), REPLY_TIMEOUT_S)
            assert [e["code"] for e in client.events] == ["join-timeout"], client.events
            assert client.ws is not None and client.ws.close_code == 1008
        finally:
            await client.close()
        # a socket that joins in time stays
        member = await joined(proc, "in-time")
        try:
            await asyncio.sleep(1.5)  # past the deadline: the joined socket must still answer
            await expect_pong(member)
        finally:
            await member.close()


# -- offers --------------------------------------------------------------------------------------


def many_sections(count: int) -> str:
    head = SDP[: SDP.index("m=")]
    section = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:{}\r\na=rtpmap:111 opus/48000/2\r\n"
    return head + "".join(section.format(i) for i in range(count))


async def test_offer_with_700_sections_is_refused_unparsed(server: Server) -> None:
    client = await joined(server, "sections")
    try:
        before = refused(server, "offer-sections")
        sdp = many_sections(700)
        assert len(sdp) < 64 << 10  # the section cap, not the size cap, refuses it
        error = await expect_error(client, {"type": "publish", "sdp": sdp}, "limit-exceeded",
                                   "700 media sections", "publish")
        assert error["limit"] == 8
        assert refused(server, "offer-sections") == before + 1
        await expect_pong(client)
    finally:
        await client.close()


async def test_offers_per_minute_are_limited(server: Server) -> None:
    client = await joined(server, "re-offers")
    try:
        for _ in range(12):  # bad SDP, cheap to parse: each is answered with bad-sdp
            await expect_error(client, {"type": "publish", "sdp": "v=0"}, "bad-sdp",
                               "cannot use this offer", "publish")
        error = await expect_error(client, {"type": "publish", "sdp": "v=0"}, "rate-limited",
                                   "more than 12 offers in 60 s", "publish")
        assert 1 <= error["retry_after"] <= 61
        assert refused(server, "offer-rate") >= 1
    finally:
        await client.close()


async def test_huge_sdp_is_refused_before_parsing(server: Server) -> None:
    client = await joined(server, "huge-sdp")
    try:
        sdp = SDP + "a=x-padding:" + "p" * (1000 << 10) + "\r\n"  # ~1 MB: fits the frame limit
        await expect_error(client, {"type": "publish", "sdp": sdp}, "bad-message",
                           "length <= 65536", "publish")
    finally:
        await client.close()


async def test_offer_with_too_many_candidates_is_refused(server: Server) -> None:
    client = await joined(server, "sdp-candidates")
    try:
        extra = "".join(f"a=candidate:{i} 1 udp 2122260223 127.0.0.1 {5000 + i} typ host\n"
                        for i in range(30))
        sdp = SDP.replace("a=mid:0\n", "a=mid:0\n" + extra, 1)
        assert sdp != SDP
        error = await expect_error(client, {"type": "publish", "sdp": sdp}, "limit-exceeded",
                                   "34 ICE candidates", "publish")
        assert error["limit"] == 20
    finally:
        await client.close()


# -- trickled ICE candidates (the publisher connection answers: media setup) ---------------------


@pytest.mark.media
async def test_trickled_candidates_are_restricted_and_capped(server: Server) -> None:
    client = await joined(server, "trickle")
    try:
        replies = await replies_to(client, lambda: client.send_raw(
            json.dumps({"type": "publish", "sdp": SDP})))
        assert [r["type"] for r in replies] == ["publish_answer"], replies

        def ice(ip: str, port: int) -> dict:
            return {"type": "ice", "target": "publisher", "candidate": {
                "candidate": f"candidate:9 1 udp 2122260223 {ip} {port} typ host", "sdpMid": "0"}}

        for ip, scope in [("0.0.0.0", "unspecified"), ("::", "unspecified"),
                          ("169.254.10.1", "link-local"), ("fe80::1", "link-local"),
                          ("224.0.0.251", "multicast"), ("255.255.255.255", "broadcast")]:
            await expect_error(client, ice(ip, 5000), "candidate-refused", scope, "ice")
        # loopback: this server announces 127.0.0.1 itself, so such candidates are fine here
        for port in range(6000, 6014):
            await expect_silence(client, ice("127.0.0.1", port))
        error = await expect_error(client, ice("127.0.0.1", 7000), "limit-exceeded",
                                   "more than 20 ICE candidates", "ice")
        assert error["limit"] == 20
        assert refused(server, "trickled-candidates") >= 1
        assert refused(server, "candidate-address") >= 6
        await expect_pong(client)
    finally:
        await client.close()


# -- hygiene -------------------------------------------------------------------------------------


async def test_access_log_does_not_record_secrets(server: Server) -> None:
    secrets = {"token": "TOKEN-abc123", "invite": "INVITE-def456", "password": "PASS-ghi789"}
    query = "&".join(f"{key}={value}" for key, value in secrets.items())
    with urllib.request.urlopen(f"{server.base_url}/?room=r1&name=N&{query}", timeout=5) as resp:
        assert resp.status == 200

    def logged() -> bool:
        return "room=r1" in server.log_text()

    assert await wait_until(logged, REPLY_TIMEOUT_S), server.log_text()[-2000:]
    text = server.log_text()
    for value in secrets.values():
        assert value not in text
    assert "invite=REDACTED" in text and "name=N" in text


def test_data_dir_and_files_are_private(server: Server) -> None:
    data = server.log_path.parent / "data"
    assert data.stat().st_mode & 0o777 == 0o700
    assert (data / "jwt_secret").stat().st_mode & 0o777 == 0o600
    assert (data / "diemcau.sqlite3").stat().st_mode & 0o777 == 0o600
    for name in ("diemcau.sqlite3-wal", "diemcau.sqlite3-shm"):  # SQLite copies the db's mode
        if (data / name).exists():
            assert (data / name).stat().st_mode & 0o777 == 0o600, name


def test_pages_carry_security_headers(server: Server) -> None:
    for path in ("/", "/console"):
        with urllib.request.urlopen(server.base_url + path, timeout=5) as response:
            headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
        assert "frame-ancestors 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert "Strict-Transport-Security" not in headers  # plain HTTP here
    with urllib.request.urlopen(server.base_url + "/static/app.js", timeout=5) as response:
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_websocket_checks_origin(server: Server) -> None:
    url = server.base_url.replace("http", "ws", 1) + "/ws"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refusal:
            await http.ws_connect(url, headers={"Origin": "https://evil.example"})
        assert refusal.value.status == 403
        for origin in (server.base_url, None):  # the page's own origin; no Origin (not a page)
            headers = {"Origin": origin} if origin else {}
            ws = await http.ws_connect(url, headers=headers)
            await ws.send_str('{"type": "ping", "id": 1}')
            assert json.loads((await ws.receive(timeout=REPLY_TIMEOUT_S)).data)["type"] == "pong"
            await ws.close()
    assert refused(server, "origin") >= 1


async def test_allowed_origin_and_separate_metrics_listener(tmp_path: Path) -> None:
    metrics_port = free_port()
    args = ["--allowed-origin", "https://meet.example.org", "--metrics-port", str(metrics_port)]
    with running_server(tmp_path, extra_args=args) as proc:
        async with aiohttp.ClientSession() as http:
            async with http.get(proc.base_url + "/metrics") as response:
                assert response.status == 404  # not on the public listener
            async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as response:
                assert response.status == 200
                assert "diemcau_rooms" in await response.text()
            ws = await http.ws_connect(proc.base_url.replace("http", "ws", 1) + "/ws",
                                       headers={"Origin": "https://meet.example.org"})
            await ws.close()


@pytest.mark.media
async def test_oversized_subscribe_answers_are_refused_unparsed(server: Server) -> None:
    publisher = SyntheticParticipant(server.base_url, "answers", "Pub")
    client: RawClient | None = None
    try:
        await publisher.join()
        client = await joined(server, "answers")
        assert await wait_until(lambda: any(e["type"] == "subscribe_offer"
                                            for e in client.events), REPLY_TIMEOUT_S)
        offer = next(e for e in client.events if e["type"] == "subscribe_offer")["sdp"]
        sections = offer.count("\nm=")
        before = refused(server, "answer-sections"), refused(server, "answer-size")
        error = await expect_error(client, {"type": "subscribe_answer",
                                            "sdp": many_sections(700)},
                                   "limit-exceeded", f"the offer had {sections}",
                                   "subscribe_answer")
        assert error["limit"] == sections
        padded = offer + "a=x-padding:" + "p" * (1000 << 10) + "\r\n"  # right sections, ~1 MB
        await expect_error(client, {"type": "subscribe_answer", "sdp": padded}, "limit-exceeded",
                           "for this offer", "subscribe_answer")
        assert (refused(server, "answer-sections"), refused(server, "answer-size")) == (
            before[0] + 1, before[1] + 1)
        await expect_pong(client)
    finally:
        if client is not None:
            await client.close()
        await publisher.leave()
