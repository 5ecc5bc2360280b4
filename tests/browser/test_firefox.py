"""Firefox ESR meets an aiortc participant through the real server; both decode the other's video.

Firefox is driven over WebDriver BiDi (firefox_bidi.py; Playwright cannot drive Debian's Firefox).
Firefox gathers no 127.0.0.1 candidate, so the test gives lo an extra address, 198.18.0.1
(RFC 2544, it exists only in the private namespace), and the server announces that address.
Run inside a private network namespace as root (see docs/architecture.md#network-namespaces):
    unshare -n sh -c 'ip link set lo up; exec .venv/bin/pytest tests/browser/test_firefox.py -q'
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from firefox_bidi import Firefox, firefox_path

from loadtest.client import SyntheticParticipant
from tests.serverproc import running_server

pytestmark = [pytest.mark.browser, pytest.mark.media]

if firefox_path() is None:
    pytest.skip("firefox-esr is missing (apt-get install firefox-esr)", allow_module_level=True)

ICE_ADDRESS = "198.18.0.1"
ROOM = "firefox-test"
JOIN_TIMEOUT = 15.0
MEDIA_TIMEOUT = 15.0

# Firefox side: decoded remote video, and what its publisher really sends (per simulcast rid).
STATS_JS = """(async () => {
  const d = window.diemcau;
  const out = {state: d.state, selfId: d.selfId, framesDecoded: 0, inbound: [], outbound: [],
               pub: null, sub: null};
  const sub = d.pcs.subscriber, pub = d.pcs.publisher;
  if (sub) {
    out.sub = sub.connectionState;
    (await sub.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') {
        out.framesDecoded += r.framesDecoded || 0;
        out.inbound.push({w: r.frameWidth, h: r.frameHeight, frames: r.framesDecoded});
      }
    });
  }
  if (pub) {
    out.pub = pub.connectionState;
    (await pub.getStats()).forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') {
        out.outbound.push({rid: r.rid || null, w: r.frameWidth || 0, h: r.frameHeight || 0,
                           bytes: r.bytesSent || 0, frames: r.framesEncoded || 0});
      }
    });
  }
  return JSON.stringify(out);
})()"""


# The remote tile of participant PEER_ID as the page renders it.
TILE_JS = """(() => {
  const el = document.querySelector(`.tile[data-participant-id=${JSON.stringify(PEER_ID)}]`);
  if (!el) return JSON.stringify({found: false});
  const v = el.querySelector('video.remote-video');
  return JSON.stringify({
    found: true, name: el.querySelector('.name').textContent.trim(),
    videoWidth: v.videoWidth, videoHeight: v.videoHeight, paused: v.paused,
    placeholder: !el.querySelector('.placeholder').hidden,
  });
})()"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=5)


def _only_loopback() -> bool:
    return {name for _index, name in socket.if_nameindex()} == {"lo"}


@pytest.fixture
def lo_address() -> Iterator[str]:
    """Give lo the address Firefox will gather (only in a private namespace, never on the host).

    Removed again afterwards, so later tests in the same namespace see plain loopback.
    """
    assert _only_loopback(), (
        "refusing to change lo outside a private network namespace (only lo must exist): "
        "run under `unshare -n`"
    )
    addrs = subprocess.run(
        ["ip", "-o", "addr", "show", "dev", "lo"], check=True, capture_output=True, text=True,
        timeout=5,
    ).stdout
    added_addr = f" {ICE_ADDRESS}/" not in addrs
    if added_addr:
        _ip("addr", "add", f"{ICE_ADDRESS}/32", "dev", "lo")
    routes = subprocess.run(
        ["ip", "route", "show", "default"], check=True, capture_output=True, text=True, timeout=5
    ).stdout
    added_route = not routes.strip()
    if added_route:
        _ip("route", "add", "default", "dev", "lo", "src", ICE_ADDRESS)
    try:
        yield ICE_ADDRESS
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            if added_route:
                _ip("route", "del", "default", "dev", "lo")
            if added_addr:
                _ip("addr", "del", f"{ICE_ADDRESS}/32", "dev", "lo")


@pytest.fixture
def ff_server_url(tmp_path: Path, lo_address: str) -> Iterator[str]:
    """`diemcau serve` announcing only `lo_address` for ICE; yields its base URL."""
    with running_server(tmp_path, ice_address=lo_address) as server:
        yield server.base_url


async def _stats(ff: Firefox, ctx: str) -> dict:
    return json.loads(await ff.evaluate(ctx, STATS_JS, timeout=5.0))


