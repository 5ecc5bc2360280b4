"""Bad input through the real server must not disturb anybody else (docs/protocol.md, Errors).

A healthy room of two aiortc participants exchanges media while a client in another room (and
a raw WebSocket that never joins) sends every kind of bad frame. Each bad frame gets exactly one
``error`` with the documented code, whose message names the problem; the sockets stay usable; the
healthy room keeps receiving media and sees no error.

"Exactly one": after each bad frame the client sends a ``ping`` with a fresh id. The server
handles one socket's frames in order and writes its replies in order, so everything it said about
the bad frame arrives before that ``pong``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from loadtest.client import SyntheticParticipant, wait_until
from signaling.app import create_app
from tests.conftest import base_url, make_config

pytestmark = pytest.mark.media

FIXTURE = Path(__file__).parent.parent / "data" / "chrome156_simulcast_offer.sdp"
REPLY_TIMEOUT_S = 10.0
MEDIA_TIMEOUT_S = 20.0
MIB = 1 << 20

_ping_ids = itertools.count(1)


class RawClient:
    """A bare aiohttp WebSocket that records every message the server sends."""

    def __init__(self, url: str) -> None:
        self.url = url.replace("http", "ws", 1) + "/ws"
        self.events: list[dict[str, Any]] = []
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None

    async def connect(self) -> RawClient:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.url, max_msg_size=16 * MIB)
        self.reader = asyncio.ensure_future(self._read())
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            self.events.append(json.loads(frame.data))

    async def send_raw(self, raw: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(raw)

    async def send_bytes(self, raw: bytes) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(raw)

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()


Client = RawClient | SyntheticParticipant




UNSOLICITED = frozenset({"publish_layers", "speakers", "forwarded", "bandwidth", "quality"})
"""Room state the server pushes on its own timers (a layer switched on, the active speaker): it
may land between a request and its pong on a busy machine and is no answer to the request."""


async def replies_to(client: Client, send: Callable[[], Awaitable[None]]) -> list[dict[str, Any]]:
    """What the server answers to ``send()``, delimited by a ping/pong round trip (room state it
    pushes meanwhile, ``UNSOLICITED``, left out)."""
    mark = len(client.events)
    await send()
    ping_id = f"probe-{next(_ping_ids)}"
    await client.send_raw(json.dumps({"type": "ping", "id": ping_id}))

    def ponged() -> bool:
        return any(e.get("type") == "pong" and e.get("id") == ping_id for e in client.events[mark:])

    assert await wait_until(ponged, REPLY_TIMEOUT_S), (
        f"no pong within {REPLY_TIMEOUT_S} s; got {client.events[mark:]}")
    replies = client.events[mark:]
    end = next(i for i, e in enumerate(replies) if e.get("type") == "pong" and e["id"] == ping_id)
    return [e for e in replies[:end] if e.get("type") not in UNSOLICITED]


async def expect_error(client: Client, frame: str | bytes | dict, code: str, names: str,
                       ref: str | None = None) -> dict[str, Any]:
    """Send one bad frame; exactly one ``error`` comes back, with ``code`` and naming ``names``."""
    if isinstance(frame, bytes):
        assert isinstance(client, RawClient)
        replies = await replies_to(client, lambda: client.send_bytes(frame))
    else:
        raw = frame if isinstance(frame, str) else json.dumps(frame)
        replies = await replies_to(client, lambda: client.send_raw(raw))
    shown = repr(frame)[:80]
    assert len(replies) == 1, f"{shown}: expected exactly one error, got {replies}"
    error = replies[0]
    assert error["type"] == "error", f"{shown}: {error}"
    assert error["code"] == code, f"{shown}: {error}"
    assert names in error["message"], f"{shown}: {names!r} not in {error['message']!r}"
    assert error.get("ref") == ref, f"{shown}: {error}"
    return error


async def expect_silence(client: Client, frame: dict) -> None:
    """A frame the protocol does not answer (e.g. an acceptable ICE candidate)."""
    replies = await replies_to(client, lambda: client.send_raw(json.dumps(frame)))
    assert replies == [], f"{frame}: {replies}"


async def expect_pong(client: Client) -> None:
    assert await replies_to(client, _noop) == []


async def _noop() -> None:
    return None


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[TestServer]:
    """The real application; one abuser sends ~30 offers here, over the usual 12 a minute."""
    test_server = TestServer(create_app(make_config(tmp_path, max_offers_per_minute=100)),
                             host="127.0.0.1")
    await test_server.start_server()
    yield test_server
    await test_server.close()


# -- bad frames of every kind ---------------------------------------------------------------------

SDP = FIXTURE.read_text()


def sub(pattern: str, replacement: str, count: int = 1) -> Callable[[str], str]:
    def mutate(text: str) -> str:
        out, n = re.subn(pattern, replacement, text, count=count, flags=re.M)
        assert n, f"mutation {pattern!r} does not apply to the fixture"
        return out

    return mutate


SDP_MUTATIONS: list[tuple[str, Callable[[str], str], str]] = [
    # (what, mutation of the Chrome offer, what the error message says) - several of these make
    # aiortc raise AssertionError, IndexError, KeyError or AttributeError, not ValueError
    ("forbidden payload type 72", sub(r"^(m=video \d+ \S+) 96 ", r"\1 72 "), "AssertionError"),
    ("payload type 300", sub(r"^(m=video \d+ \S+) 96 ", r"\1 300 "), "AssertionError"),
    ("port not a number", sub(r"^m=video \d+", "m=video port"), "AssertionError"),
    ("m-line without formats", sub(r"^(m=video \d+ UDP/TLS/RTP/SAVPF) .*$", r"\1"),
     "AssertionError"),
    ("candidate too short", sub(r"^a=candidate:.*$", "a=candidate:1 1 udp"), "AssertionError"),
    ("cut inside the first m-line", lambda s: s[: s.index("m=video") + 9], "AssertionError"),
    ("candidate port not a number",
     sub(r"^(a=candidate:\S+ 1 udp \d+ 127.0.0.1) \d+", r"\1 port"), "'port'"),
    ("candidate component not a number", sub(r"^(a=candidate:\S+) 1 udp", r"\1 one udp"),
     "'one'"),
    ("rtpmap without clock rate", sub(r"^a=rtpmap:96 VP8/90000$", "a=rtpmap:96 VP8"),
     "list index out of range"),
    ("rtpmap payload type not a number", sub(r"^a=rtpmap:96 ", "a=rtpmap:x6 "), "'x6'"),
    ("rtpmap clock rate not a number", sub(r"^a=rtpmap:96 VP8/90000$", "a=rtpmap:96 VP8/ninety"),
     "'ninety'"),
    ("rtpmap without space", sub(r"^a=rtpmap:96 VP8/90000$", "a=rtpmap:96VP8/90000"),
     "not enough values to unpack"),
    ("unknown setup role", sub(r"^a=setup:actpass$", "a=setup:sideways"), "'sideways'"),
    ("empty a=rtcp", sub(r"^a=rtcp:9 IN IP4 0.0.0.0$", "a=rtcp"), "has no attribute 'split'"),
    ("extmap id not a number", sub(r"^a=extmap:9 ", "a=extmap:nine "), "'nine'"),
    ("fingerprint without value", sub(r"^a=fingerprint:.*$", "a=fingerprint:sha-256"),
     "not enough values to unpack"),
    ("fmtp apt not a number", sub(r"^a=fmtp:97 apt=96$", "a=fmtp:97 apt=x"), "'x'"),
    ("no ice-ufrag", sub(r"^a=ice-ufrag:.*\n", "", 0),
     "ICE username fragment or password is missing"),
    ("no ice-pwd", sub(r"^a=ice-pwd:.*\n", "", 0), "ICE username fragment or password is missing"),
    ("version not a number", sub(r"^v=0$", "v=x"), "'x'"),
    ("ssrc not a number", sub(r"^a=rtcp-mux$", "a=rtcp-mux\na=ssrc:abc cname:x"), "'abc'"),
    ("cut inside an attribute", lambda s: s[: s.index("a=rtpmap:97")] + "a=rtpmap:9",
     "not enough values to unpack"),
    ("no codec aiortc knows",
     lambda s: re.sub(r"(a=rtpmap:\d+ )(VP8|H264|VP9|AV1|H265)/", r"\1FOO/", s),
     "Failed to set remote video description send parameters"),
]

RAW_BAD_FRAMES: list[tuple[str, str | bytes | dict, str, str, str | None]] = [
    # (what, frame, code, what the message names, ref)
    ("malformed JSON", '{"type": "ping"', "bad-json", "not valid JSON", None),
    ("not JSON at all", "hello?", "bad-json", "not valid JSON", None),
    ("JSON array", '[{"type": "ping"}]', "bad-json", "a message must be a JSON object", None),
    ("JSON string", '"join"', "bad-json", "a message must be a JSON object", None),
    ("binary frame", b'{"type": "ping"}', "bad-json", "binary frames are not accepted", None),
    ("unknown type", {"type": "teleport"}, "unknown-type", "'teleport'", None),
    ("missing type", {"room": "healthy", "name": "x"}, "unknown-type", "no `type`", None),
    ("type not a string", {"type": 7}, "unknown-type", "`$.type`", None),
    ("room not a string", {"type": "join", "room": 5, "name": "x"}, "bad-message", "`$.room`",
     "join"),
    ("name not a string", {"type": "join", "room": "r", "name": ["x"]}, "bad-message", "`$.name`",
     "join"),
    ("empty room name", {"type": "join", "room": "", "name": "x"}, "bad-message", "`$.room`",
     "join"),
    ("room name too long", {"type": "join", "room": "r" * 65, "name": "x"}, "bad-message",
     "`$.room`", "join"),
    ("join without name", {"type": "join", "room": "r"}, "bad-message", "`name`", "join"),
    ("muted not a bool", {"type": "mute", "kind": "audio", "muted": "yes"}, "bad-message",
     "`$.muted`", "mute"),
    ("ping id a float", {"type": "ping", "id": 1.5}, "bad-message", "`$.id`", "ping"),
    ("publish before join", {"type": "publish", "sdp": SDP}, "not-joined", "join", "publish"),
    ("subscribe_answer before join", {"type": "subscribe_answer", "sdp": "v=0"}, "not-joined",
     "join", "subscribe_answer"),
    ("ice before join", {"type": "ice", "target": "publisher", "candidate": None}, "not-joined",
     "join", "ice"),
    ("mute before join", {"type": "mute", "kind": "video", "muted": True}, "not-joined", "join",
     "mute"),
    ("leave before join", {"type": "leave"}, "not-joined", "join", "leave"),
    # (a frame over 32 KiB before join gets too-large and closes the socket: test_abuse.py)
]

BAD_CANDIDATES = [
    # (candidate string, what the message names)
    ("garbage", "bad ICE candidate"),
    ("candidate:", "bad ICE candidate"),
    ("candidate:garbage", "bad ICE candidate"),
    ("candidate:1 1 udp 2122260223 127.0.0.1 5000 typ", "bad ICE candidate"),
    ("candidate:1 1 udp priority 127.0.0.1 5000 typ host", "'priority'"),
    ("candidate:1 one udp 1 127.0.0.1 5000 typ host", "'one'"),
    ("candidate:1 1 udp 1 127.0.0.1 port typ host", "'port'"),
    ("\x00\x01\x02 \ufffd", "bad ICE candidate"),
]


def counts(people: list[SyntheticParticipant]) -> dict[tuple[str, str, str], int]:
    """Frames each healthy participant decoded from the other, per kind."""
    out = {}
    for person in people:
        for other in people:
            if other is person:
                continue
            got = person.received.get(other.participant_id or "", {})
            for kind in ("audio", "video"):
                out[(person.name, other.name, kind)] = got.get(kind, 0)
    return out


async def all_rise(people: list[SyntheticParticipant], since: dict, timeout: float) -> bool:
    return await wait_until(
        lambda: all(n > since[key] for key, n in counts(people).items()), timeout)


async def health(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url + "/healthz") as response:
        return response.status, await response.json()


# -- the test -------------------------------------------------------------------------------------


async def test_bad_input_leaves_everybody_else_alone(server) -> None:
    url = base_url(server)
    healthy = [SyntheticParticipant(url, "healthy", name) for name in ("An", "Binh")]
    abuser = SyntheticParticipant(url, "abuse", "Chi", audio=False, video=False)
    raw = RawClient(url)
    big = RawClient(url)
    try:
        for person in healthy:
            await person.join()
        assert await all_rise(healthy, dict.fromkeys(counts(healthy), 4), MEDIA_TIMEOUT_S), (
            f"the healthy room does not exchange media: {counts(healthy)}")
        before = counts(healthy)

        # 1. a socket that never joins
        await raw.connect()
        for _what, frame, code, names, ref in RAW_BAD_FRAMES:
            await expect_error(raw, frame, code, names, ref)
        await expect_pong(raw)

        # 2. a participant of another room
        await abuser.join()
        await expect_error(abuser, {"type": "join", "room": "healthy", "name": "again"},
                           "already-joined", "already in room 'abuse'", "join")
        await expect_error(abuser, "{not json", "bad-json", "not valid JSON")
        await expect_error(abuser, "[]", "bad-json", "a message must be a JSON object")
        await expect_error(abuser, {"type": "hello"}, "unknown-type", "'hello'")
        await expect_error(abuser, {"kind": "audio"}, "unknown-type", "no `type`")
        await expect_error(abuser, {"type": "mute", "kind": "screen", "muted": True},
                           "bad-message", "`$.kind`", "mute")
        await expect_error(abuser, {"type": "ice", "target": "both"}, "bad-message",
                           "`$.target`", "ice")
        await expect_error(abuser, {"type": "publish", "sdp": ""}, "bad-message", "`$.sdp`",
                           "publish")
        await expect_error(abuser, {"type": "subscribe_answer", "sdp": SDP}, "bad-state",
                           "no subscribe_offer is waiting", "subscribe_answer")
        await expect_error(abuser, {"type": "ice", "target": "publisher", "candidate": None},
                           "bad-state", "no publisher description", "ice")
        await expect_error(abuser, {"type": "ice", "target": "subscriber", "candidate": None},
                           "bad-state", "no subscriber description", "ice")
        for garbage, names in [
            ("garbage\r\nm=video", "SDP must start with v=0"),
            ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "ICE username fragment"),
            ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96\r\n",
             "not enough values to unpack"),
        ]:
            await expect_error(abuser, {"type": "publish", "sdp": garbage}, "bad-sdp",
                               f"cannot use this offer: {names}"[:60], "publish")
        assert len(SDP_MUTATIONS) >= 20
        for what, mutate, names in SDP_MUTATIONS:
            mutated = mutate(SDP)
            assert mutated != SDP, what
            error = await expect_error(abuser, {"type": "publish", "sdp": mutated}, "bad-sdp",
                                       names, "publish")
            assert error["message"].startswith("cannot use this offer: "), (what, error)
        mid_abuse = counts(healthy)

        # the unmodified offer still works on this connection, and then ICE is checked
        replies = await replies_to(abuser, lambda: abuser.send({"type": "publish", "sdp": SDP}))
        assert [r["type"] for r in replies] == ["publish_answer"], replies
        for candidate, names in BAD_CANDIDATES:
            await expect_error(abuser, {"type": "ice", "target": "publisher", "candidate": {
                "candidate": candidate, "sdpMid": "0"}}, "bad-message", names, "ice")
        await expect_silence(abuser, {"type": "ice", "target": "publisher", "candidate": {
            "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 9 typ host", "sdpMid": "0"}})
        await expect_silence(abuser, {"type": "ice", "target": "publisher", "candidate": None})

        # 3. beyond 1 MiB aiohttp closes the socket with 1009; the server lives on
        await big.connect()
        await big.send_raw(json.dumps({"type": "join", "room": "abuse-big", "name": "Dung"}))
        assert await wait_until(lambda: any(e["type"] == "joined" for e in big.events),
                                REPLY_TIMEOUT_S)
        assert (await health(url))[1]["participants"] == 4
        try:
            await big.send_raw('{"type": "ping", "id": "' + "x" * MIB + '"}')
        except ConnectionError:
            pass  # the server may close before it has read the whole frame
        assert big.reader is not None
        await asyncio.wait_for(asyncio.shield(big.reader), REPLY_TIMEOUT_S)
        assert big.ws is not None and big.ws.closed
        assert big.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG == 1009
        assert not [e for e in big.events if e["type"] == "error"], big.events

        async def big_left() -> bool:
            status, body = await health(url)
            return status == 200 and body["participants"] == 3

        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPLY_TIMEOUT_S
        while not await big_left() and loop.time() < deadline:
            await asyncio.sleep(0.1)
        assert await big_left(), await health(url)

        # afterwards: the server, both bad sockets and the healthy room are fine
        status, body = await health(url)
        assert status == 200 and body["status"] == "ok", body
        assert body["rooms"] >= 2 and body["participants"] == 3, body
        await expect_pong(raw)
        await expect_pong(abuser)
        assert not [e for e in raw.events if e.get("code") == "internal"]
        assert not [e for e in abuser.events if e.get("code") == "internal"]

        during = counts(healthy)
        assert all(during[key] > before[key] for key in before), (before, mid_abuse, during)
        assert await all_rise(healthy, during, MEDIA_TIMEOUT_S), (
            f"the healthy room stopped receiving media after the abuse: {during} -> "
            f"{counts(healthy)}")
        for person in healthy:
            assert person.errors == [], (person.name, person.errors)
            assert set(person.others) == {p.participant_id for p in healthy} - {
                person.participant_id}
    finally:
        await raw.close()
        await big.close()
        await asyncio.gather(*(p.leave() for p in [*healthy, abuser]), return_exceptions=True)


# -- inputs that once got past the server (regression tests) ------------------------------------


async def _joined(url: str, room: str) -> RawClient:
    client = await RawClient(url).connect()
    await client.send_raw(json.dumps({"type": "join", "room": room, "name": "x"}))
    assert await wait_until(lambda: any(e["type"] == "joined" for e in client.events),
                            REPLY_TIMEOUT_S)
    return client


@pytest.mark.parametrize("garbage", ["hello world", "\x00\x01\x02", "<html></html>", "v=0"])
async def test_garbage_sdp_is_bad_sdp(server, garbage: str) -> None:
    client = await _joined(base_url(server), "garbage-sdp")
    try:
        await expect_error(client, {"type": "publish", "sdp": garbage}, "bad-sdp",
                           "cannot use this offer", "publish")
    finally:
        await client.close()


@pytest.mark.parametrize("candidate", [
    "candidate:1 1 udp 2122260223 127.0.0.1 99999 typ host",
    "candidate:1 1 udp 2122260223 127.0.0.1 9 typ sideways",
    "candidate:1 1 sctp 2122260223 127.0.0.1 9 typ host",
    "candidate:1 1 udp 2122260223 not-an-address 9 typ host",
])
async def test_ice_candidate_out_of_range_is_refused(server, candidate: str) -> None:
    client = await _joined(base_url(server), "bad-ice")
    try:
        replies = await replies_to(client, lambda: client.send_raw(json.dumps(
            {"type": "publish", "sdp": SDP})))
        assert [r["type"] for r in replies] == ["publish_answer"]
        await expect_error(client, {"type": "ice", "target": "publisher", "candidate": {
            "candidate": candidate, "sdpMid": "0"}}, "bad-message", "candidate", "ice")
    finally:
        await client.close()


async def test_deeply_nested_json_is_bad_json(server) -> None:
    client = await RawClient(base_url(server)).connect()
    try:
        await expect_error(client, '{"type": "ping", "x": ' + "[" * 1000 + "]" * 1000 + "}",
                           "bad-json", "JSON")
    finally:
        await client.close()


async def test_too_large_counts_bytes(server) -> None:
    client = await RawClient(base_url(server)).connect()
    try:
        # over the 32 KiB limit before join in bytes, not in characters
        frame = '{"type": "ping", "id": "' + "\u0103" * (24 << 10) + '"}'
        assert 32 << 10 < len(frame.encode()) < MIB and len(frame) < 32 << 10
        await client.send_raw(frame)
        assert client.reader is not None
        await asyncio.wait_for(asyncio.shield(client.reader), REPLY_TIMEOUT_S)
        assert [e["code"] for e in client.events] == ["too-large"], client.events
        assert f"of {len(frame.encode())} bytes exceeds the limit" in client.events[0]["message"]
    finally:
        await client.close()
