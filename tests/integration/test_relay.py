"""Relay (issue 14): a chair on server A, three participants on server B through the relay.

Two real server processes, real aiortc peers, inside the network namespace. B's participants
decode the chair's video, the chair hears B's voices, and a keyframe request from B reaches A's
publisher. The relay is started and stopped through B's REST API.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket
from aiortc.sdp import SessionDescription

from loadtest.client import SyntheticParticipant, wait_until
from loadtest.simulcast import RembSubscriber, SimulcastPublisher
from recorder.depacketize import Vp8Depacketizer
from sfu import aiortc_hooks
from sfu.wire.rtp_packet import RtpView
from tests.serverproc import running_server

pytestmark = pytest.mark.media

DEADLINE_S = 30.0
FRAMES = 20
HIGH_BPS = 10_000_000


class ToneAudio(AudioStreamTrack):
    """A loud 1 kHz tone (aiortc's own track timing): a participant who speaks all the time."""

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        samples = np.arange(frame.samples) + frame.pts
        tone = np.sin(2 * np.pi * 1000 * samples / frame.sample_rate) * 16000
        frame.planes[0].update(tone.astype("<i2").tobytes())
        return frame


class Speaker(SyntheticParticipant):
    """Publishes only the tone (aiortc writes its RFC 6464 level on every packet)."""

    async def publish(self, timeout: float = 10.0) -> None:
        self.publisher.addTransceiver(ToneAudio(), direction="sendonly")
        aiortc_hooks.configure_ice(self.publisher, self.ice_addresses, None)
        await self.publisher.setLocalDescription(await self.publisher.createOffer())
        answer = await self.request({"type": "publish", "sdp": self.publisher.localDescription.sdp},
                                    "publish_answer", timeout)
        await self.publisher.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"],
                                                                        type="answer"))


