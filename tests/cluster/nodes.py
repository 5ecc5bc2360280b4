"""Cluster nodes for the tests: ``count`` real `diemcau serve --redis` processes, node0..,
each with its own data directory under ``tmp_path`` (a node's store is its own)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from tests.serverproc import Server, running_server


def start_nodes(stack: ExitStack, tmp_path: Path, redis_url: str, count: int,
                extra_args: Sequence[str] = (), *, open_rooms: bool = True,
                data_dir: Path | None = None) -> list[Server]:
    """``data_dir``: one data directory for all (one store, one signing secret), the nodes
    started one after the other so the first one bootstraps it; else one each."""
    servers = []
    for i in range(count):
        home = tmp_path / f"node{i}"
        home.mkdir()
        servers.append(stack.enter_context(running_server(
            home, open_rooms=open_rooms, data_dir=data_dir,
            extra_args=["--redis", redis_url, "--node-id", f"node{i}", *extra_args])))
    return servers
