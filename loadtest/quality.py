"""What one synthetic participant of ``diemcau loadtest`` receives, measured without decoding.

``LoadParticipant`` publishes like a browser (``SimulcastPublisher``: pre-encoded VP8 q/h/f with
MID/RID extensions + pre-encoded Opus; it obeys ``publish_layers``) and subscribes like one
(answers every ``subscribe_offer``, reports its tiles in a grid layout, sends REMB for a fixed
downlink). Its subscriber transport is hooked: decrypted RTP is parsed in a few dozen
operations per packet, never decoded.

Per incoming SSRC (``TrackStats``): extended sequence numbers (loss = expected - received in the
window), RFC 3550 interarrival jitter, bytes, and for video the content marker and the delay.

Content marker: the first 16 bytes of each VP8 frame (after the RTP payload descriptor) are
looked up in an index of the pre-encoded clip: a hit names the simulcast layer and the frame in
the loop (so "layers received" needs no keyframe), a miss is a corrupted or foreign frame.

End-to-end delay, and why this way: the VP8 payload cannot carry a timestamp without breaking
VP8, and abs-send-time is rewritten by the SFU with its own send time. But the publisher stamps
each frame's RTP timestamp from its clock at the moment it sends the frame and sends RTCP sender
reports (NTP wall clock <-> RTP timestamp) every second; the SFU translates each SR into its
consumers' timestamp space (``sfu/consumer.py`` ``sender_report``), exactly as browsers need for
lip sync. A receiver on the same machine (same wall clock) maps the first packet of each frame
back to its send time through the latest SR: delay = now - (ntp + (ts - sr_ts) / 90 kHz). This
covers publisher SRTP, the server and our own receive path, and a server that mangles SRs or
timestamps shows up as absurd delays. Checked with ``--added-delay-ms D`` (publishers stamp
frames D ms before sending them, the SRs keep the true mapping): the measured delay grows by D
(60 ms in -> p50 60-61 ms out; ``tests/integration/test_loadtest_smoke.py``). ``tc netem`` is
not available in this kernel. Audio (aiortc's sender stamps its SR with its last packet,
+-20 ms) is counted for loss and jitter only.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections import Counter
from typing import Any

from aiortc import RTCSessionDescription
from aiortc.rtp import RTCP_PSFB_APP, RtcpPacket, RtcpPsfbPacket, RtcpSrPacket, pack_remb_fci

from loadtest.media import load_simulcast_clips
from loadtest.simulcast import SimulcastPublisher
from sfu import aiortc_hooks
from sfu.wire.vp8 import frame_start_offset

_RTPMAP = re.compile(r"^a=rtpmap:(\d+)\s+([\w-]+)/(\d+)")
MARKER_BYTES = 16
NTP_UNIX_OFFSET = 2208988800
REMB_INTERVAL_S = 0.5
TILES_INTERVAL_S = 0.5
UPLINK_INTERVAL_S = 1.0
VIEWPORT = (1280, 720)
CLOCK = {"video": 90000, "audio": 48000}


def content_index() -> dict[bytes, tuple[str, int]]:
    """First bytes of every pre-encoded frame -> (rid, index in the loop)."""
    index: dict[bytes, tuple[str, int]] = {}
    for clip in load_simulcast_clips():
        for i, frame in enumerate(clip.frames):
            index.setdefault(frame[:MARKER_BYTES], (clip.rid, i))
    return index


def grid_tiles(count: int, viewport: tuple[int, int] = VIEWPORT) -> tuple[int, int]:
    """Tile size of a gallery of ``count`` 16:9 tiles filling ``viewport`` (as the web app)."""
    if count <= 0:
        return viewport
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    width = min(viewport[0] // cols, int(viewport[1] // rows * 16 / 9))
    return width, width * 9 // 16


class TrackStats:
    """One incoming SSRC."""

    __slots__ = ("kind", "participant", "clock", "highest", "cycles", "base", "received",
                 "bytes", "jitter", "last_transit", "last_ts", "sr", "layer", "frames_by_layer",
                 "marker_ok", "marker_bad", "first_frame_at", "started")

    def __init__(self, kind: str, participant: str) -> None:
        self.kind = kind
        self.participant = participant
        self.clock = CLOCK.get(kind, 90000)
        self.highest: int | None = None  # extended sequence number
        self.cycles = 0
        self.base: int | None = None  # highest at the window start
        self.received = 0
        self.bytes = 0
        self.jitter = 0.0  # in clock units
        self.last_transit: float | None = None
        self.last_ts: int | None = None
        self.sr: tuple[float, int] | None = None  # (unix seconds, rtp timestamp)
        self.layer: str | None = None
        self.frames_by_layer: Counter[str] = Counter()
        self.marker_ok = 0
        self.marker_bad = 0
        self.first_frame_at: float | None = None
        self.started = time.monotonic()

    def reset(self) -> None:
        self.base = self.highest
        self.received = 0
        self.bytes = 0
        self.frames_by_layer = Counter()
        self.marker_ok = self.marker_bad = 0

    def expected(self) -> int:
        if self.highest is None:
            return 0
        if self.base is None:
            return self.received  # first packets of the window: no loss known yet
        return max(0, self.highest - self.base)


class LoadParticipant(SimulcastPublisher):
    """Publishes q/h/f + Opus, subscribes to everyone, measures what it receives."""

    def __init__(self, base_url: str, room: str, name: str, *, downlink_bps: int = 20_000_000,
                 send_tiles: bool = True, marker_index: dict[bytes, tuple[str, int]] | None = None,
                 added_delay_ms: float = 0.0, uplink_bps: int | None = 20_000_000,
                 **kwargs: Any) -> None:
        super().__init__(base_url, room, name, **kwargs)
        self.added_delay_s = added_delay_ms / 1000
        self.uplink_bps = uplink_bps
        self.fast_receive = True
        self.downlink_bps = downlink_bps
        self.send_tiles = send_tiles
        self.markers = marker_index if marker_index is not None else content_index()
        self.events = _Events(self._on_event)
        self.tracks_by_ssrc: dict[int, TrackStats] = {}
        self.ssrc_mid: dict[int, tuple[str, str]] = {}  # ssrc -> (mid, kind)
        self.rtx_pts: set[int] = set()
        self.delay_ms: Counter[int] = Counter()  # histogram, 1 ms bins
        self.unknown_packets = 0
        self.join_started: float | None = None
        self.join_ms: float | None = None
        self.published_at: float | None = None  # monotonic, when the publish answer came
        self.audio_only = False
        self.audio_only_since: float | None = None
        self.audio_only_s = 0.0
        self.reconnects = 0
        # Last-N: whose video the server says it forwards (None: everyone's). Only those count
        # as missing when they do not arrive.
        self.forwarded: set[str] | None = None
        self.window_start = time.monotonic()
        self.rembs_sent = 0
        self._sub_writer: aiortc_hooks.DatagramWriter | None = None
        self._background: asyncio.Task[None] | None = None
        self._tiles_dirty = True

    # -- joining ----------------------------------------------------------------------------------

    async def join(self, timeout: float = 10.0) -> dict[str, Any]:
        self.join_started = time.monotonic()
        await self.connect()
        joined = await self.request(
            {"type": "join", "room": self.room, "name": self.name}, "joined", timeout)
        self.join_ms = (time.monotonic() - self.join_started) * 1000
        self.participant_id = joined["participant_id"]
        for other in joined["participants"]:
            self.others[other["id"]] = other["name"]
        await self.publish(timeout)
        self.published_at = time.monotonic()
        self._background = asyncio.ensure_future(self._periodic())
        return joined

    def _on_event(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind in ("participant_joined", "participant_left"):
            self._tiles_dirty = True
        elif kind == "forwarded":
            ids = message.get("participant_ids")
            self.forwarded = {i for i in ids if isinstance(i, str)} if isinstance(ids, list) \
                else None
        elif kind == "publish_layers":
            video = bool(message.get("video", True))
            active = message.get("active") or {}
            for layer in self.layers:
                layer.active = video and bool(active.get(layer.rid, True))
        elif kind == "bandwidth" and message.get("direction") == "down":
            now = time.monotonic()
            if message.get("audio_only") and not self.audio_only:
                self.audio_only, self.audio_only_since = True, now
            elif not message.get("audio_only") and self.audio_only:
                self.audio_only_s += now - (self.audio_only_since or now)
                self.audio_only, self.audio_only_since = False, None

    async def _periodic(self) -> None:
        last_tiles = last_uplink = 0.0
        while True:
            await asyncio.sleep(REMB_INTERVAL_S)
            self.send_remb()
            now = time.monotonic()
            if self.uplink_bps and now - last_uplink >= UPLINK_INTERVAL_S:
                # as browsers report availableOutgoingBitrate: the uplink we stand for
                last_uplink = now
                with contextlib.suppress(Exception):
                    await self.send({"type": "uplink", "available_bps": self.uplink_bps})
            if self.send_tiles and self._tiles_dirty and now - last_tiles >= TILES_INTERVAL_S:
                self._tiles_dirty = False
                last_tiles = now
                width, height = grid_tiles(len(self.others))
                tiles = [{"participant_id": pid, "width": width, "height": height,
                          "visible": True} for pid in self.others]
                try:
                    await self.send({"type": "tiles", "tiles": tiles})
                except Exception:  # noqa: BLE001 - the socket is going away: the supervisor sees
                    return

    def send_remb(self) -> None:
        if self._sub_writer is None:
            return
        ssrcs = [s for s, t in self.tracks_by_ssrc.items() if t.kind == "video"]
        packet = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=self._rtcp_ssrc, media_ssrc=0,
                                fci=pack_remb_fci(self.downlink_bps, ssrcs))
        self.rembs_sent += self._sub_writer.send_rtcp(bytes(packet))

    async def _send_frame(self, layer: Any, now: float) -> None:
        # Validation only (--added-delay-ms): stamp frames as captured that much earlier while
        # the sender reports keep the true clock mapping; measured delays must grow by it.
        await super()._send_frame(layer, now - self.added_delay_s)

    # -- subscribing ------------------------------------------------------------------------------

    def _learn(self, sdp: str) -> None:
        """SSRC -> (mid, kind) and the RTX payload types, from the server's offer."""
        sections: list[list[str]] = []
        for line in sdp.replace("\r\n", "\n").split("\n"):
            if line.startswith("m="):
                sections.append([line])
            elif sections and line:
                sections[-1].append(line)
        for section in sections:
            kind = section[0][2:].split()[0]
            mid = next((line[6:].strip() for line in section if line.startswith("a=mid:")), None)
            for line in section:
                match = _RTPMAP.match(line)
                if match and match.group(2).lower() == "rtx":
                    self.rtx_pts.add(int(match.group(1)))
                if line.startswith("a=ssrc:") and mid is not None:
                    ssrc = int(line[7:].split()[0])
                    if self.ssrc_mid.get(ssrc, (None,))[0] != mid:
                        self.ssrc_mid[ssrc] = (mid, kind)
                        self.tracks_by_ssrc.pop(ssrc, None)  # a reused m-line: a new track

    async def _answer(self, message: dict[str, Any]) -> None:
        async with self._offer_lock:
            pc = self.subscriber
            await pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="offer"))
            self.tracks = message["tracks"]
            self._learn(message["sdp"])
            for transport in self.take_over_receivers(self._on_rtp, self._on_sub_rtcp):
                self._sub_writer = aiortc_hooks.DatagramWriter(transport)
                if self.fast_receive:
                    self._fast_path(transport)
            aiortc_hooks.configure_ice(pc, self.ice_addresses, None)
            await pc.setLocalDescription(await pc.createAnswer())
            await self.send_answer(pc.localDescription.sdp)

    async def send_answer(self, sdp: str) -> None:
        await self.send({"type": "subscribe_answer", "sdp": sdp})

    def _track(self, ssrc: int) -> TrackStats | None:
        known = self.ssrc_mid.get(ssrc)
        if known is None:
            return None
        info = self.tracks.get(known[0])
        if info is None:
            return None
        track = TrackStats(info["kind"], info["participant_id"])
        self.tracks_by_ssrc[ssrc] = track
        return track

    def _on_sub_rtcp(self, data: bytes) -> None:
        if len(data) < 8 or data[1] != 200:  # only compound packets starting with an SR
            return
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            return
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                track = self.tracks_by_ssrc.get(packet.ssrc)
                if track is not None:
                    ntp = packet.sender_info.ntp_timestamp
                    unix = (ntp >> 32) - NTP_UNIX_OFFSET + (ntp & 0xFFFFFFFF) / 4294967296.0
                    track.sr = (unix, packet.sender_info.rtp_timestamp)

    def _fast_path(self, dtls: Any) -> None:
        """Take SRTP packets off the ICE connection before aiortc's queue and receive task.

        The RTP header (sequence number, timestamp, SSRC) is not encrypted in SRTP: loss,
        jitter, delay and bitrate need no decryption, and only the first packet of each video
        frame is decrypted (for the content marker). Everything else (DTLS, SRTCP, packets
        before the handshake) takes aiortc's normal path. This halves the receiver's cost per
        packet: the load generator handles as many packets as the server does.
        """

        def on_srtp(data: bytes, srtp: Any) -> None:
            try:
                self._on_rtp(data, 0, srtp)
            except Exception:  # noqa: BLE001 - one bad packet must not stop receiving
                self.unknown_packets += 1

        aiortc_hooks.take_srtp_early(dtls, on_srtp)

    def _on_rtp(self, data: bytes, _arrival_ms: int, srtp: Any = None) -> None:
        if (data[1] & 0x7F) in self.rtx_pts or len(data) < 12:
            return
        ssrc = int.from_bytes(data[8:12], "big")
        track = self.tracks_by_ssrc.get(ssrc) or self._track(ssrc)
        if track is None:
            self.unknown_packets += 1
            return
        now = time.time()  # wall clock: the SRs' NTP time is wall clock too
        seq = (data[2] << 8) | data[3]
        ts = int.from_bytes(data[4:8], "big")
        highest = track.highest
        if highest is None:
            track.highest = track.base = seq - 1
            track.highest = seq
        else:
            ext = (highest & ~0xFFFF) | seq
            if ext < highest - 0x8000:
                ext += 0x10000
            elif ext > highest + 0x8000:
                ext -= 0x10000
            if ext > highest:
                track.highest = ext
        track.received += 1
        track.bytes += len(data)
        transit = now * track.clock - ts
        if track.last_transit is not None:
            d = abs(transit - track.last_transit)
            if d < track.clock * 10:  # not a timestamp jump (layer switch or m-line reuse)
                track.jitter += (d - track.jitter) / 16
        track.last_transit = transit
        if track.kind != "video" or ts == track.last_ts:
            return
        # the first packet of a new frame that arrived: its delay and content marker
        track.last_ts = ts
        if track.sr is not None:
            ticks = (ts - track.sr[1] + 0x80000000) % 0x100000000 - 0x80000000
            sent = track.sr[0] + ticks / 90000
            self.delay_ms[max(0, int((now - sent) * 1000))] += 1
        if srtp is not None:
            try:
                data = srtp.unprotect(data)
            except Exception:  # noqa: BLE001 - e.g. a replayed packet: no marker for it
                return
        start = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10:
            if len(data) < start + 4:
                return
            start += 4 + 4 * int.from_bytes(data[start + 2:start + 4], "big")
        payload = data[start:len(data) - (data[-1] if data[0] & 0x20 else 0)]
        skip = frame_start_offset(payload)
        if skip is None:
            return
        hit = self.markers.get(payload[skip:skip + MARKER_BYTES])
        if hit is None:
            track.marker_bad += 1
            return
        track.marker_ok += 1
        track.layer = hit[0]
        track.frames_by_layer[hit[0]] += 1
        if track.first_frame_at is None:
            track.first_frame_at = time.monotonic()

    # -- reporting --------------------------------------------------------------------------------

    def first_frame_ms(self, published_at: dict[str, float]) -> list[float]:
        """Per remote publisher: first frame - max(our join start, their publish), in ms."""
        out = []
        ids = {pid: name for pid, name in self.others.items()}
        for track in self.tracks_by_ssrc.values():
            if track.kind != "video" or track.first_frame_at is None:
                continue
            start = max(self.join_started or 0.0,
                        published_at.get(ids.get(track.participant, ""), 0.0))
            out.append(max(0.0, (track.first_frame_at - start) * 1000))
        return out

    def window(self, reset: bool = True) -> dict[str, Any]:
        """What this participant received since the last window, then a new window starts."""
        now = time.monotonic()
        elapsed = max(1e-6, now - self.window_start)
        loss: dict[str, list[int]] = {"audio": [0, 0], "video": [0, 0]}
        recv_bytes = 0
        layers: Counter[str] = Counter()
        frames: Counter[str] = Counter()
        jitter: list[float] = []
        markers = [0, 0]
        senders: set[str] = set()
        live = set(self.tracks.get(m, {}).get("participant_id") for m in self.tracks)
        for track in self.tracks_by_ssrc.values():
            if track.participant not in live:
                continue
            expected = track.expected()
            if track.kind in loss:
                loss[track.kind][0] += expected
                loss[track.kind][1] += min(track.received, expected) if expected else 0
            recv_bytes += track.bytes
            jitter.append(track.jitter / track.clock * 1000)
            if track.kind == "video":
                markers[0] += track.marker_ok
                markers[1] += track.marker_bad
                frames.update(track.frames_by_layer)
                if track.received:
                    senders.add(track.participant)
                    layers[track.layer or "none"] += 1
            if reset:
                track.reset()
        audio_only_s = self.audio_only_s + (now - self.audio_only_since
                                           if self.audio_only_since else 0.0)
        shown = {pid: name for pid, name in self.others.items()  # whose video should come
                 if self.forwarded is None or pid in self.forwarded}
        result = {
            "name": self.name, "room": self.room, "elapsed_s": elapsed,
            "expected": {k: v[0] for k, v in loss.items()},
            "received": {k: v[1] for k, v in loss.items()},
            "recv_bytes": recv_bytes, "jitter_ms": jitter, "layers": dict(layers),
            "frames_by_layer": dict(frames), "marker_ok": markers[0], "marker_bad": markers[1],
            "video_from": len(senders & shown.keys()), "others": len(shown),
            "video_missing_from": sorted(name for pid, name in shown.items()
                                         if pid not in senders),
            "delay_hist": dict(self.delay_ms), "audio_only": self.audio_only,
            "audio_only_s": audio_only_s, "reconnects": self.reconnects,
            "unknown_packets": self.unknown_packets,
            "sent_layers": {layer.rid: layer.active for layer in self.layers},
        }
        if reset:
            self.delay_ms = Counter()
            self.window_start = now
            self.audio_only_s = 0.0
            if self.audio_only_since:
                self.audio_only_since = now
        return result

    def broken(self) -> bool:
        """The signaling socket or a peer connection failed (the supervisor reconnects)."""
        if self._reader is not None and self._reader.done():
            return True
        return "failed" in (self.publisher.connectionState, self.subscriber.connectionState)

    async def close(self) -> None:
        if self._background is not None:
            self._background.cancel()
        await super().close()


class _Events(list[dict[str, Any]]):
    """The participant's event list; calls a handler for each message as it arrives."""

    def __init__(self, handler: Any) -> None:
        super().__init__()
        self._handler = handler

    def append(self, item: Any) -> None:
        super().append(item)
        if len(self) > 1000:
            del self[:500]
        self._handler(item)
