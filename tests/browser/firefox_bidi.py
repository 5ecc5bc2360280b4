"""A minimal WebDriver BiDi client for Debian's `firefox-esr` (no geckodriver, no Playwright).

Firefox's remote agent speaks WebDriver BiDi on `--remote-debugging-port`; this module starts a
headless Firefox with a throwaway profile, connects to `ws://127.0.0.1:PORT/session` with aiohttp
and offers just what the browser tests need: open a tab, navigate, evaluate a script (awaiting
promises). Every wait is bounded; `close()` always kills the process.

    async with Firefox.launch(tmp_path) as ff:
        ctx = await ff.new_tab()
        await ff.navigate(ctx, "http://127.0.0.1:8080/")
        title = await ff.evaluate(ctx, "document.title")
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.serverproc import free_port

FIREFOX_BINARY = "firefox-esr"

# Written to the profile's user.js. Fake camera and microphone without a prompt; host candidates
# with real addresses (not mDNS names, which the server cannot resolve); no first-run pages,
# telemetry, updates or background network traffic.
PREFS: dict[str, bool | int | str] = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "media.peerconnection.ice.loopback": True,
    "media.autoplay.default": 0,  # allow (remote tiles play with sound)
    "media.autoplay.blocking_policy": 0,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.aboutwelcome.enabled": False,
    "browser.tabs.warnOnClose": False,
    "browser.newtabpage.enabled": False,
    "browser.newtabpage.activity-stream.feeds.system.topstories": False,
    "browser.newtabpage.activity-stream.feeds.snippets": False,
    "browser.ping-centre.telemetry": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.downloads.remote.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.safebrowsing.provider.google.updateURL": "",
    "browser.search.update": False,
    "browser.region.network.url": "",
    "browser.region.update.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.server": "",
    "app.update.auto": False,
    "app.update.enabled": False,
    "app.update.checkInstallTime": False,
    "app.normandy.enabled": False,
    "app.shield.optoutstudies.enabled": False,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.http.speculative-parallel-limit": 0,
    "services.settings.server": "",
    "services.sync.enabled": False,
    "identity.fxaccounts.enabled": False,
    "dom.push.connection.enabled": False,
    "geo.provider.network.url": "",
    "messaging-system.rsexperimentloader.enabled": False,
    "remote.prefs.recommended": True,
}

START_TIMEOUT = 30.0  # Firefox to accept a BiDi WebSocket
COMMAND_TIMEOUT = 15.0  # default bound for one BiDi command
STOP_TIMEOUT = 5.0


class BidiError(Exception):
    """A BiDi command answered with an error, or a script threw."""


def _user_js(prefs: dict[str, bool | int | str]) -> str:
    return "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items())


def firefox_path() -> str | None:
    return shutil.which(FIREFOX_BINARY)


class Firefox:
    """One headless Firefox process and one BiDi session on it."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, port: int) -> None:
        self.proc = proc
        self.log_path = log_path
        self.port = port
        self.console: list[str] = []  # log.entryAdded texts, for failure reports
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    @classmethod
    def launch(
        cls, workdir: Path, extra_prefs: dict[str, bool | int | str] | None = None
    ) -> _Launcher:
        """`async with Firefox.launch(dir) as ff:` starts Firefox with a profile under `dir`."""
        return _Launcher(workdir, extra_prefs or {})

    @classmethod
    async def _start(cls, workdir: Path, extra_prefs: dict[str, bool | int | str]) -> Firefox:
        binary = firefox_path()
        if binary is None:
            raise FileNotFoundError(f"{FIREFOX_BINARY} is not installed")
        profile = workdir / "firefox-profile"
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "user.js").write_text(_user_js({**PREFS, **extra_prefs}))
        port = free_port()
        log_path = workdir / "firefox.log"
        env = {
            **os.environ,
            "MOZ_HEADLESS": "1",
            "MOZ_CRASHREPORTER_DISABLE": "1",
            "HOME": str(workdir),  # keep ~/.mozilla and caches inside the test's directory
            "XDG_CACHE_HOME": str(workdir / "cache"),
        }
        cmd = [
            binary, "--headless", "--no-remote", "--new-instance",
            f"--remote-debugging-port={port}", "--remote-allow-hosts=127.0.0.1",
            "--profile", str(profile), "about:blank",
        ]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,  # its own process group: close() ends all its children
            )
        ff = cls(proc, log_path, port)
        try:
            await ff._connect()
        except BaseException:
            await ff.close()
            raise
        return ff

    async def _connect(self) -> None:
        self._http = aiohttp.ClientSession()
        url = f"ws://127.0.0.1:{self.port}/session"
        deadline = time.monotonic() + START_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"firefox exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                self._ws = await self._http.ws_connect(
                    url, timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
                    max_msg_size=64 << 20,
                )
                break
            except (aiohttp.ClientError, OSError) as exc:
                last = exc
                await asyncio.sleep(0.2)
        else:
            raise TimeoutError(
                f"no BiDi endpoint on {url} within {START_TIMEOUT} s ({last}):\n{self.log_tail()}"
            )
        self._reader = asyncio.ensure_future(self._read_forever())
        await self.command("session.new", {"capabilities": {}})
        await self.command("session.subscribe", {"events": ["log.entryAdded"]})

    async def close(self) -> None:
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.command("session.end", {}), 2.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 2.0)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        if self._http is not None:
            await self._http.close()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await asyncio.to_thread(self.proc.wait, STOP_TIMEOUT)
        # Content processes may outlive the parent for a moment: end the whole group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- protocol --------------------------------------------------------------------------------

    async def _read_forever(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    break
                message = json.loads(frame.data)
                if "id" in message:
                    future = self._pending.pop(message["id"], None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif message.get("method") == "log.entryAdded":
                    params = message.get("params", {})
                    self.console.append(f"{params.get('level')}: {params.get('text')}")
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("BiDi WebSocket closed"))
            self._pending.clear()

    async def command(
        self, method: str, params: dict[str, Any], timeout: float = COMMAND_TIMEOUT
    ) -> dict[str, Any]:
        if self._ws is None or self._ws.closed:
            raise ConnectionError("BiDi WebSocket is not open")
        command_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        await self._ws.send_str(json.dumps({"id": command_id, "method": method, "params": params}))
        try:
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(f"BiDi {method} got no answer within {timeout} s") from None
        finally:
            self._pending.pop(command_id, None)
        if reply.get("type") == "error":
            raise BidiError(f"{method}: {reply.get('error')}: {reply.get('message')}")
        return reply.get("result", {})

    # -- browsing contexts and scripts -----------------------------------------------------------

    async def new_tab(self) -> str:
        """A browsing context to use: the first top-level tab, else a new one."""
        tree = await self.command("browsingContext.getTree", {"maxDepth": 0})
        contexts = tree.get("contexts", [])
        if contexts:
            return contexts[0]["context"]
        created = await self.command("browsingContext.create", {"type": "tab"})
        return created["context"]

    async def create_tab(self) -> str:
        created = await self.command("browsingContext.create", {"type": "tab"})
        return created["context"]

    async def navigate(self, context: str, url: str, timeout: float = COMMAND_TIMEOUT) -> None:
        await self.command(
            "browsingContext.navigate",
            {"context": context, "url": url, "wait": "complete"},
            timeout,
        )

    async def evaluate(
        self, context: str, expression: str, timeout: float = COMMAND_TIMEOUT
    ) -> Any:
        """Evaluate `expression` in the page (promises are awaited); return it as Python."""
        result = await self.command(
            "script.evaluate",
            {
                "expression": expression,
                "target": {"context": context},
                "awaitPromise": True,
                "resultOwnership": "none",
            },
            timeout,
        )
        if result.get("type") == "exception":
            details = result.get("exceptionDetails", {})
            raise BidiError(f"script threw: {details.get('text')}")
        return _deserialize(result.get("result", {}))

    async def screenshot(self, context: str, path: Path) -> None:
        import base64

        result = await self.command("browsingContext.captureScreenshot", {"context": context})
        path.write_bytes(base64.b64decode(result["data"]))


def _deserialize(value: dict[str, Any]) -> Any:
    """BiDi RemoteValue -> Python (primitives, arrays, objects; other types by their `type`)."""
    kind = value.get("type")
    if kind in ("undefined", "null"):
        return None
    if kind in ("string", "boolean"):
        return value["value"]
    if kind == "number":
        v = value["value"]
        if isinstance(v, str):  # NaN, -0, Infinity, -Infinity
            return float(v.replace("Infinity", "inf")) if v != "-0" else -0.0
        return v
    if kind == "bigint":
        return int(value["value"])
    if kind in ("array", "set"):
        return [_deserialize(item) for item in value.get("value", [])]
    if kind in ("object", "map"):
        out: dict[Any, Any] = {}
        for key, item in value.get("value", []):
            out[key if isinstance(key, str) else _deserialize(key)] = _deserialize(item)
        return out
    return {"type": kind}


class _Launcher:
    def __init__(self, workdir: Path, extra_prefs: dict[str, bool | int | str]) -> None:
        self._workdir = workdir
        self._extra = extra_prefs
        self._ff: Firefox | None = None

    async def __aenter__(self) -> Firefox:
        self._ff = await Firefox._start(self._workdir, self._extra)
        return self._ff

    async def __aexit__(self, *exc: object) -> None:
        if self._ff is not None:
            await self._ff.close()
