"""The same synthetic load against Janus 1.1.2 (Debian ``janus``, VideoRoom over its HTTP API).

Recipe: inside the private namespace, a veth with 127.0.0.2/32
(libnice gathers nothing on lo and its sends from 127.0.0.1 fail), Janus with
``ice_enforce_list`` = that veth and ``interface`` 127.0.0.2, only the videoroom plugin and the
HTTP transport on 127.0.0.1:8088; our clients' host candidates limited to 127.0.0.2. VideoRoom
sequence: ``create``, ``attach``; publisher ``join`` (ptype publisher) then ``publish`` with the
offer, then a trickle ``{"completed": true}``; subscribers only once the publishers are connected
(``join`` ptype subscriber with ``streams`` gives Janus' offer, answered with ``start``). Events
by long poll ``GET /janus/<session>?maxev=N``.

``JanusParticipant`` is a ``LoadParticipant`` whose signaling is this HTTP API: it publishes the
same simulcast VP8 + Opus and measures what it receives in the same way. Janus has no metrics
endpoint: its CPU and memory come from ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.client import SignalingError
from loadtest.quality import LoadParticipant
from loadtest.server import BenchError, process_cpu_s, process_rss_mib

JANUS_URL = "http://127.0.0.1:8088/janus"
JANUS_HOST = "127.0.0.2"
VETH = ("ltjanus0", "ltjanus1")
LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
ROOM_BASE = 1000
HEALTH_TIMEOUT_S = 20.0


def room_id(room: str) -> int:
    return ROOM_BASE + int(room.rsplit("-", 1)[-1])


def _transaction() -> str:
    return f"{random.getrandbits(64):016x}"


class JanusApi:
    """One Janus session over HTTP: requests, and events by long poll routed by transaction."""

    def __init__(self, url: str = JANUS_URL) -> None:
        self.url = url
        self.http: aiohttp.ClientSession | None = None
        self.session_id: int | None = None
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.hangups = 0
        self.failed = False
        self._poller: asyncio.Task[None] | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self.http is not None
        async with self.http.post(self.url + path, json=body,
                                  timeout=aiohttp.ClientTimeout(total=15)) as response:
            reply = await response.json(content_type=None)
        if reply.get("janus") == "error":
            raise SignalingError({"code": f"janus-{reply['error'].get('code')}",
                                  "message": reply["error"].get("reason")})
        return reply

    async def create(self) -> None:
        self.http = aiohttp.ClientSession()
        reply = await self._post("", {"janus": "create", "transaction": _transaction()})
        self.session_id = reply["data"]["id"]
        self._poller = asyncio.ensure_future(self._poll())

    async def attach(self) -> int:
        reply = await self._post(f"/{self.session_id}", {
            "janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": _transaction()})
        return int(reply["data"]["id"])

    async def message(self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None,
                      timeout: float = 15.0) -> dict[str, Any]:
        """A plugin request; returns its (synchronous or asynchronous) reply."""
        transaction = _transaction()
        future = asyncio.get_running_loop().create_future()
        self.pending[transaction] = future
        request: dict[str, Any] = {"janus": "message", "body": body, "transaction": transaction}
        if jsep is not None:
            request["jsep"] = jsep
        try:
            reply = await self._post(f"/{self.session_id}/{handle}", request)
            if reply.get("janus") != "ack":
                return self._checked(reply)
            return self._checked(await asyncio.wait_for(future, timeout))
        finally:
            self.pending.pop(transaction, None)

    @staticmethod
    def _checked(reply: dict[str, Any]) -> dict[str, Any]:
        data = reply.get("plugindata", {}).get("data", {})
        if "error_code" in data:
            raise SignalingError({"code": f"janus-{data['error_code']}",
                                  "message": data.get("error")})
        return reply

    async def trickle_done(self, handle: int) -> None:
        await self._post(f"/{self.session_id}/{handle}", {
            "janus": "trickle", "candidate": {"completed": True}, "transaction": _transaction()})

    async def _poll(self) -> None:
        assert self.http is not None
        try:
            while True:
                async with self.http.get(f"{self.url}/{self.session_id}?maxev=10",
                                         timeout=aiohttp.ClientTimeout(total=40)) as response:
                    events = await response.json(content_type=None)
                for event in events if isinstance(events, list) else [events]:
                    kind = event.get("janus")
                    if kind == "hangup":
                        self.hangups += 1
                    future = self.pending.get(event.get("transaction", ""))
                    if future is not None and not future.done() and kind != "ack":
                        future.set_result(event)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the session is gone: the supervisor sees it
            self.failed = True

    async def destroy(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        if self.http is not None:
            with contextlib.suppress(Exception):
                await self._post(f"/{self.session_id}",
                                 {"janus": "destroy", "transaction": _transaction()})
            await self.http.close()


class JanusParticipant(LoadParticipant):
    """Publishes and subscribes through Janus' VideoRoom instead of our signaling."""

    def __init__(self, base_url: str, room: str, name: str, **kwargs: Any) -> None:
        kwargs["send_tiles"] = False
        super().__init__(base_url, room, name, **kwargs)
        self.api = JanusApi(base_url)
        self.room_id = room_id(room)
        self.pub_handle = 0
        self.sub_handle = 0

    async def connect(self) -> None:
        await self.api.create()
        self.pub_handle = await self.api.attach()

    async def request(self, message: dict[str, Any], reply: str,
                      timeout: float = 10.0) -> dict[str, Any]:
        kind = message["type"]
        if kind == "join":
            event = await self.api.message(self.pub_handle, {
                "request": "join", "ptype": "publisher", "room": self.room_id,
                "display": self.name}, timeout=timeout)
            data = event["plugindata"]["data"]
            return {"participant_id": str(data["id"]), "participants": [
                {"id": str(p["id"]), "name": p.get("display", "")}
                for p in data.get("publishers", [])]}
        if kind == "publish":
            # Janus takes the first rid as the highest substream (seen: with q;h;f every
            # subscriber got q). List them f;h;q so that Janus' default target, its highest
            # substream, is our f layer, as our server forwards without tiles.
            sdp = (message["sdp"].replace("a=simulcast:send q;h;f", "a=simulcast:send f;h;q")
                   .replace("a=rid:q send\r\na=rid:h send\r\na=rid:f send",
                            "a=rid:f send\r\na=rid:h send\r\na=rid:q send"))
            event = await self.api.message(
                self.pub_handle, {"request": "publish", "audio": True, "video": True},
                {"type": "offer", "sdp": sdp}, timeout)
            await self.api.trickle_done(self.pub_handle)
            return {"sdp": event["jsep"]["sdp"]}
        raise ValueError(f"no Janus equivalent for {kind}")

    async def send(self, message: dict[str, Any]) -> None:
        pass  # tiles, uplink: nothing in Janus' API

    async def subscribe_all(self, timeout: float = 20.0) -> None:
        """Subscribe to every other publisher of the room (one multistream handle)."""
        listing = await self.api.message(self.pub_handle, {
            "request": "listparticipants", "room": self.room_id}, timeout=timeout)
        feeds = [p for p in listing["plugindata"]["data"].get("participants", [])
                 if p.get("publisher") and str(p["id"]) != self.participant_id]
        if not feeds:
            return
        self.others = {str(p["id"]): p.get("display", "") for p in feeds}
        self.sub_handle = await self.api.attach()
        event = await self.api.message(self.sub_handle, {
            "request": "join", "ptype": "subscriber", "room": self.room_id,
            "streams": [{"feed": p["id"]} for p in feeds]}, timeout=timeout)
        streams = event["plugindata"]["data"].get("streams", [])
        tracks = {str(s["mid"]): {"participant_id": str(s.get("feed_id")), "kind": s["type"],
                                  "stream_id": str(s.get("feed_id"))}
                  for s in streams if s.get("type") in ("audio", "video")}
        await self._answer({"sdp": event["jsep"]["sdp"], "tracks": tracks})

    async def send_answer(self, sdp: str) -> None:
        await self.api.message(self.sub_handle, {"request": "start"},
                               {"type": "answer", "sdp": sdp})
        await self.api.trickle_done(self.sub_handle)

    def broken(self) -> bool:
        return self.api.failed or "failed" in (self.publisher.connectionState,
                                               self.subscriber.connectionState)

    async def leave(self) -> None:
        await self.close()

    async def close(self) -> None:
        if self.pacer is not None:
            self.pacer.remove(self)
        if self.audio_track is not None:
            self.audio_track.stop()
        for task in list(self._tasks):
            task.cancel()
        await self.publisher.close()
        await self.subscriber.close()
        await self.api.destroy()


