"""Fixtures for the browser tests: a real server subprocess and headless Chromium."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "artifacts"

# docs: /work/shared/design/TESTING.md. Playwright gives every launch a fresh temporary profile
# (its own --user-data-dir), so that flag is not repeated here.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

SERVER_START_TIMEOUT = 15.0
SERVER_STOP_TIMEOUT = 5.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def server_url(tmp_path: Path) -> Iterator[str]:
    """Start `signaling.cli serve` on a free port; yield its base URL; stop it."""
    port = _free_port()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    log_path = tmp_path / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "signaling.cli",
        "serve", "--open-rooms",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--ice-address",
        "127.0.0.1",
    ]
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT
            while not _healthy(base + "/healthz"):
                if proc.poll() is not None:
                    pytest.fail(
                        f"server exited with {proc.returncode} before /healthz answered:\n"
                        + log_path.read_text(errors="replace")[-4000:]
                    )
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"/healthz did not answer 200 within {SERVER_START_TIMEOUT} s:\n"
                        + log_path.read_text(errors="replace")[-4000:]
                    )
                time.sleep(0.1)
            yield base
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=SERVER_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=SERVER_STOP_TIMEOUT)
            # Shown by pytest only when the test fails.
            print("---- server log (tail) ----")
            print(log_path.read_text(errors="replace")[-6000:])


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    """One headless Chromium; tests open pages as separate contexts of it."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=CHROMIUM_FLAGS,
            headless=True,
            timeout=30_000,
            env={**os.environ, "LANG": "en_US.UTF-8"},
        )
        try:
            yield browser
        finally:
            await browser.close()
