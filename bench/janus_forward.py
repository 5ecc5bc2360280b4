"""``diemcau bench forward --against janus``: the same 1 -> N load on diemcau and on Janus.

Janus 1.1.x (Debian package ``janus``, a benchmark-only dependency) runs its VideoRoom plugin as
a subprocess (``loadtest.janus.JanusTarget``: 127.0.0.2 on a veth, HTTP API on 127.0.0.1:8088).
The publisher and the counting subscribers are those of ``bench.participants`` with Janus'
HTTP signaling instead of ours, so both servers get the same media (pre-encoded VP8 ~1 Mbps +
Opus with the audio level) and the same receivers (decrypt and count, no decoding).

Runs alternate (diemcau, Janus) for ``pairs`` pairs per N. The figure compared is the server's
process CPU time (utime + stime of all its threads, from ``/proc``: other processes' load
disturbs it less than wall time) per packet the subscribers received in the window, computed
the same way for both; the machine's load (load average and the busy share of all cores during
the window) is printed with every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.participants import JOIN_TIMEOUT_S, BenchPublisher, CountingSubscriber, LocalGroup
from loadtest.janus import JANUS_HOST, JANUS_URL, ROOM_BASE, JanusApi, JanusTarget
from loadtest.media import AUDIO_LEVEL_DBOV, Clip, load_clip
from loadtest.ramp import cpu_split, pin
from loadtest.server import (
    BenchError,
    load_average,
    process_context_switches,
    process_cpu_s,
    process_cpu_split,
    require_private_namespace,
)

VIDEO_TIMEOUT_S = 30.0
WARMUP_S = 3.0
JANUS_MAX_SUBSCRIBERS = 64  # all in this process (as bench forward does up to 64)


# -- participants over Janus' HTTP API ------------------------------------------------------------


class JanusBenchPublisher(BenchPublisher):
    """``BenchPublisher`` publishing into VideoRoom ``room_id``."""

    def __init__(self, clip: Clip, room_id: int, audio_level: int | None = AUDIO_LEVEL_DBOV
                 ) -> None:
        super().__init__(JANUS_URL, str(room_id), clip, audio_level)
        self.ice_addresses = [JANUS_HOST]
        self.api = JanusApi()
        self.room_id = room_id
        self.handle = 0

    async def connect(self) -> None:
        await self.api.create()
        self.handle = await self.api.attach()

    async def request(self, message: dict[str, Any], reply: str,
                      timeout: float = 10.0) -> dict[str, Any]:
        if message["type"] == "join":
            event = await self.api.message(self.handle, {
                "request": "join", "ptype": "publisher", "room": self.room_id,
                "display": self.name}, timeout=timeout)
            return {"participant_id": str(event["plugindata"]["data"]["id"]),
                    "participants": []}
        if message["type"] == "publish":
            event = await self.api.message(
                self.handle, {"request": "publish", "audio": True, "video": True},
                {"type": "offer", "sdp": message["sdp"]}, timeout)
            await self.api.trickle_done(self.handle)
            return {"sdp": event["jsep"]["sdp"]}
        raise ValueError(f"no Janus equivalent for {message['type']}")

    async def send(self, message: dict[str, Any]) -> None:
        pass  # nothing else to tell Janus

    async def leave(self) -> None:
        await self.close()

    async def close(self) -> None:
        await super().close()
        await self.api.destroy()


class JanusCountingSubscriber(CountingSubscriber):
    """``CountingSubscriber`` subscribed to every publisher of VideoRoom ``room_id``."""

    def __init__(self, room_id: int, name: str) -> None:
        super().__init__(JANUS_URL, str(room_id), name)
        self.ice_addresses = [JANUS_HOST]
        self.api = JanusApi()
        self.room_id = room_id
        self.handle = 0

    async def join(self, timeout: float = 10.0) -> dict[str, Any]:
        await self.api.create()
        self.handle = await self.api.attach()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:  # a publisher is listed once its PeerConnection is up
            listing = await self.api.message(self.handle, {
                "request": "listparticipants", "room": self.room_id}, timeout=timeout)
            feeds = [p["id"] for p in listing["plugindata"]["data"].get("participants", [])
                     if p.get("publisher")]
            if feeds:
                break
            if loop.time() > deadline:
                raise BenchError("no publisher in the Janus room")
            await asyncio.sleep(0.2)
        event = await self.api.message(self.handle, {
            "request": "join", "ptype": "subscriber", "room": self.room_id,
            "streams": [{"feed": feed} for feed in feeds]}, timeout=timeout)
        await self._answer({"sdp": event["jsep"]["sdp"], "tracks": {}})
        return {}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "subscribe_answer":  # sent by CountingSubscriber._answer
            await self.api.message(self.handle, {"request": "start"},
                                   {"type": "answer", "sdp": message["sdp"]})
            await self.api.trickle_done(self.handle)

    async def leave(self) -> None:
        await self.close()

    async def close(self) -> None:
        await super().close()
        await self.api.destroy()


class JanusGroup(LocalGroup):
    def __init__(self, room_id: int, names: list[str]) -> None:
        self.subscribers = [JanusCountingSubscriber(room_id, name) for name in names]


EXPECTED_PACKETS_PER_S = 165.0  # the clip: 165-170 packets/s, VP8 + Opus (bench/README.md)
MIN_DELIVERY = 0.95
"""A run whose subscribers received less than this share of N x the clip's packet rate was
starved (the publisher or the receivers lagged): its CPU per packet is not comparable."""


def starved_run(run: dict[str, Any]) -> bool:
    rate = run.get("received_packets_per_s")
    if rate is None:
        return True
    delivery = rate / (EXPECTED_PACKETS_PER_S * run["subscribers"])
    run["delivery"] = round(delivery, 3)
    return bool(delivery < MIN_DELIVERY)


# -- machine load ---------------------------------------------------------------------------------


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    with open("/proc/stat") as file:
        fields = [int(v) for v in file.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return round((after[0] - before[0]) / total, 3) if total > 0 else 0.0


# -- one Janus run --------------------------------------------------------------------------------


async def bench_janus(n_subscribers: int, duration: float, *, warmup: float = WARMUP_S,
                      audio_level: int | None = AUDIO_LEVEL_DBOV,
                      server_cpus: set[int] | None = None) -> dict[str, Any]:
    """1 publisher -> ``n_subscribers`` through a fresh Janus; figures of the measured window."""
    require_private_namespace("bench forward --against janus must run in a private namespace")
    if not 1 <= n_subscribers <= JANUS_MAX_SUBSCRIBERS or duration <= 0:
        raise ValueError(f"Janus runs take 1..{JANUS_MAX_SUBSCRIBERS} subscribers")
    loop = asyncio.get_running_loop()
    clip = await loop.run_in_executor(None, load_clip)
    janus = JanusTarget(rooms=1, participants=1, cpus=server_cpus)
    publisher: JanusBenchPublisher | None = None
    group: JanusGroup | None = None
    result: dict[str, Any] = {"server": "janus", "subscribers": n_subscribers}
    try:
        await janus.start()
        publisher = JanusBenchPublisher(clip, ROOM_BASE, audio_level)
        await publisher.join(JOIN_TIMEOUT_S)
        group = JanusGroup(ROOM_BASE, [f"sub-{i}" for i in range(n_subscribers)])
        await group.start()
        deadline = loop.time() + VIDEO_TIMEOUT_S
        while (await group.counts())["receiving_video"] < n_subscribers:
            if loop.time() > deadline:
                raise BenchError(f"not every subscriber receives video from Janus after "
                                 f"{VIDEO_TIMEOUT_S} s\n{janus.log_tail()}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(warmup)
        assert janus.proc is not None
        before = await group.counts()
        cpu0, own0, ticks0 = process_cpu_s(janus.proc.pid), process_cpu_s(), cpu_ticks()
        split0 = process_cpu_split(janus.proc.pid)
        switches0 = process_context_switches(janus.proc.pid)
        t0 = time.monotonic()
        await asyncio.sleep(duration)
        cpu1, own1, ticks1 = process_cpu_s(janus.proc.pid), process_cpu_s(), cpu_ticks()
        split1 = process_cpu_split(janus.proc.pid)
        switches1 = process_context_switches(janus.proc.pid)
        elapsed = time.monotonic() - t0
        after = await group.counts()
        packets = after["packets"] - before["packets"]
        cpu_s = cpu1 - cpu0
        result.update(window_figures(elapsed, cpu_s, packets, own1 - own0, ticks0, ticks1))
        result["server_user_s"] = round(split1[0] - split0[0], 3)
        result["server_sys_s"] = round(split1[1] - split0[1], 3)
        result["server_voluntary_switches_per_s"] = round(
            (switches1[0] - switches0[0]) / elapsed, 1)
        result["server_involuntary_switches_per_s"] = round(
            (switches1[1] - switches0[1]) / elapsed, 1)
        result["janus_problems"] = janus.problems()[:5]
    finally:
        if group is not None:
            await group.stop()
        if publisher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(publisher.leave(), 10)
        await janus.stop()
    return result


def window_figures(elapsed: float, cpu_s: float, packets: int, loadgen_cpu_s: float,
                   ticks0: tuple[int, int], ticks1: tuple[int, int]) -> dict[str, Any]:
    return {
        "duration_s": round(elapsed, 3),
        "server_cpu_s": round(cpu_s, 3),
        "server_cpu_percent": round(100 * cpu_s / elapsed, 1),
        "received_packets": packets,
        "received_packets_per_s": round(packets / elapsed, 1),
        "cpu_us_per_received_packet": round(cpu_s / packets * 1e6, 2) if packets else None,
        "loadgen_cpu_percent": round(100 * loadgen_cpu_s / elapsed, 1),
        "load_average_1m": load_average(),
        "machine_busy_share": busy_share(ticks0, ticks1),
    }


# -- the comparison -------------------------------------------------------------------------------


def _run(coro: Any) -> dict[str, Any]:
    from signaling.eventloop import new_event_loop

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        result: dict[str, Any] = runner.run(coro)
        return result


def diemcau_run(n: int, duration: float, server_cpus: set[int] | None = None
                ) -> dict[str, Any]:
    from bench.forward import bench

    ticks0 = cpu_ticks()
    result = _run(bench(n, duration, server_cpus=server_cpus))
    ticks1 = cpu_ticks()
    packets = int(result["subscriber_received_packets"])
    cpu_s = float(result["server_cpu_s"])
    return {
        "server": "diemcau", "subscribers": n, "duration_s": result["duration_s"],
        "server_cpu_s": cpu_s, "server_cpu_percent": result["server_cpu_percent"],
        "received_packets": packets,
        "received_packets_per_s": result["subscriber_received_packets_per_s"],
        "cpu_us_per_received_packet": round(cpu_s / packets * 1e6, 2) if packets else None,
        "cpu_us_per_forwarded_packet": result["cpu_us_per_packet"],
        "loadgen_cpu_percent": result["loadgen_cpu_percent"],
        "load_average_1m": result["load_average_1m"],
        # the whole run (joins included): bench() does not expose its window's ticks
        "machine_busy_share": busy_share(ticks0, ticks1),
        "native_fanout": result.get("native_fanout"),
        "server_user_s": result.get("server_user_s"),
        "server_sys_s": result.get("server_sys_s"),
        "server_voluntary_switches_per_s": result.get("server_voluntary_switches_per_s"),
        "server_involuntary_switches_per_s": result.get("server_involuntary_switches_per_s"),
    }


def format_run(run: dict[str, Any]) -> str:
    if "error" in run:
        return f"  {run['server']:<8} N={run['subscribers']:<3} failed: {run['error']}"
    return (f"  {run['server']:<8} N={run['subscribers']:<3} "
            f"CPU {run['server_cpu_s']:6.3f} s ({run['server_cpu_percent']:5.1f} %)  "
            f"rx {run['received_packets_per_s']:8.0f} pkt/s  "
            f"{run['cpu_us_per_received_packet']:6.2f} us/pkt  "
            f"gen {run['loadgen_cpu_percent']:5.1f} %  load1 {run['load_average_1m']:.1f}  "
            f"busy {100 * run['machine_busy_share']:.0f} %{user_sys(run)}")


def user_sys(run: dict[str, Any]) -> str:
    """The server's user/kernel split of its CPU time per received packet, when measured."""
    user, system, packets = (run.get("server_user_s"), run.get("server_sys_s"),
                             run.get("received_packets"))
    if user is None or system is None or not packets:
        return ""
    text = f"  usr/sys {user / packets * 1e6:5.2f}/{system / packets * 1e6:5.2f} us"
    preempted = run.get("server_involuntary_switches_per_s")
    if preempted is not None:
        text += (f"  switches/s vol {run.get('server_voluntary_switches_per_s', 0):.0f} "
                 f"invol {preempted:.0f}")
    return text


