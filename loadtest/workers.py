"""Load-generator processes for ``diemcau loadtest``: each hosts some ``LoadParticipant``s.

The parent sends commands over a pipe: ``join`` (specs), ``subscribe`` (Janus only),
``window`` (per-participant figures since the last window; optionally a new window starts),
``stop``. A worker outlives nothing: it stops when told, when the parent goes away, or after
``CHILD_LIFETIME_S``. A supervisor rejoins a participant whose socket or connection failed
(bounded), and counts it as a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from loadtest.childproc import ChildProcess, obey_parent
from loadtest.client import SignalingError
from loadtest.media import AUDIO_LEVEL_DBOV
from loadtest.pacer import Pacer
from loadtest.quality import LoadParticipant, content_index
from loadtest.server import process_cpu_s, process_wait_s

logger = logging.getLogger(__name__)

JOIN_CONCURRENCY = 4
JOIN_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
MAX_RECONNECTS = 3
SILENCE_DBOV = 127
SUPERVISE_PERIOD_S = 1.0


class WorkerCore:
    """The participants of one process."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options  # base_url, target, downlink_bps, send_tiles, ice_addresses
        self.participants: dict[str, LoadParticipant] = {}
        self.markers = content_index()
        self.pacer = Pacer()  # one timer for every publisher here
        self._semaphore = asyncio.Semaphore(JOIN_CONCURRENCY)
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    def _make(self, spec: dict[str, Any]) -> LoadParticipant:
        kwargs = {"downlink_bps": self.options.get("downlink_bps", 20_000_000),
                  "send_tiles": self.options.get("send_tiles", True),
                  "marker_index": self.markers,
                  "added_delay_ms": self.options.get("added_delay_ms", 0.0),
                  "uplink_bps": self.options.get("uplink_bps", 20_000_000),
                  "gallery_page": self.options.get("gallery_page"),
                  "lose_every": self.options.get("lose_every", 0),
                  "pacer": self.pacer,
                  # a muted microphone still sends Opus, at the level of silence (RFC 6464)
                  "audio_level_dbov": AUDIO_LEVEL_DBOV if spec.get("speaking", True)
                  else SILENCE_DBOV,
                  "ice_addresses": self.options.get("ice_addresses") or ["127.0.0.1"]}
        if self.options.get("target") == "janus":
            from loadtest.janus import JanusParticipant

            return JanusParticipant(self.options["base_url"], spec["room"], spec["name"], **kwargs)
        return LoadParticipant(self.options["base_url"], spec["room"], spec["name"], **kwargs)

    async def _join_one(self, spec: dict[str, Any]) -> dict[str, Any]:
        async with self._semaphore:
            participant = self._make(spec)
            started = time.monotonic()
            result: dict[str, Any] = {"name": spec["name"], "room": spec["room"], "ok": False}
            try:
                await participant.join(JOIN_TIMEOUT_S)
                result.update(ok=True, join_ms=participant.join_ms,
                              published_at=participant.published_at)
                self.participants[spec["name"]] = participant
            except SignalingError as exc:
                result.update(code=exc.code, ms=(time.monotonic() - started) * 1000)
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                result.update(code=type(exc).__name__, error=str(exc)[:200],
                              ms=(time.monotonic() - started) * 1000)
            if not result["ok"]:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(participant.close(), STOP_TIMEOUT_S)
            return result

    async def join(self, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self._supervisor is None:
            self._supervisor = asyncio.ensure_future(self._supervise())
        return list(await asyncio.gather(*(self._join_one(spec) for spec in specs)))

    async def published(self, timeout: float = JOIN_TIMEOUT_S) -> int:
        """Until every publisher connection here is connected (bounded); how many are."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            states = [p.publisher.connectionState for p in self.participants.values()]
            if all(state == "connected" for state in states) or loop.time() > deadline:
                return states.count("connected")
            await asyncio.sleep(0.2)

    async def subscribe(self) -> int:
        """Janus: every participant subscribes to the other feeds of its room."""
        done = 0
        for participant in list(self.participants.values()):
            subscribe = getattr(participant, "subscribe_all", None)
            if subscribe is not None:
                with contextlib.suppress(Exception):
                    await subscribe(JOIN_TIMEOUT_S)
                    done += 1
        return done

    def window(self, reset: bool, published_at: dict[str, float]) -> dict[str, Any]:
        out = []
        for participant in self.participants.values():
            w = participant.window(reset)
            w["first_frame_ms"] = participant.first_frame_ms(published_at)
            out.append(w)
        hub = self.pacer.hub
        return {"participants": out, "cpu_s": process_cpu_s(), "wait_s": process_wait_s(),
                "receive": {"native": hub.native, "datagrams": hub.datagrams,
                            "reads": hub.reads, "srtp_direct": hub.srtp,
                            "beats": self.pacer.ticks}}

    async def _supervise(self) -> None:
        while not self._stopping:
            await asyncio.sleep(SUPERVISE_PERIOD_S)
            for name, participant in list(self.participants.items()):
                if self._stopping or not participant.broken():
                    continue
                if participant.reconnects >= MAX_RECONNECTS:
                    continue
                logger.warning("%s: connection lost, rejoining", name)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(participant.close(), STOP_TIMEOUT_S)
                fresh = self._make({"name": name, "room": participant.room,
                                    "speaking": participant.audio_level_dbov != SILENCE_DBOV})
                fresh.reconnects = participant.reconnects + 1
                self.participants[name] = fresh
                with contextlib.suppress(Exception):
                    await fresh.join(JOIN_TIMEOUT_S)

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        await asyncio.gather(*(asyncio.wait_for(p.leave(), STOP_TIMEOUT_S)
                               for p in self.participants.values()), return_exceptions=True)
        self.participants.clear()
        await self.pacer.close()


class LocalWorker:
    """A WorkerCore in this process (small runs, tests)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.core = WorkerCore(options)

    async def start(self) -> None:
        pass

    async def join(self, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return await self.core.join(specs)

    async def published(self) -> int:
        return await self.core.published()

    async def subscribe(self) -> int:
        return await self.core.subscribe()

    async def window(self, reset: bool, published_at: dict[str, float]) -> dict[str, Any]:
        result = self.core.window(reset, published_at)
        result["cpu_s"] = result["wait_s"] = 0.0  # this process: counted by the caller
        return result

    async def stop(self) -> None:
        await self.core.stop()


async def _child(conn: Any, options: dict[str, Any]) -> None:
    core = WorkerCore(options)
    await obey_parent(conn, {
        "join": core.join,
        "published": lambda _argument: core.published(),
        "subscribe": lambda _argument: core.subscribe(),
        "window": lambda argument: core.window(*argument),
    }, core.stop, STOP_TIMEOUT_S * 2)


class RemoteWorker(ChildProcess):
    """A WorkerCore in a worker process (its own event loop)."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(_child, (options,), "diemcau-loadtest-worker")

    async def start(self) -> None:
        kind, _ = await self._start(60)
        if kind != "ready":
            raise RuntimeError(f"worker process said {kind}")

    async def join(self, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        timeout = JOIN_TIMEOUT_S * (2 + len(specs) / JOIN_CONCURRENCY) + 10
        return await self._call("join", specs, timeout)

    async def published(self) -> int:
        return await self._call("published", None, JOIN_TIMEOUT_S + 10)

    async def subscribe(self) -> int:
        return await self._call("subscribe", None, 120)

    async def window(self, reset: bool, published_at: dict[str, float]) -> dict[str, Any]:
        return await self._call("window", (reset, published_at), 30)

    async def stop(self) -> None:
        await self._stop(STOP_TIMEOUT_S * 2 + 5)
