"""Simulcast end to end: a synthetic Chrome-like publisher (three rid-tagged VP8 layers q/h/f on
one m-line) and subscribers whose REMB the test dictates, through the real server on loopback.

The layer a subscriber receives is read from the VP8 keyframes' frame width (the SFU rewrites
SSRCs): 320 = q, 640 = h, 1280 = f. Policy under test (sfu/downlink*.py, sfu/policy/audio_only.py):
below 2 Mbps a subscriber gets audio only once the estimate is a measured limit (under 80 % of
what we send), after 0.5 s; video returns after >= 2.5 Mbps for 5 s. Layer choice by bandwidth is
only visible with the threshold lowered (a server process started with --audio-only-below).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from loadtest.simulcast import RembSubscriber, SimulcastPublisher, WidthWindow
from sfu.worker import Worker
from signaling.app import MEDIA_PLANE
from tests.conftest import base_url
from tests.serverproc import running_server

pytestmark = pytest.mark.media

Q, H, F = 320, 640, 1280
HIGH_BPS = 10_000_000


async def start(url: str, room: str, remb: int | None, **kwargs: object) -> tuple[
        SimulcastPublisher, RembSubscriber]:
    publisher = SimulcastPublisher(url, room)
    subscriber = RembSubscriber(url, room, forced_remb_bps=remb, **kwargs)  # type: ignore[arg-type]
    await publisher.join()
    await subscriber.join()
    return publisher, subscriber


async def stop(*people: SimulcastPublisher | RembSubscriber) -> None:
    await asyncio.gather(*(p.leave() for p in people), return_exceptions=True)


async def wait_width(sub: RembSubscriber, pid: str, width: int, timeout: float) -> float | None:
    """Seconds until ``width`` is the layer arriving from ``pid`` (None: not within timeout)."""
    started = time.monotonic()
    ok = await sub.wait_for(lambda: sub.current_width(pid) == width, timeout)
    return time.monotonic() - started if ok else None


async def only_width_for(sub: RembSubscriber, pid: str, seconds: float) -> dict[int, int]:
    """Video packets per layer width received during the next ``seconds``."""
    window = WidthWindow.begin(sub, pid)
    await asyncio.sleep(seconds)
    return window.since(sub, pid)


def state(pub: SimulcastPublisher, sub: RembSubscriber) -> str:
    pid = pub.participant_id or ""
    return (f"received={dict(sub.received.get(pid, {}))} "
            f"by_width={dict(sub.packets_by_width.get(pid, {}))} "
            f"bandwidth={[m for _t, m in sub.bandwidth_events()]} publisher={pub.describe()} "
            f"errors={sub.errors + pub.errors}")


# -- a. the server receives all three layers ------------------------------------------------------


async def test_server_receives_three_layers_by_rid(server) -> None:
    url = base_url(server)
    publisher = SimulcastPublisher(url, "three-layers")
    try:
        await publisher.join()
        worker = server.app[MEDIA_PLANE]
        assert isinstance(worker, Worker)  # this test reads the in-process worker's rooms

        def video_producer():  # type: ignore[no-untyped-def]
            room = worker.rooms.get("three-layers")
            participant = room.participants.get(publisher.participant_id) if room else None
            if participant is None:
                return None
            return next((p for p in participant.producers if p.is_video), None)

        def all_layers_measured() -> bool:
            producer = video_producer()
            return producer is not None and all(
                layer.ssrc is not None and layer.bitrate_bps > 0 for layer in producer.layers
            )

        assert await publisher.wait_for(all_layers_measured, 10), publisher.describe()
        await asyncio.sleep(2.5)  # a couple of full 1 s bitrate windows
        producer = video_producer()
        assert producer is not None and producer.simulcast
        layers = {layer.rid: layer for layer in producer.layers}
        assert [layer.rid for layer in producer.layers] == ["q", "h", "f"]
        sent = {layer.rid: layer.ssrc for layer in publisher.layers}
        rates = {rid: layer.bitrate_bps for rid, layer in layers.items()}
        print(f"\nlayer bitrates seen by the server (bit/s): {rates}")
        for rid, layer in layers.items():
            assert layer.ssrc == sent[rid], (rid, layer.ssrc, sent)
            assert layer.keyframes >= 1, rid
        assert 80_000 < rates["q"] < 300_000, rates
        assert 300_000 < rates["h"] < 900_000, rates
        assert 800_000 < rates["f"] < 2_500_000, rates
        assert rates["q"] < rates["h"] < rates["f"], rates
        participant = worker.rooms["three-layers"].participants[publisher.participant_id]
        assert not participant.publisher.drops, dict(participant.publisher.drops)
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/metrics") as response:
                metrics = await response.text()
        received = next(float(line.split()[-1]) for line in metrics.splitlines()
                        if line.startswith("diemcau_rtp_received_packets"))
        assert received > 100, metrics
        assert 'diemcau_rtp_dropped_packets_total{reason="unknown_ssrc"} 0.0' in metrics, metrics
    finally:
        await stop(publisher)


# -- b. the 2 Mbps rule, REMB driven --------------------------------------------------------------


async def test_measured_limit_below_2mbps_goes_audio_only_and_recovers(server) -> None:
    """10 Mbps -> f; 900 kbit/s (< 80 % of the ~1.4 Mbit/s we receive: a measured limit) ->
    audio only within 2 s; 10 Mbps again -> video back after >= 5 s (and within 8 s)."""
    publisher, sub = await start(base_url(server), "two-megabit", HIGH_BPS)
    pid = publisher.participant_id
    assert pid is not None
    try:
        took = await wait_width(sub, pid, F, 10)
        assert took is not None, state(publisher, sub)
        print(f"\n10 Mbit/s REMB: f (1280 px) after {took:.2f} s")
        await asyncio.sleep(1.0)
        assert not sub.bandwidth_events(), state(publisher, sub)

        changed = time.monotonic()
        sub.forced_remb_bps = 900_000
        went = await sub.wait_for(lambda: any(m["audio_only"] for _t, m in sub.bandwidth_events()),
                                  4)
        assert went, state(publisher, sub)
        at, message = sub.bandwidth_events()[0]
        to_audio_only = at - changed
        print(f"900 kbit/s REMB -> audio-only message after {to_audio_only:.2f} s: {message}")
        assert to_audio_only <= 2.0
        assert message["direction"] == "down" and message["audio_only"] is True
        assert message["reason"] == "bandwidth"
        assert message["threshold_bps"] == 2_000_000
        assert message["estimate_bps"] == 900_000
        # Video stops (allow in-flight packets), audio carries on.
        await asyncio.sleep(0.5)
        video_before = sub.received[pid]["video"]
        audio_before = sub.received[pid]["audio"]
        await asyncio.sleep(1.5)
        assert sub.received[pid]["video"] == video_before, state(publisher, sub)
        assert sub.received[pid]["audio"] >= audio_before + 50, state(publisher, sub)

        changed = time.monotonic()
        sub.forced_remb_bps = HIGH_BPS
        back = await sub.wait_for(lambda: len(sub.bandwidth_events()) >= 2, 9)
        assert back, state(publisher, sub)
        at, message = sub.bandwidth_events()[1]
        to_video = at - changed
        assert message["audio_only"] is False and message["reason"] is None, message
        video_at_message = sub.received[pid]["video"]
        resumed = await sub.wait_for(lambda: sub.received[pid]["video"] > video_at_message + 30, 4)
        first_video = time.monotonic() - changed
        print(f"10 Mbit/s REMB again -> audio_only false after {to_video:.2f} s, "
              f"video flowing again by {first_video:.2f} s on width {sub.current_width(pid)}")
        assert 5.0 <= to_video <= 8.0, to_video
        assert resumed, state(publisher, sub)
        assert sub.current_width(pid) in (Q, H, F)
        assert await wait_width(sub, pid, F, 5) is not None, state(publisher, sub)
        assert not sub.errors and not publisher.errors
    finally:
        await stop(publisher, sub)


async def test_remb_1500k_while_receiving_f_goes_audio_only(server) -> None:
    publisher, sub = await start(base_url(server), "one-and-a-half", HIGH_BPS)
    pid = publisher.participant_id
    assert pid is not None
    try:
        assert await wait_width(sub, pid, F, 10) is not None, state(publisher, sub)
        await asyncio.sleep(1.0)
        changed = time.monotonic()
        sub.forced_remb_bps = 1_500_000
        went = await sub.wait_for(lambda: any(m["audio_only"] for _t, m in sub.bandwidth_events()),
                                  4)
        if went:
            print(f"\n1.5 Mbit/s REMB -> audio-only after "
                  f"{sub.bandwidth_events()[0][0] - changed:.2f} s")
        assert went, f"no audio-only after 4 s at 1.5 Mbit/s: {state(publisher, sub)}"
    finally:
        await stop(publisher, sub)



async def test_settled_consumer_requests_no_keyframes(server) -> None:
    publisher, sub = await start(base_url(server), "no-pli", HIGH_BPS)
    pid = publisher.participant_id
    assert pid is not None
    try:
        assert await wait_width(sub, pid, F, 10) is not None, state(publisher, sub)
        await asyncio.sleep(1.5)
        before = {layer.rid: layer.plis for layer in publisher.layers}
        await asyncio.sleep(5.0)
        plis = {layer.rid: layer.plis - before[layer.rid] for layer in publisher.layers}
        print(f"\nPLIs in 5 s with the subscriber settled on f: {plis}")
        assert sub.current_width(pid) == F
        assert plis["f"] <= 1, plis  # no loss on loopback: nothing to repair
    finally:
        await stop(publisher, sub)

# -- b'. layer choice by bandwidth (threshold lowered to 100 kbit/s) -------------------------------


async def test_layer_follows_remb_with_threshold_lowered(tmp_path: Path) -> None:
    with running_server(tmp_path, log_level="warning",
                        extra_args=("--audio-only-below", "100000")) as server:
        publisher = sub = None
        try:
            publisher, sub = await start(server.base_url, "layers", HIGH_BPS)
            pid = publisher.participant_id
            assert pid is not None
            timings = []
            for remb, width, first_timeout in ((HIGH_BPS, F, 10), (800_000, H, 4),
                                               (300_000, Q, 4), (HIGH_BPS, F, 4)):
                sub.forced_remb_bps = remb
                took = await wait_width(sub, pid, width, first_timeout)
                assert took is not None, f"REMB {remb}: no {width} px: {state(publisher, sub)}"
                timings.append((remb, width, round(took, 2)))
                await asyncio.sleep(0.5)  # packets of the previous layer still in flight
                seen = await only_width_for(sub, pid, 1.5)
                assert set(seen) == {width}, (remb, seen, state(publisher, sub))
            print(f"\n(REMB, layer width, seconds to switch): {timings}")
            assert not sub.bandwidth_events(), state(publisher, sub)
            assert server.proc.poll() is None, "server died"
        finally:
            await stop(*(p for p in (publisher, sub) if p is not None))


# -- c. tile size ----------------------------------------------------------------------------------


async def test_small_tile_gets_only_q_and_hidden_tile_no_video(server) -> None:
    url = base_url(server)
    publisher = SimulcastPublisher(url, "tiles")
    sub = RembSubscriber(url, "tiles", forced_remb_bps=HIGH_BPS)
    try:
        await publisher.join()
        await sub.join()
        pid = publisher.participant_id
        assert pid is not None

        async def tile(width: int, height: int, visible: bool) -> None:
            await sub.send({"type": "tiles", "tiles": [
                {"participant_id": pid, "width": width, "height": height, "visible": visible}]})

        await tile(300, 170, True)  # before any media: the layer is never raised beyond q
        assert await sub.wait_for(lambda: sub.received[pid]["video"] >= 60, 10), (
            state(publisher, sub))
        await asyncio.sleep(2.0)
        assert set(sub.packets_by_width[pid]) == {Q}, state(publisher, sub)
        assert {k.width for k in sub.keyframes} == {Q}

        await tile(300, 170, False)
        await asyncio.sleep(1.0)
        video, audio = sub.received[pid]["video"], sub.received[pid]["audio"]
        await asyncio.sleep(1.5)
        assert sub.received[pid]["video"] == video, state(publisher, sub)
        assert sub.received[pid]["audio"] >= audio + 50, state(publisher, sub)
        assert not sub.bandwidth_events(), "hiding a tile is not audio-only"

        await tile(1280, 720, True)
        assert await wait_width(sub, pid, F, 5) is not None, state(publisher, sub)
        assert not sub.errors and not publisher.errors
    finally:
        await stop(publisher, sub)