def compare(counts: list[int], duration: float, pairs: int = 3,
            json_path: Path | None = None, server_cpu: int | None = None) -> int:
    """Alternate diemcau and Janus runs, ``pairs`` pairs per N; print each run and the ratios.
    ``server_cpu``: each server on that core alone, this process (the publisher and the
    subscribers) on the others, so neither server shares its core with the load."""
    mine = os.sched_getaffinity(0)
    try:
        server_cpus, load_cpus = cpu_split(server_cpu, mine)
    except BenchError as exc:
        print(f"diemcau bench forward: {exc}", file=sys.stderr)
        return 2
    if server_cpus is not None:
        pin(0, load_cpus)
        print(f"servers pinned to core {server_cpu}, the load to {sorted(load_cpus)}", flush=True)
    try:
        return _compare(counts, duration, pairs, json_path, server_cpus)
    finally:
        pin(0, mine)


def _compare(counts: list[int], duration: float, pairs: int, json_path: Path | None,
             server_cpus: set[int] | None) -> int:
    failed = False
    summary: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for n in counts:
        ratios: list[float] = []
        for pair in range(pairs):
            pair_runs = []
            servers: list[tuple[str, Callable[[int, float, set[int] | None], dict[str, Any]]]] = [
                ("diemcau", diemcau_run), ("janus", janus_run)]
            for name, runner in servers:
                print(f"N={n} pair {pair + 1}/{pairs}: {name} ...", flush=True)
                try:
                    run = runner(n, duration, server_cpus)
                except Exception as exc:  # noqa: BLE001 - reported per run, the rest goes on
                    run = {"server": name, "subscribers": n,
                           "error": f"{type(exc).__name__}: {exc}"}
                    failed = True
                run["pair"] = pair + 1
                print(format_run(run), flush=True)
                pair_runs.append(run)
            runs.extend(pair_runs)
            ours, theirs = (r.get("cpu_us_per_received_packet") for r in pair_runs)
            starved = [r["server"] for r in pair_runs if starved_run(r)]
            if starved:
                print(f"  no ratio: {', '.join(starved)} delivered under {MIN_DELIVERY:.0%} of "
                      f"{EXPECTED_PACKETS_PER_S:.0f} x N packets/s (the machine's load starved "
                      "the load generator)", flush=True)
            elif ours and theirs:
                ratio = round(ours / theirs, 3)
                ratios.append(ratio)
                print(f"  ratio diemcau/janus (CPU per packet): {ratio:.3f}", flush=True)
        entry: dict[str, Any] = {"subscribers": n, "ratios": ratios,
                 "ratio_median": statistics.median(ratios) if ratios else None}
        summary.append(entry)
    print("N    ratios diemcau/janus (CPU time per received packet)   median")
    for entry in summary:
        listed = ", ".join(f"{r:.2f}" for r in entry["ratios"]) or "-"
        median = f"{entry['ratio_median']:.2f}" if entry["ratio_median"] else "-"
        print(f"{entry['subscribers']:<4} {listed:<50} {median}")
    if json_path is not None:
        json_path.write_text(json.dumps({
            "benchmark": "forward-against-janus", "pairs": pairs, "duration_s": duration,
            "server_cpus": sorted(server_cpus) if server_cpus else None,
            "measure": "server process CPU time / packets the subscribers received",
            "python": sys.version.split()[0], "summary": summary, "runs": runs,
        }, indent=2) + "\n")
        print(f"wrote {json_path}")
    return 1 if failed else 0


def janus_run(n: int, duration: float, server_cpus: set[int] | None = None) -> dict[str, Any]:
    return _run(bench_janus(n, duration, server_cpus=server_cpus))