def operator_token(base_url: str, log_text: str) -> str:
    marker = "Operator account 'admin', password "
    password = log_text.split(marker, 1)[1].split()[0]
    request = urllib.request.Request(
        base_url + "/api/login", data=json.dumps({"username": "admin", "password": password})
        .encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(json.load(response)["token"])


async def call(method: str, url: str, token: str, body: Any = None) -> tuple[int, Any]:
    def run() -> tuple[int, Any]:
        request = urllib.request.Request(
            url, method=method, data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")
    return await asyncio.to_thread(run)


def metric_total(base_url: str, name: str) -> float:
    with urllib.request.urlopen(base_url + "/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


async def near_id_of(relays: str, token: str, far_id: str) -> str:
    """The participant id B gives the relayed far participant ``far_id`` (once it flows)."""
    for _ in range(200):  # bounded: ~20 s
        _, listed = await call("GET", relays, token)
        near = listed[0]["stats"]["participants"].get(far_id)
        if near:
            return str(near)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{far_id} is not relayed: {listed}")


def video_ssrc_of(participant: SyntheticParticipant, owner: str) -> int | None:
    """The SSRC B's server sends ``owner``'s video with, from the last subscribe offer."""
    local = participant.subscriber.remoteDescription
    if local is None:
        return None
    for media in SessionDescription.parse(local.sdp).media:
        info = participant.tracks.get(media.rtp.muxId or "")
        if info and info["participant_id"] == owner and info["kind"] == "video" and media.ssrc:
            return media.ssrc[0].ssrc
    return None


WORKERS = pytest.mark.parametrize("workers", ["0", "2"], ids=["in-process", "workers-2"])
"""The media plane in the server process, and in two worker processes (``--workers 2``, the
relay's near side crossing into the room's worker: ``sfu/plane_relay.py``)."""


@WORKERS
async def test_chair_on_a_relayed_to_three_on_b(tmp_path: Path, workers: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    args = ["--workers", workers]
    with (running_server(tmp_path / "a", extra_args=args) as server_a,
          running_server(tmp_path / "b", extra_args=args) as server_b):
        token = operator_token(server_b.base_url, server_b.log_text())
        chair = SyntheticParticipant(server_a.base_url, "trung-uong", "Chair")
        district = [Speaker(server_b.base_url, "huyen", "Huyen 0", video=False)] + [
            SyntheticParticipant(server_b.base_url, "huyen", f"Huyen {n}", video=False)
            for n in (1, 2)]
        relays = server_b.base_url + "/api/rooms/huyen/relays"
        try:
            await chair.join()
            status, relay = await call("POST", relays, token, {
                "source_url": server_a.base_url, "source_room": "trung-uong",
                "participants": [chair.participant_id]})
            assert status == 201, relay
            assert relay["state"] == "running"
            for person in district:
                await person.join()
            relay_id = await near_id_of(relays, token, str(chair.participant_id))
            # B's stats name the relayed chair before every district client has read the
            # event that announces it (a busy machine delays the clients): wait, bounded.
            assert await wait_until(lambda: all(
                p.others.get(relay_id) == "Chair (relay)" for p in district), DEADLINE_S), [
                dict(p.others) for p in district]

            # 1. B's participants decode the chair's video (and hear the chair).
            assert await wait_until(lambda: all(
                p.received[relay_id]["video"] > FRAMES and p.received[relay_id]["audio"] > FRAMES
                for p in district), DEADLINE_S), [dict(p.received) for p in district]

            # 2. The chair hears B: the relay's audio slots arrive at A's chair.
            far_relay = next((pid for pid, name in chair.others.items()
                              if name == "huyen (relay)"), None)
            assert far_relay is not None, chair.others
            assert await wait_until(lambda: chair.received[far_relay]["audio"] > FRAMES,
                                    DEADLINE_S), dict(chair.received)
            # ... and sees the district speak: the voice keeps its audio level through the relay.
            assert await wait_until(lambda: any(
                e["type"] == "speakers" and far_relay in e["participant_ids"]
                for e in chair.events), DEADLINE_S), [
                e for e in chair.events if e["type"] == "speakers"]

            # 3. A keyframe request on B reaches A's publisher (B -> relay -> A -> chair).
            _, listed = await call("GET", relays, token)
            asked_before = listed[0]["stats"]["keyframe_requests_sent"]
            plis_before = metric_total(server_a.base_url, "diemcau_keyframe_requests_total")
            viewer = district[0]
            ssrc = video_ssrc_of(viewer, relay_id)
            assert ssrc is not None
            writer = aiortc_hooks.DatagramWriter(
                viewer.subscriber.getTransceivers()[0].receiver.transport)
            pli = bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1234, media_ssrc=ssrc))

            def reached() -> bool:
                writer.send_rtcp(pli)  # repeated: every hop rate-limits to one per 0.5 s
                return metric_total(server_a.base_url,
                                    "diemcau_keyframe_requests_total") > plis_before

            assert await wait_until(reached, DEADLINE_S, every=0.3)
            # Sender reports come every SENDER_REPORT_INTERVAL_S: on a fast run the first one
            # may not have crossed the relay yet (waited for, bounded, not assumed).
            for _ in range(int(DEADLINE_S / 0.2)):
                _, listed = await call("GET", relays, token)
                stats = listed[0]["stats"]
                if stats["sender_reports_relayed"] > 0:
                    break
                await asyncio.sleep(0.2)
            assert stats["keyframe_requests_sent"] > asked_before, stats
            assert stats["packets_relayed"] > 0 and stats["audio_packets_back"] > 0, stats
            assert stats["sender_reports_relayed"] > 0, stats  # lip sync on B

            # 4. The chair leaves A: its relayed tracks leave B (each of the three keeps only
            # the other two's audio: 6 consumers on B).
            await chair.leave()
            assert await wait_until(
                lambda: metric_total(server_b.base_url, "diemcau_consumers") == 6, DEADLINE_S)
            _, listed = await call("GET", relays, token)
            assert listed[0]["stats"]["tracks"] == [], listed

            assert await wait_until(lambda: all(relay_id not in p.others for p in district),
                                    DEADLINE_S)

            # 5. Stopping the relay.
            status, _ = await call("DELETE", f"{relays}/{relay['id']}", token)
            assert status == 204
            assert (await call("GET", relays, token))[1] == []
        finally:
            for person in (chair, *district):
                await person.leave()


async def test_relay_needs_a_relay_token_on_a_closed_server(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (running_server(tmp_path / "a", open_rooms=False) as server_a,
          running_server(tmp_path / "b") as server_b):
        token = operator_token(server_b.base_url, server_b.log_text())
        relays = server_b.base_url + "/api/rooms/huyen/relays"
        status, body = await call("POST", relays, token, {
            "source_url": server_a.base_url, "source_room": "trung-uong", "token": "not-a-jwt"})
        assert status == 502, body
        assert body["error"] == "relay-failed" and "bad-token" in body["message"], body
        status, body = await call("POST", relays, token, {
            "source_url": "file:///etc/passwd", "source_room": "x"})
        assert status == 400, body
        _, listed = await call("GET", relays, token)
        assert listed == []
        # A host may relay into its own room only from a listed far server: the server opens
        # the connection, and a host must not point it at an internal address.
        status, org = await call("POST", server_b.base_url + "/api/organisations", token,
                                 {"name": "Huyện"})
        assert status == 201, org
        status, _ = await call("POST", server_b.base_url + "/api/rooms", token,
                               {"name": "huyen", "org_id": org["id"]})
        assert status == 201
        status, _ = await call("POST", server_b.base_url + "/api/accounts", token, {
            "username": "host-huyen", "password": "host-password", "role": "host",
            "org_id": org["id"]})
        assert status == 201
        status, login = await call("POST", server_b.base_url + "/api/login", "", {
            "username": "host-huyen", "password": "host-password"})
        assert status == 200, login
        status, body = await call("POST", relays, login["token"], {
            "source_url": "http://10.1.2.3:6379", "source_room": "x"})
        assert status == 403 and body["error"] == "source-not-allowed", body
        # A token minted on A for the relay (role "relay": publishes, takes no seat there).
        token_a = operator_token(server_a.base_url, server_a.log_text())
        status, minted = await call("POST", server_a.base_url + "/api/rooms/demo/tokens",
                                    token_a, {"name": "Huyen relay", "role": "relay"})
        assert status in (200, 201), minted
        status, relay = await call("POST", relays, token, {
            "source_url": server_a.base_url, "source_room": "demo", "token": minted["token"],
            "pinned": True})
        assert status == 201 and relay["state"] == "running", relay
        _, listed = await call("GET", relays, token)
        assert [r["id"] for r in listed] == [relay["id"]]
        # The far server goes away: the relay says so and keeps trying to reconnect.
        server_a.stop()

        async def relay_state() -> str:
            _, listed = await call("GET", relays, token)
            return str(listed[0]["state"])

        for _ in range(100):  # bounded: ~10 s
            if await relay_state() == "reconnecting":
                break
            await asyncio.sleep(0.1)
        _, listed = await call("GET", relays, token)
        assert listed[0]["state"] == "reconnecting" and listed[0]["error"], listed
        status, _ = await call("DELETE", f"{relays}/{relay['id']}", token)
        assert status == 204
        status, _ = await call("DELETE", f"{relays}/{relay['id']}", token)
        assert status == 404


class DecodingViewer(RembSubscriber):
    """A ``RembSubscriber`` (its REMB chosen by the test) that also decodes the video it gets
    with libvpx: frames decoded, by width (the layer), per sending participant."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.decoded: dict[str, Counter[int]] = defaultdict(Counter)
        self.decode_errors = 0
        self._vp8: dict[int, tuple[Vp8Depacketizer, Any]] = {}

    def _on_rtp(self, data: bytes, arrival_ms: int) -> None:
        super()._on_rtp(data, arrival_ms)
        ssrc = int.from_bytes(data[8:12], "big")
        state = self.ssrcs.get(ssrc)
        info = self.tracks.get(state.mid) if state is not None else None
        if info is None or info["kind"] != "video" or data[1] & 0x7F in self.rtx_pts:
            return
        if ssrc not in self._vp8:
            self._vp8[ssrc] = (Vp8Depacketizer(), av.CodecContext.create("vp8", "r"))
        depacketizer, decoder = self._vp8[ssrc]
        for frame in depacketizer.push(RtpView.parse(data), arrival_ms / 1000):
            try:
                for picture in decoder.decode(av.Packet(frame.data)):
                    self.decoded[info["participant_id"]][picture.width] += 1
            except av.error.FFmpegError:
                self.decode_errors += 1


@WORKERS
async def test_simulcast_layers_through_the_relay(tmp_path: Path, workers: str) -> None:
    """A carries every layer of a simulcast chair to B (one stream per layer); B's allocator
    gives each of B's subscribers its own layer: the top one to a wide-open link, the lowest to
    a small tile; both decode. A layer switch on B asks A's publisher for that layer's keyframe.
    Also with the media plane in worker processes on both servers (``--workers 2``)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    args = ["--workers", workers]
    with (running_server(tmp_path / "a", extra_args=args) as server_a,
          running_server(tmp_path / "b", extra_args=args) as server_b):
        token = operator_token(server_b.base_url, server_b.log_text())
        relays = server_b.base_url + "/api/rooms/huyen/relays"
        chair = SimulcastPublisher(server_a.base_url, "trung-uong", "Chair")
        wide = DecodingViewer(server_b.base_url, "huyen", "Wide", forced_remb_bps=HIGH_BPS)
        small = DecodingViewer(server_b.base_url, "huyen", "Small", forced_remb_bps=HIGH_BPS)
        try:
            await chair.join()
            status, relay = await call("POST", relays, token, {
                "source_url": server_a.base_url, "source_room": "trung-uong"})
            assert status == 201, relay
            await wide.join()
            await small.join()
            relayed = await near_id_of(relays, token, str(chair.participant_id))

            async def tile(width: int, height: int) -> None:
                await small.send({"type": "tiles", "tiles": [{
                    "participant_id": relayed, "width": width, "height": height,
                    "visible": True}]})

            await tile(300, 170)

            def report() -> Any:
                return ({"wide": dict(wide.decoded[relayed]), "small": dict(small.decoded[relayed]),
                         "errors": (wide.decode_errors, small.decode_errors)}, chair.describe())

            # 1. Each of B's subscribers decodes its own layer of the relayed chair.
            assert await wait_until(lambda: wide.decoded[relayed][1280] > FRAMES
                                    and small.decoded[relayed][320] > FRAMES, DEADLINE_S), report()
            assert 1280 not in small.decoded[relayed], report()
            assert wide.current_width(relayed) == 1280 and small.current_width(relayed) == 320
            _, listed = await call("GET", relays, token)
            assert len(listed[0]["stats"]["tracks"]) == 2, listed  # audio + one layered video

            # 2. The small tile grows to the middle layer: B's consumer asks for a keyframe of
            # h, which reaches A's publisher as a PLI on h's SSRC; then h is decoded on B.
            plis = {layer.rid: layer.plis for layer in chair.layers}
            await tile(640, 360)
            assert await wait_until(lambda: small.decoded[relayed][640] > FRAMES, DEADLINE_S), (
                report(), plis)
            assert chair.layers[1].plis > plis["h"], (report(), plis)
            assert wide.current_width(relayed) == 1280, report()
            assert not wide.errors and not small.errors and not chair.errors

            # 3. Nobody on B wants f any more: the relay tells A (a tile for h), A stops
            # sending f to it, and A's publisher is told it may stop f (nobody on A wants it).
            await wide.leave()

            def f_off() -> bool:
                return any(e["type"] == "publish_layers" and e["active"].get("f") is False
                           for e in chair.events)

            assert await wait_until(f_off, DEADLINE_S), (
                [e for e in chair.events if e["type"] == "publish_layers"],
                (await call("GET", relays, token))[1][0]["stats"]["asked_of_far"])
            assert small.current_width(relayed) == 640, report()
        finally:
            for person in (chair, wide, small):
                await person.leave()


async def test_the_relay_enters_again_when_the_near_rooms_worker_is_lost(tmp_path: Path) -> None:
    """B runs its media in worker processes; the worker of B's room is killed: B's participants
    are told (``media-worker-lost``), the relay enters the room again on a live worker, and a
    participant who joins afterwards decodes the chair once more."""
    import os
    import signal

    from tests.integration.test_media_workers import left_reasons, media_workers, ready_workers

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (running_server(tmp_path / "a") as server_a,
          running_server(tmp_path / "b", extra_args=["--workers", "2"]) as server_b):
        workers = media_workers(server_b.proc.pid)
        assert await wait_until(lambda: ready_workers(server_b.base_url) == [
            workers[0], workers[1]], DEADLINE_S)
        token = operator_token(server_b.base_url, server_b.log_text())
        relays = server_b.base_url + "/api/rooms/huyen/relays"
        chair = SyntheticParticipant(server_a.base_url, "trung-uong", "Chair")
        before = SyntheticParticipant(server_b.base_url, "huyen", "Huyen 1", video=False)
        after = SyntheticParticipant(server_b.base_url, "huyen", "Huyen 2", video=False)
        try:
            await chair.join()
            status, relay = await call("POST", relays, token, {
                "source_url": server_a.base_url, "source_room": "trung-uong"})
            assert status == 201, relay
            await before.join()
            relayed = await near_id_of(relays, token, str(chair.participant_id))
            assert await wait_until(lambda: before.received[relayed]["video"] > FRAMES,
                                    DEADLINE_S), dict(before.received)

            os.kill(workers[0], signal.SIGKILL)  # the first room goes to worker 0
            assert await wait_until(lambda: "media-worker-lost" in left_reasons(before),
                                    DEADLINE_S), before.events[-3:]

            async def rejoined() -> dict[str, Any]:
                _, listed = await call("GET", relays, token)
                return dict(listed[0])

            for _ in range(200):  # bounded: ~20 s
                state = await rejoined()
                if state["stats"]["near_rejoins"] == 1 and state["stats"]["participants"]:
                    break
                await asyncio.sleep(0.1)
            assert state["state"] == "running" and state["stats"]["near_rejoins"] == 1, state
            again = await near_id_of(relays, token, str(chair.participant_id))
            await after.join()
            assert await wait_until(lambda: after.received[again]["video"] > FRAMES
                                    and after.received[again]["audio"] > FRAMES,
                                    DEADLINE_S), dict(after.received)
        finally:
            for person in (chair, before, after):
                await person.leave()
