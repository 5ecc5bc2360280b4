"""``python -m bench.cluster_joins``: joins per second a cluster admits (issue 14).

A real ``redis-server`` on loopback and N ``diemcau serve --redis`` nodes (and, for comparison,
one node without Redis). Signaling-only clients (a WebSocket and a ``join``, no media: admission
is what is measured) join R rooms at once, each through a random node, following the
``wrong-node`` redirect to the room's node, from many loopback addresses (127.0.0.x: homes, as
the per-address limits see them), ``--concurrency`` at a time. Printed per set-up: joins
admitted per second, redirects, refusals by code, the nodes' CPU per admitted join. Seats are
held to the end, so every room fills to its capacity and the rest is refused ``room-full``::

    python -m bench.cluster_joins --nodes 1,3 --joins 600 --rooms 20 --capacity 26
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.server import BenchError, ServerProcess, process_cpu_s

JOIN_TIMEOUT_S = 20.0
REDIS_START_S = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(directory)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + REDIS_START_S
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise BenchError("redis-server did not start")


async def join_once(base_url: str, room: str, name: str, source: str,
                    held: list[aiohttp.ClientSession]) -> tuple[str, int]:
    """One join, following redirects: (outcome, redirects). A joined session is kept open."""
    redirects = 0
    url = base_url
    for _ in range(3):
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))
        try:
            ws = await session.ws_connect(url.replace("http", "ws", 1) + "/ws")
            await ws.send_json({"type": "join", "room": room, "name": name})
            while True:
                message = await ws.receive_json(timeout=JOIN_TIMEOUT_S)
                if message.get("type") in ("joined", "error"):
                    break
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            await session.close()
            return f"client-{type(exc).__name__}", redirects
        if message["type"] == "joined":
            held.append(session)  # the seat stays taken until the end
            return "joined", redirects
        await session.close()
        if message.get("code") != "wrong-node":
            return str(message.get("code")), redirects
        redirects += 1
        url = str(message.get("address", url))
    return "too-many-redirects", redirects


async def run_setup(nodes: int, joins: int, rooms: int, capacity: int, concurrency: int,
                    workdir: Path) -> dict[str, Any]:
    redis_proc, redis_url = (None, None) if nodes == 0 else start_redis(workdir)
    count = max(nodes, 1)
    servers = []
    async with aiohttp.ClientSession() as http:
        try:
            for i in range(count):
                home = workdir / f"node{i}"
                home.mkdir()
                args = ["--open-rooms", "--room-capacity", str(capacity)]
                if redis_url is not None:
                    args += ["--redis", redis_url, "--node-id", f"node{i}"]
                server = ServerProcess(home, serve_args=args)
                await server.start(http)
                servers.append(server)
            cpu_before = [process_cpu_s(s.pid) for s in servers]
            rng = random.Random(7)
            gate = asyncio.Semaphore(concurrency)
            held: list[aiohttp.ClientSession] = []

            async def one(i: int) -> tuple[str, int]:
                async with gate:
                    return await join_once(rng.choice(servers).url, f"room{i % rooms}", f"P{i}",
                                           f"127.0.{1 + i // 250}.{1 + i % 250}", held)

            started = time.monotonic()
            results = await asyncio.gather(*(one(i) for i in range(joins)))
            elapsed = time.monotonic() - started
            cpu = sum(process_cpu_s(s.pid) - b for s, b in zip(servers, cpu_before, strict=True))
            outcomes = Counter(outcome for outcome, _ in results)
            for session in held:
                await session.close()
        finally:
            for server in servers:
                await server.stop()
            if redis_proc is not None:
                redis_proc.terminate()
                redis_proc.wait(5)
    admitted = outcomes["joined"]
    return {
        "nodes": nodes, "joins": joins, "rooms": rooms, "capacity": capacity,
        "admitted": admitted, "expected_admitted": min(joins, rooms * capacity),
        "outcomes": dict(outcomes), "redirects": sum(r for _, r in results),
        "seconds": round(elapsed, 2), "admitted_per_s": round(admitted / elapsed, 1),
        "attempts_per_s": round(joins / elapsed, 1),
        "server_cpu_ms_per_join": round(cpu * 1000 / max(joins, 1), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_joins", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", default="0,3",
                        help="set-ups: 0 is one node without Redis (default 0,3)")
    parser.add_argument("--joins", type=int, default=600)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--capacity", type=int, default=26)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    reports = []
    for nodes in (int(x) for x in args.nodes.split(",")):
        with tempfile.TemporaryDirectory(prefix="diemcau-bench-cluster-") as tmp:
            report = asyncio.run(run_setup(nodes, args.joins, args.rooms, args.capacity,
                                           args.concurrency, Path(tmp)))
        reports.append(report)
        label = "one node, no Redis" if nodes == 0 else f"{nodes} nodes + Redis"
        print(f"{label}: {report['admitted']}/{report['expected_admitted']} admitted of "
              f"{report['joins']} joins in {report['seconds']} s -> "
              f"{report['admitted_per_s']} admitted/s ({report['attempts_per_s']} attempts/s), "
              f"{report['redirects']} redirects, outcomes {report['outcomes']}, server CPU "
              f"{report['server_cpu_ms_per_join']} ms per join", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