# -- the Janus process ----------------------------------------------------------------------------


JANUS_JCFG = """general: {{
    configs_folder = "{d}"
    plugins_folder = "{d}/plugins"
    transports_folder = "{d}/transports"
    events_folder = "{d}/events"
    loggers_folder = "{d}/loggers"
    debug_level = 3
    session_timeout = 60
}}
certificates: {{}}
media: {{
    rtp_port_range = "20000-40000"
}}
nat: {{
    ice_enforce_list = "{veth}"
}}
plugins: {{}}
transports: {{}}
events: {{}}
loggers: {{}}
"""
HTTP_JCFG = """general: {
    json = "compact"
    base_path = "/janus"
    http = true
    port = 8088
    ip = "127.0.0.1"
    https = false
}
admin: {
    admin_http = false
}
"""
VIDEOROOM_JCFG = "general: {\n}\n"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class JanusTarget:
    """Janus as a subprocess on 127.0.0.2 / HTTP 127.0.0.1:8088, with its rooms created."""

    name = "janus"

    def __init__(self, rooms: int, participants: int, cpus: set[int] | None = None) -> None:
        self.rooms = rooms
        self.participants = participants
        self.cpus = cpus  # pin Janus (every thread) to these cores
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._veth = False

    def _pin(self) -> None:
        """Pin every thread Janus has (those started before the first call included)."""
        if self.cpus is None or self.proc is None:
            return
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.sched_setaffinity(int(task.name), self.cpus)

    def worker_options(self) -> dict[str, Any]:
        return {"base_url": JANUS_URL, "target": "janus", "ice_addresses": [JANUS_HOST]}

    async def start(self) -> None:
        binary = shutil.which("janus")
        if binary is None:
            raise BenchError("janus is not installed (apt-get install -y janus)")
        _ip("link", "add", VETH[0], "type", "veth", "peer", "name", VETH[1])
        self._veth = True
        _ip("addr", "add", f"{JANUS_HOST}/32", "dev", VETH[0])
        _ip("link", "set", VETH[0], "up")
        _ip("link", "set", VETH[1], "up")
        self._tmp = tempfile.TemporaryDirectory(prefix="diemcau-janus-")
        d = Path(self._tmp.name)
        for sub, lib in (("plugins", "libjanus_videoroom.so"), ("transports", "libjanus_http.so")):
            (d / sub).mkdir()
            (d / sub / lib).symlink_to(LIB / sub / lib)
        for sub in ("events", "loggers"):
            (d / sub).mkdir()
        (d / "janus.jcfg").write_text(JANUS_JCFG.format(d=d, veth=VETH[0]))
        (d / "janus.transport.http.jcfg").write_text(HTTP_JCFG)
        (d / "janus.plugin.videoroom.jcfg").write_text(VIDEOROOM_JCFG)
        self.log_path = d / "janus.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "-F", str(d), "-C", str(d / "janus.jcfg"), "-i", JANUS_HOST,
                 "-E", VETH[0], "-o", "-d", "3"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._pin()  # threads started from now on inherit it
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HEALTH_TIMEOUT_S
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.poll() is not None or loop.time() > deadline:
                    raise BenchError(f"janus did not start:\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                    async with http.get(JANUS_URL + "/info",
                                        timeout=aiohttp.ClientTimeout(total=1)) as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.2)
        self._pin()  # any thread started before the first call
        admin = JanusApi()
        await admin.create()
        try:
            handle = await admin.attach()
            for i in range(self.rooms):
                await admin.message(handle, {
                    "request": "create", "room": ROOM_BASE + i, "publishers":
                    self.participants + 1, "videocodec": "vp8", "audiocodec": "opus",
                    "bitrate": 0, "notify_joining": False})
        finally:
            await admin.destroy()

    async def sample(self) -> dict[str, float]:
        assert self.proc is not None
        return {"cpu_s": process_cpu_s(self.proc.pid), "rss_mb":
                process_rss_mib(self.proc.pid) * 1.048576, "at": time.monotonic()}

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def problems(self) -> list[str]:
        with contextlib.suppress(OSError):
            return [line for line in self.log_path.read_text(errors="replace").splitlines()
                    if "[ERR]" in line][:20]
        return []

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._veth:
            with contextlib.suppress(Exception):
                _ip("link", "del", VETH[0])
        if self._tmp is not None:
            self._tmp.cleanup()
