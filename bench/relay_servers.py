"""``python -m bench.relay_servers``: the relay measured on real server processes.

For each N, two set-ups with the same pre-encoded publisher (``bench.participants``: VP8 ~1 Mbit/s
+ Opus, never encoded here) and N counting subscribers (decrypt and count, no decoding) on
server B:

- **direct**: the publisher on B;
- **relayed**: the publisher on server A, relayed into B's room (``POST /api/rooms/{name}/relays``).

Once every subscriber receives video, a warm-up, then ``duration`` s: B's CPU (``/proc``, its
worker processes included) over B's forwarded packets (``/metrics``) = CPU us per forwarded
packet on B, and A's CPU in the relayed set-up (what serving the relay costs A). ``--simulcast``:
the publisher sends three layers (``loadtest.simulcast.SimulcastPublisher``), which the relay
carries all; ``--workers N``: B's media in N worker processes. Media moves: run it in a private
namespace::

    unshare -n sh -c 'ip link set lo up; exec .venv/bin/python -m bench.relay_servers \\
        --subscribers 4,16 --duration 10'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from bench.participants import JOIN_TIMEOUT_S, BenchPublisher, LocalGroup
from loadtest.media import load_clip
from loadtest.server import (
    BenchError,
    ServerProcess,
    process_cpu_s,
    require_private_namespace,
    tree_usage,
)
from loadtest.simulcast import SimulcastPublisher

ROOM = "bench"
VIDEO_TIMEOUT_S = 30.0
WARMUP_S = 3.0
SERVE_ARGS = ["--open-rooms", "--room-capacity", "1000"]
NAMESPACE_HELP = ("bench.relay_servers moves media: run it inside `unshare -n sh -c "
                  "'ip link set lo up; exec ...'`")


async def operator_token(http: aiohttp.ClientSession, server: ServerProcess) -> str:
    marker = "Operator account 'admin', password "
    password = server.log_path.read_text(errors="replace").split(marker, 1)[1].split()[0]
    async with http.post(server.url + "/api/login",
                         json={"username": "admin", "password": password}) as response:
        return str((await response.json())["token"])


def cpu_s(pid: int) -> float:
    return tree_usage(pid)["cpu_s"]  # the server and its SFU worker processes


async def run(n_subscribers: int, duration: float, relayed: bool, simulcast: bool = False,
              workers: int = 1) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    clip = await loop.run_in_executor(None, load_clip)
    with tempfile.TemporaryDirectory(prefix="diemcau-relay-") as tmp:
        near = ServerProcess(Path(tmp) / "b",
                             serve_args=[*SERVE_ARGS, "--workers", str(workers)])
        far = ServerProcess(Path(tmp) / "a", serve_args=SERVE_ARGS) if relayed else None
        for server in (near, far):
            if server is not None:
                server.workdir.mkdir()
        async with aiohttp.ClientSession() as http:
            publisher: BenchPublisher | SimulcastPublisher | None = None
            group: LocalGroup | None = None
            try:
                await near.start(http)
                if far is not None:
                    await far.start(http)
                url = (far or near).url
                publisher = (SimulcastPublisher(url, ROOM, "chair") if simulcast
                             else BenchPublisher(url, ROOM, clip))
                await publisher.join(JOIN_TIMEOUT_S)
                if far is not None:
                    token = await operator_token(http, near)
                    async with http.post(
                            f"{near.url}/api/rooms/{ROOM}/relays",
                            headers={"Authorization": f"Bearer {token}"},
                            json={"source_url": far.url, "source_room": ROOM}) as response:
                        if response.status != 201:
                            raise BenchError(f"relay: {response.status} {await response.text()}")
                group = LocalGroup(near.url, ROOM, [f"sub-{i}" for i in range(n_subscribers)])
                await group.start()
                deadline = loop.time() + VIDEO_TIMEOUT_S
                while (await group.counts())["receiving_video"] < n_subscribers:
                    if loop.time() > deadline:
                        raise BenchError("not every subscriber receives video")
                    await asyncio.sleep(0.2)
                await asyncio.sleep(WARMUP_S)
                before = await near.metrics(http)
                near_cpu = cpu_s(near.pid)
                signaling_cpu = process_cpu_s(near.pid)
                far_cpu = cpu_s(far.pid) if far is not None else 0.0
                await asyncio.sleep(duration)
                near_cpu = cpu_s(near.pid) - near_cpu
                signaling_cpu = process_cpu_s(near.pid) - signaling_cpu
                far_cpu = (cpu_s(far.pid) - far_cpu) if far is not None else 0.0
                after = await near.metrics(http)
                forwarded = (after.get("diemcau_rtp_forwarded_packets", 0)
                             - before.get("diemcau_rtp_forwarded_packets", 0))
                return {
                    "subscribers": n_subscribers, "relayed": relayed, "simulcast": simulcast,
                    "workers": workers, "load_average": round(os.getloadavg()[0], 2),
                    "near_cpu_percent": round(near_cpu / duration * 100, 2),
                    # of which B's first process (signaling; everything with --workers 1)
                    "near_signaling_cpu_percent": round(signaling_cpu / duration * 100, 2),
                    "forwarded_packets_per_s": round(forwarded / duration),
                    "near_cpu_us_per_forwarded_packet": round(near_cpu / forwarded * 1e6, 1)
                    if forwarded else None,
                    "far_cpu_percent": round(far_cpu / duration * 100, 2) if far else None,
                }
            finally:
                if group is not None:
                    await group.stop()
                if publisher is not None:
                    await publisher.leave()
                for server in (near, far):
                    if server is not None:
                        await server.stop()


async def main_async(counts: list[int], duration: float, out: Path | None,
                     simulcast: bool = False, workers: int = 1) -> None:
    require_private_namespace(NAMESPACE_HELP)
    results = []
    for count in counts:
        for relayed in (False, True):  # alternating, one run each
            result = await run(count, duration, relayed, simulcast, workers)
            results.append(result)
            print(json.dumps(result), flush=True)
    if out is not None:
        out.write_text(json.dumps(results, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay_servers", description=__doc__)
    parser.add_argument("--subscribers", default="4,16")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--simulcast", action="store_true",
                        help="a three-layer publisher (the relay carries every layer)")
    parser.add_argument("--workers", type=int, default=1, help="B's media worker processes")
    args = parser.parse_args(argv)
    asyncio.run(main_async([int(n) for n in args.subscribers.split(",")], args.duration,
                           args.json, args.simulcast, args.workers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
