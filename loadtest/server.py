"""The server under test for ``diemcau bench forward`` and ``diemcau loadtest``.

``diemcau serve`` as a subprocess on 127.0.0.1 (healthy once ``/healthz`` answers), what the load
tools read about it and about themselves (``/proc`` CPU and memory, ``/metrics``), and the check
that they run inside a private network namespace with only loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
HEALTH_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    pass


# -- environment ----------------------------------------------------------------------------------


def only_loopback() -> bool:
    return {name for _index, name in socket.if_nameindex()} <= {"lo"}


def require_private_namespace(help_text: str) -> None:
    """Refuse (BenchError) unless this network namespace has only loopback."""
    if not only_loopback():
        names = sorted(name for _index, name in socket.if_nameindex())
        raise BenchError(f"network interfaces other than lo exist ({', '.join(names)}).\n"
                         + help_text)


def process_cpu_s(pid: int | str = "self") -> float:
    """utime + stime of a process, in seconds (children not included)."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_cpu_split(pid: int | str = "self") -> tuple[float, float]:
    """(utime, stime) of a process, in seconds: user space and kernel apart (on loopback a
    ``sendto`` also runs the receiver's side of the delivery, in the sender's kernel time)."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def process_context_switches(pid: int | str = "self") -> tuple[int, int]:
    """(voluntary, involuntary) context switches of all of a process's threads: involuntary
    ones are preemptions (on loopback, mostly a receiver woken by our own ``sendto``)."""
    voluntary = involuntary = 0
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{pid}/task/{task}/status") as file:
                    for line in file:
                        if line.startswith("voluntary_ctxt_switches:"):
                            voluntary += int(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches:"):
                            involuntary += int(line.split()[1])
    return voluntary, involuntary


def process_wait_s(pid: int | str = "self") -> float:
    """Seconds the process's threads spent runnable but waiting for a CPU (run delay, from
    ``/proc/PID/task/*/schedstat``): how much other work on the machine held it back."""
    total = 0
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{pid}/task/{task}/schedstat") as file:
                    total += int(file.read().split()[1])
    return total / 1e9


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (``/proc/PID/task/*/children``), e.g. a server's SFU worker
    processes; bounded in size."""
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 256:
        current = todo.pop()
        out.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with contextlib.suppress(OSError, ValueError):
                    with open(f"/proc/{current}/task/{task}/children") as file:
                        todo.extend(int(child) for child in file.read().split())
    return out


def tree_usage(pid: int) -> dict[str, float]:
    """CPU seconds, run delay seconds and RSS MB of a process and its descendants."""
    cpu = wait = rss = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            cpu += process_cpu_s(member)
            wait += process_wait_s(member)
            rss += process_rss_mib(member) * 2**20 / 1e6
    return {"cpu_s": cpu, "wait_s": wait, "rss_mb": rss}


def process_rss_mib(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def load_average() -> float:
    with open("/proc/loadavg") as file:
        return float(file.read().split()[0])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {name{labels}: value}; a ``_total`` suffix is dropped."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        if "{" not in name and name.endswith("_total"):
            name = name[: -len("_total")]
        name = name.replace("_total{", "{")
        with contextlib.suppress(ValueError):
            values[name] = float(value)
    return values


async def fetch_metrics(session: aiohttp.ClientSession, base_url: str,
                        timeout: float = 5.0) -> dict[str, float]:
    """``base_url``/metrics, parsed."""
    async with session.get(base_url + "/metrics",
                           timeout=aiohttp.ClientTimeout(total=timeout)) as response:
        return parse_metrics(await response.text())


# -- the server under test ------------------------------------------------------------------------


class ServerProcess:
    """``diemcau serve`` as a subprocess on 127.0.0.1, with its log in ``workdir``.

    ``serve_args`` are added to ``serve`` (e.g. ``--open-rooms``), ``python_args`` to the
    interpreter (e.g. ``["-m", "cProfile", "-o", FILE]``).
    """

    def __init__(self, workdir: Path, port: int | None = None,
                 python_args: list[str] | None = None,
                 serve_args: list[str] | None = None, cpus: set[int] | None = None) -> None:
        self.workdir = workdir
        self.cpus = cpus  # pin the server (and what it starts) to these cores
        self.python_args = python_args or []
        self.serve_args = serve_args or []
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        # One process unless serve_args say otherwise (--workers N): the CPU and memory these
        # tools read (/proc of this pid, its /metrics) are that process's.
        return [sys.executable, *self.python_args, "-m", "diemcau", "serve", "--workers", "1",
                *self.serve_args, "--host", HOST, "--port", str(self.port),
                "--data-dir", str(self.workdir / "data"),
                "--ice-address", HOST, "--log-level", "warning",
                # every synthetic participant comes from 127.0.0.1, dozens joining at once
                "--max-unjoined-per-address", "10000"]

    async def start(self, session: aiohttp.ClientSession) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        if self.cpus is not None:
            # before it has started a thread or a child (the interpreter is still loading)
            os.sched_setaffinity(self.proc.pid, self.cpus)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HEALTH_TIMEOUT_S
        while loop.time() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                async with session.get(self.url + "/healthz",
                                       timeout=aiohttp.ClientTimeout(total=1)) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise BenchError(f"server not healthy within {HEALTH_TIMEOUT_S} s (is lo up?):\n"
                         + self.log_tail())

    async def metrics(self, session: aiohttp.ClientSession) -> dict[str, float]:
        return await fetch_metrics(session, self.url)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_problems(self) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        lines = text.splitlines()
        problems = [line for line in lines if (" ERROR " in line or " CRITICAL " in line
                    or " WARNING " in line) and "--open-rooms" not in line]
        if "Traceback (most recent call last):" in lines:  # the first one in full
            start = lines.index("Traceback (most recent call last):")
            end = start + 1
            while end < len(lines) and end - start < 60 and not lines[end][:4].isdigit():
                end += 1
            problems = [f"{len(problems)} error/warning lines; first traceback:",
                        *lines[start:end], *problems[:10]]
        return problems

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT_S
        while proc.poll() is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            logger.warning("server did not stop within %s s: killed", STOP_TIMEOUT_S)
            proc.kill()
            proc.wait(5)
