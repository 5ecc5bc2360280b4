"""A real `diemcau serve` process for tests: free port, log file, /healthz, bounded stop.

    with running_server(tmp_path, extra_args=["--log-level", "info"]) as server:
        ...  # server.base_url, server.port, server.proc, server.log_path, server.log_text()

Synchronous, so it serves sync fixtures and async tests alike (the start wait blocks for at
most START_TIMEOUT seconds, before any media flows).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0  # until /healthz answers 200 (a loaded machine imports aiortc slowly)
STOP_TIMEOUT = 5.0  # after SIGTERM, then SIGKILL
CLI = ("-m", "diemcau")
TEST_WORKERS = os.environ.get("DIEMCAU_TEST_WORKERS", "0")
"""`--workers` for test servers (before `extra_args`, which may override it): the media plane
in-process (0) unless this variable asks for worker processes."""


LISTEN_PORTS_FROM = 20000
"""Ports for the test's own listeners are picked from here up to the kernel's ephemeral range."""


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for TCP and UDP on ``host``, BELOW the ephemeral range: a port the kernel
    hands out with bind(0) is ephemeral, and on a busy run an outgoing connection may take it
    before the server (or coturn, or redis) that was told to listen on it binds (seen once:
    coturn's TLS listener failed with EADDRINUSE)."""
    rng = random.Random()
    high = max(LISTEN_PORTS_FROM + 1000, _ephemeral_low())
    for _ in range(500):
        port = rng.randrange(LISTEN_PORTS_FROM, high)
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as sock:
                    sock.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port below the ephemeral range")


def healthy(url: str) -> bool:
    """True if GET `url` answers 200 within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path  # the server's stdout and stderr

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Wait for /healthz to answer 200; fail the test (with the log) on exit or timeout."""
        deadline = time.monotonic() + timeout
        while not healthy(self.base_url + "/healthz"):
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode} before /healthz answered:"
                            f"\n{self.log_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"/healthz did not answer 200 within {timeout} s:\n"
                            + self.log_text()[-4000:])
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)


@contextmanager
def running_server(
    tmp_path: Path,
    *,
    host: str = "127.0.0.1",
    ice_address: str | None = None,
    open_rooms: bool = True,
    log_level: str | None = None,
    extra_args: Sequence[str] = (),
    python_args: Sequence[str] = CLI,
    print_log: bool = True,
    data_dir: Path | None = None,
) -> Iterator[Server]:
    """`python <python_args> serve ...` on a free port of `host`, data in tmp_path/data, output in
    tmp_path/server.log; yields once /healthz answers, stops it on exit. `ice_address` defaults
    to `host`; `log_level` None leaves the server's default. `print_log` prints the log's tail
    on exit (pytest shows it only when the test fails). `data_dir` (default tmp_path/data, made
    here) may name an existing one: a restart on the same data."""
    port = free_port(host)
    if data_dir is None:
        data_dir = tmp_path / "data"
        data_dir.mkdir()
    log_path = tmp_path / "server.log"
    cmd = [sys.executable, *python_args, "serve", *(["--open-rooms"] if open_rooms else []),
           "--host", host, "--port", str(port), "--data-dir", str(data_dir),
           "--ice-address", ice_address or host,
           *(["--log-level", log_level] if log_level else []), "--workers", TEST_WORKERS,
           *extra_args]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    server = Server(proc, host, port, log_path)
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()
        if print_log:
            print("---- server log (tail) ----")
            print(server.log_text()[-6000:])