async def _poll(check, timeout: float, interval: float = 0.25):
    """Call async `check()` until it returns something truthy or `timeout` passes."""
    deadline = time.monotonic() + timeout
    result = await check()
    while not result and time.monotonic() < deadline:
        await asyncio.sleep(interval)
        result = await check()
    return result


async def test_firefox_and_aiortc_exchange_video(
    ff_server_url: str, tmp_path: Path, artifacts_dir: Path
) -> None:
    peer = SyntheticParticipant(ff_server_url, ROOM, "Aio", ice_addresses=[ICE_ADDRESS])
    async with Firefox.launch(tmp_path) as ff:
        ctx = await ff.new_tab()
        stats: dict = {}
        try:
            await ff.navigate(ctx, f"{ff_server_url}/?room={ROOM}&name=Fox")

            async def joined() -> dict | None:
                nonlocal stats
                stats = await _stats(ff, ctx)
                return stats if stats["state"] == "joined" and stats["selfId"] else None

            assert await _poll(joined, JOIN_TIMEOUT), f"Firefox did not join: {stats}"
            fox_id = stats["selfId"]

            await peer.join(timeout=JOIN_TIMEOUT)
            assert await peer.wait_for(lambda: fox_id in peer.others, JOIN_TIMEOUT), peer.events

            # Firefox decodes the aiortc participant's video, and keeps decoding it.
            async def decoding() -> bool:
                nonlocal stats
                stats = await _stats(ff, ctx)
                return stats["framesDecoded"] > 0

            assert await _poll(decoding, MEDIA_TIMEOUT), f"Firefox decoded no frame: {stats}"
            first = stats["framesDecoded"]

            async def more_decoded() -> bool:
                nonlocal stats
                stats = await _stats(ff, ctx)
                return stats["framesDecoded"] > first

            # Waited for, not slept on: a busy machine (issue 10) decodes late, not never.
            assert await _poll(more_decoded, MEDIA_TIMEOUT), (
                f"framesDecoded did not rise: {first} {stats}")

            # The aiortc participant decodes Firefox's video, and keeps decoding it.
            assert await peer.wait_for(
                lambda: peer.received[fox_id]["video"] > 0, MEDIA_TIMEOUT
            ), f"aiortc decoded no frame from Firefox: {dict(peer.received)} {stats}"
            first = peer.received[fox_id]["video"]
            assert await peer.wait_for(
                lambda: peer.received[fox_id]["video"] > first, MEDIA_TIMEOUT
            ), f"frames from Firefox did not rise: {first} -> {peer.received[fox_id]['video']}"
            assert peer.received[fox_id]["audio"] > 0, dict(peer.received)
            assert not peer.errors, peer.errors

            # The page shows that video in the aiortc participant's tile (not the placeholder).
            tile_js = TILE_JS.replace("PEER_ID", json.dumps(peer.participant_id))
            tile: dict = {}

            async def tile_shows_video() -> dict | None:
                nonlocal tile
                tile = json.loads(await ff.evaluate(ctx, tile_js, timeout=5.0))
                return tile if tile.get("videoWidth", 0) > 0 and not tile["placeholder"] else None

            assert await _poll(tile_shows_video, MEDIA_TIMEOUT), f"tile shows no video: {tile}"
            assert tile["name"] == "Aio", tile

            # What Firefox really sends: one outbound-rtp per simulcast rid it encodes.
            stats = await _stats(ff, ctx)
            sending = [o for o in stats["outbound"] if o["bytes"] > 0]
            print(f"Firefox outbound video: {stats['outbound']}; inbound: {stats['inbound']}")
            assert sending, stats
            banner = await ff.evaluate(ctx, "(b => b.hidden ? '' : b.innerText)(banner)")
            assert not banner, f"error banner shown: {banner}"
            with contextlib.suppress(Exception):
                await ff.screenshot(ctx, artifacts_dir / "firefox-joined.png")

            # The aiortc participant leaves: its tile goes away on Firefox's page.
            await peer.leave()

            async def tile_gone() -> bool:
                return not json.loads(await ff.evaluate(ctx, tile_js, timeout=5.0))["found"]

            assert await _poll(tile_gone, JOIN_TIMEOUT), "the tile stayed after the peer left"
        except BaseException:
            with contextlib.suppress(Exception):
                await ff.screenshot(ctx, artifacts_dir / "firefox-failure.png")
            print("---- Firefox console ----\n" + "\n".join(ff.console[-60:]))
            print("---- Firefox log ----\n" + ff.log_tail())
            raise
        finally:
            await peer.leave()  # idempotent
