"""Fixtures for the browser tests: a real server subprocess and headless Chromium."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.serverproc import running_server

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "artifacts"

# Fake camera and microphone, loopback candidates (a namespace with only lo has no other
# address), and no background traffic to Google's hosts (this machine's network refuses it).
# Playwright gives every launch a fresh temporary profile (its own --user-data-dir), so that
# flag is not repeated here.
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


@pytest.fixture
def server_url(tmp_path: Path) -> Iterator[str]:
    """Start `diemcau serve` on a free port; yield its base URL; stop it."""
    with running_server(tmp_path) as server:
        yield server.base_url


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
            # DIEMCAU_CHROMIUM_ARGS: extra flags when diagnosing, e.g. "--enable-logging=stderr
            # --vmodule=*goog_cc*=2" (the log then shows with DEBUG=pw:browser).
            args=CHROMIUM_FLAGS + os.environ.get("DIEMCAU_CHROMIUM_ARGS", "").split(),
            headless=True,
            timeout=30_000,
            env={**os.environ, "LANG": "en_US.UTF-8"},
        )
        try:
            yield browser
        finally:
            await browser.close()
