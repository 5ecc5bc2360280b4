"""A shaped link between two network namespaces, for tests (docs/architecture.md#tiers).

The test process (already inside a private ``unshare -n`` namespace) keeps the server side. A
second namespace, the "client" side, is held open by a sleeping ``unshare -n`` child of ours,
so nothing is mounted and nothing under /run/netns (the host's) is touched: programs enter it
with ``nsenter --net=/proc/<pid>/ns/net`` (what ``ip netns exec`` does, minus the name). A veth
pair joins the two (``srv`` here, ``cli`` there, RFC 2544 addresses) and a ``tbf`` qdisc on
``srv`` limits what the server sends to the client (``netem`` is not in this kernel).

    link = ShapedLink()
    link.up()                       # raises LinkUnavailable with the reason if it cannot
    link.shape("4mbit")             # server -> client at most 4 Mbit/s
    link.client_exec(["ip", "-br", "addr"])
    wrapper = link.wrapper(tmp_path, "/usr/bin/chromium")  # run a program on the client side
    link.down()                     # deletes the veth pair (and its qdisc), ends the namespace
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

COMMAND_TIMEOUT = 5.0


class LinkUnavailable(RuntimeError):
    """The kernel or the tools cannot build the link here (the reason is the message)."""


def _run(cmd: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return proc


class ShapedLink:
    def __init__(
        self,
        *,
        server_if: str = "srv",
        client_if: str = "cli",
        server_addr: str = "198.18.1.1",
        client_addr: str = "198.18.1.2",
        prefix: int = 24,
    ) -> None:
        self.server_if = server_if
        self.client_if = client_if
        self.server_addr = server_addr
        self.client_addr = client_addr
        self.prefix = prefix
        self._holder: subprocess.Popen[bytes] | None = None
        self._link_made = False
        self.rate: str | None = None
        self.history: list[tuple[float, str]] = []  # (monotonic time, "rate" or "none")

    # -- the namespace -----------------------------------------------------------------------------

    @property
    def netns_path(self) -> str:
        assert self._holder is not None, "the link is not up"
        return f"/proc/{self._holder.pid}/ns/net"

    def client_cmd(self, cmd: list[str]) -> list[str]:
        return ["nsenter", f"--net={self.netns_path}", *cmd]

    def client_exec(
        self, cmd: list[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return _run(self.client_cmd(cmd), check=check)

    def wrapper(self, directory: Path, executable: str) -> Path:
        """A script that runs ``executable`` (with its arguments) inside the client namespace."""
        path = directory / f"netns-{Path(executable).name}"
        path.write_text(
            "#!/bin/sh\n"
            f"exec nsenter --net={self.netns_path} {executable} \"$@\"\n"
        )
        path.chmod(0o755)
        return path

    def up(self) -> None:
        for tool in ("ip", "tc", "nsenter", "unshare"):
            if shutil.which(tool) is None:
                raise LinkUnavailable(f"`{tool}` is not installed")
        if os.geteuid() != 0:
            raise LinkUnavailable("needs root (CAP_NET_ADMIN) to make namespaces and qdiscs")
        try:
            self._start_holder()
            self._make_veth()
        except LinkUnavailable:
            self.down()
            raise
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            self.down()
            detail = getattr(exc, "stderr", "") or ""
            raise LinkUnavailable(f"{exc} {detail}".strip()) from exc

    def _start_holder(self) -> None:
        ours = os.readlink("/proc/self/ns/net")
        self._holder = subprocess.Popen(
            ["unshare", "-n", "sleep", "3600"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while time.monotonic() < deadline:
            if self._holder.poll() is not None:
                stderr = self._holder.stderr
                err = stderr.read().decode(errors="replace") if stderr else ""
                raise LinkUnavailable(f"`unshare -n` failed: {err.strip()}")
            try:
                # `unshare` execs `sleep` once the new namespace exists: its ns link differs.
                if os.readlink(self.netns_path) != ours:
                    return
            except OSError:
                pass
            time.sleep(0.01)
        raise LinkUnavailable("`unshare -n` did not make a namespace within 5 s")

    def _make_veth(self) -> None:
        assert self._holder is not None
        try:
            _run(["ip", "link", "add", self.server_if, "type", "veth",
                  "peer", "name", self.client_if])
        except subprocess.CalledProcessError as exc:
            raise LinkUnavailable(f"cannot make a veth pair: {exc.stderr.strip()}") from exc
        self._link_made = True
        _run(["ip", "link", "set", self.client_if, "netns", str(self._holder.pid)])
        _run(["ip", "addr", "add", f"{self.server_addr}/{self.prefix}", "dev", self.server_if])
        _run(["ip", "link", "set", self.server_if, "up"])
        self.client_exec(["ip", "link", "set", "lo", "up"])
        self.client_exec(["ip", "addr", "add", f"{self.client_addr}/{self.prefix}",
                          "dev", self.client_if])
        self.client_exec(["ip", "link", "set", self.client_if, "up"])
        # Both ends up (carrier) before anyone binds to the addresses.
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while time.monotonic() < deadline:
            state = _run(["ip", "-br", "link", "show", self.server_if]).stdout
            if " UP " in f" {state} ":
                break
            time.sleep(0.05)

    # -- shaping -----------------------------------------------------------------------------------

    def shape(self, rate: str, burst: str = "32kb", latency: str = "100ms") -> None:
        """Limit server -> client to ``rate`` (tc units: "4mbit", "1200kbit"); add or change."""
        try:
            _run(["tc", "qdisc", "replace", "dev", self.server_if, "root", "tbf",
                  "rate", rate, "burst", burst, "latency", latency])
        except subprocess.CalledProcessError as exc:
            raise LinkUnavailable(f"tbf refused: {exc.stderr.strip()}") from exc
        self.rate = rate
        self.history.append((time.monotonic(), rate))

    def unshape(self) -> None:
        _run(["tc", "qdisc", "del", "dev", self.server_if, "root"], check=False)
        self.rate = None
        self.history.append((time.monotonic(), "none"))

    def qdisc_stats(self) -> str:
        return _run(["tc", "-s", "qdisc", "show", "dev", self.server_if], check=False).stdout

    # -- teardown ----------------------------------------------------------------------------------

    def down(self) -> None:
        """Idempotent: delete the veth pair (its qdisc goes with it) and end the namespace."""
        if self._link_made:
            _run(["ip", "link", "del", self.server_if], check=False)
            self._link_made = False
        holder, self._holder = self._holder, None
        if holder is not None and holder.poll() is None:
            holder.send_signal(signal.SIGTERM)
            try:
                holder.wait(timeout=COMMAND_TIMEOUT)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait(timeout=COMMAND_TIMEOUT)
        if holder is not None and holder.stderr is not None:
            holder.stderr.close()
