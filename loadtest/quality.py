"""What one synthetic participant of ``diemcau loadtest`` receives, measured without decoding.

``LoadParticipant`` publishes like a browser (``SimulcastPublisher``: pre-encoded VP8 q/h/f with
MID/RID extensions, and pre-encoded Opus through ``OpusSender`` with the audio level of a
speaker or of a muted microphone; it obeys ``publish_layers``) and subscribes like one (answers
every ``subscribe_offer``, shows one gallery page of tiles and says so, sends REMB for a fixed
downlink). It costs far less than a browser, or than an aiortc endpoint: no encoder, no decoder,
no aiortc sender or receiver task, no task or timer of its own: the process's beat
(``loadtest/pacer.py``) reads its subscriber socket in batches (``loadtest/hub.py``), hands its
SRTP, still encrypted, to the ``CheapReceiver`` (``loadtest/receiver.py``), sends its media and
runs its receiver's timers: what a browser sends back (NACK, PLI, receiver reports, REMB).

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
not available in this kernel. Audio is counted for loss and jitter only.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from typing import Any

from aiortc import RTCSessionDescription
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

from loadtest.media import load_simulcast_clips
from loadtest.pacer import shared_pacer
from loadtest.receiver import MARKER_BYTES, PLAIN, CheapReceiver, Marker, TrackStats
from loadtest.simulcast import SimulcastPublisher
from sfu import aiortc_hooks
from sfu.wire.sdp_munging import split_sections

REMB_INTERVAL_S = 0.5
FEEDBACK_INTERVAL_S = 0.1
TILES_INTERVAL_S = 0.5
SPEAKER_MEMORY = 50  # speakers remembered for the page order (web/gallery.js keeps 50)
UPLINK_INTERVAL_S = 1.0
VIEWPORT = (1280, 720)


def content_index() -> dict[bytes, Marker]:
    """First bytes of every pre-encoded frame -> (rid, index in the loop, keyframe)."""
    index: dict[bytes, Marker] = {}
    for clip in load_simulcast_clips():
        for i, frame in enumerate(clip.frames):
            index.setdefault(frame[:MARKER_BYTES], (clip.rid, i, clip.keyframes[i]))
    return index


def grid_tiles(count: int, viewport: tuple[int, int] = VIEWPORT) -> tuple[int, int]:
    """Tile size of a gallery of ``count`` 16:9 tiles filling ``viewport`` (as the web app)."""
    if count <= 0:
        return viewport
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    width = min(viewport[0] // cols, int(viewport[1] // rows * 16 / 9))
    return width, width * 9 // 16


class LoadParticipant(SimulcastPublisher):
    """Publishes q/h/f + Opus, subscribes to everyone, measures what it receives."""

    def __init__(self, base_url: str, room: str, name: str, *, downlink_bps: int = 20_000_000,
                 send_tiles: bool = True, marker_index: dict[bytes, Marker] | None = None,
                 added_delay_ms: float = 0.0, uplink_bps: int | None = 20_000_000,
                 gallery_page: int | None = None, nack: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("own_audio", True)
        kwargs.setdefault("rtx", True)
        super().__init__(base_url, room, name, **kwargs)
        self.added_delay_s = added_delay_ms / 1000
        self._next_feedback = 0.0
        self._last_tiles = self._last_uplink = self._last_remb = 0.0
        self.uplink_bps = uplink_bps
        self.downlink_bps = downlink_bps
        self.send_tiles = send_tiles
        # a browser's gallery shows one page of tiles; the others are hidden (None: all shown)
        self.gallery_page = gallery_page
        self.speakers: list[str] = []  # the server's latest ``speakers`` event
        self._joined_after = 0  # how many were in the room when we joined
        markers = marker_index if marker_index is not None else content_index()
        self.events = _Events(self._on_event)
        self._retransmitted = 0  # publisher retransmissions before this window
        self.rx = CheapReceiver(markers, self._send_sub_rtcp, self._rtcp_ssrc, nack=nack)
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
        self._joined_after = len(self.others)
        await self.publish(timeout)
        self.published_at = time.monotonic()
        return joined

    def _on_event(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind in ("participant_joined", "participant_left"):
            self._tiles_dirty = True
        elif kind == "forwarded":
            ids = message.get("participant_ids")
            self.forwarded = {i for i in ids if isinstance(i, str)} if isinstance(ids, list) \
                else None
        elif kind == "speakers":
            # as web/gallery.js: the latest speakers first, then the earlier ones (recent
            # speakers stay ahead of the page, as last-N forwards them ahead of it)
            current = [str(pid) for pid in message.get("participant_ids") or []]
            speakers = (current + [pid for pid in self.speakers
                                   if pid not in current])[:SPEAKER_MEMORY]
            if speakers != self.speakers:
                self.speakers = speakers
                self._tiles_dirty = True
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

    async def _follow_slot(self, message: dict[str, Any]) -> None:
        """A pooled video m-line switched (``slot``): after any earlier offer (the lock)."""
        async with self._offer_lock:
            mid, owner = message.get("mid"), message.get("participant_id")
            if isinstance(mid, str) and isinstance(owner, str):
                self.rx.follow_slot(mid, owner)
                self.tracks = self.rx.tracks

    @property
    def tracks_by_ssrc(self) -> dict[int, TrackStats]:
        return self.rx.tracks_by_ssrc

    def shown(self) -> list[str]:
        """The others whose tiles are on our gallery page: the speakers first (as the web
        client's speaker-first layout), then the others in join order starting after us, so
        every publisher is on somebody's page (the same first page for all would leave most
        publishers unwatched, their video paused, and the load light)."""
        others = list(self.others)
        if self.gallery_page is None:
            return others
        k = min(self._joined_after, len(others))
        page = [pid for pid in self.speakers if pid in self.others][:self.gallery_page]
        for pid in others[k:] + others[:k]:
            if len(page) >= self.gallery_page:
                break
            if pid not in page:
                page.append(pid)
        return page

    def _feedback(self, now: float) -> None:
        """What a browser sends back on its own (on the beat, every ``FEEDBACK_INTERVAL_S``):
        NACK retries and receiver reports, REMB, the uplink estimate and the tiles shown."""
        self.rx.tick(now)
        if now - self._last_remb < REMB_INTERVAL_S:
            return
        self._last_remb = now
        self.send_remb()
        if self.uplink_bps and now - self._last_uplink >= UPLINK_INTERVAL_S:
            # as browsers report availableOutgoingBitrate: the uplink we stand for
            self._last_uplink = now
            self._spawn(self._send_quietly({"type": "uplink", "available_bps": self.uplink_bps}))
        if self.send_tiles and self._tiles_dirty and now - self._last_tiles >= TILES_INTERVAL_S:
            self._tiles_dirty = False
            self._last_tiles = now
            page = self.shown()
            shown = set(page)
            width, height = grid_tiles(len(shown))
            tiles = [{"participant_id": pid, "width": width, "height": height,
                      "visible": pid in shown} for pid in self.others]
            self._spawn(self._send_quietly({"type": "tiles", "tiles": tiles}))
            if self.gallery_page is not None:
                # as the web client pages its gallery: last-N forwards these after the speakers
                self._spawn(self._send_quietly({"type": "shown", "participant_ids": page[:64]}))

    async def _send_quietly(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # the socket is going away: the supervisor sees
            await self.send(message)

    def send_remb(self) -> None:
        if self._sub_writer is None:
            return
        ssrcs = [s for s, t in self.tracks_by_ssrc.items() if t.kind == "video"]
        packet = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=self._rtcp_ssrc, media_ssrc=0,
                                fci=pack_remb_fci(self.downlink_bps, ssrcs))
        self.rembs_sent += self._sub_writer.send_rtcp(bytes(packet))

    def _send_sub_rtcp(self, packet: bytes) -> bool:
        return self._sub_writer is not None and self._sub_writer.send_rtcp(packet)

    def _frame_packets(self, layer: Any, now: float) -> list[tuple[bytes, bytes]]:
        # Validation only (--added-delay-ms): stamp frames as captured that much earlier while
        # the sender reports keep the true clock mapping; measured delays must grow by it.
        return super()._frame_packets(layer, now - self.added_delay_s)

    def _pace(self, now: float) -> None:
        """The beat: send what is due, then the receiver's timers when due."""
        super()._pace(now)
        if now >= self._next_feedback:
            self._next_feedback = now + FEEDBACK_INTERVAL_S
            self._feedback(time.monotonic())

    # -- subscribing ------------------------------------------------------------------------------

    async def _answer(self, message: dict[str, Any]) -> None:
        try:
            await self._answer_offer(message)
        except Exception:
            if self.subscriber.signalingState == "closed":
                return  # an offer that came as we left: nothing to answer
            raise

    async def _answer_offer(self, message: dict[str, Any]) -> None:
        async with self._offer_lock:
            pc = self.subscriber
            await pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="offer"))
            self.tracks = message["tracks"]
            self.rx.learn(split_sections(message["sdp"])[1], self.tracks)
            if self.pacer is None:
                self.pacer = shared_pacer()
            new = []
            for transceiver in pc.getTransceivers():
                receiver = transceiver.receiver
                if id(receiver) not in self._taken_receivers:
                    # no decoder thread, no RTCP task: the CheapReceiver does what they did
                    self._taken_receivers.add(id(receiver))
                    aiortc_hooks.idle_receiver(receiver)
                transport = receiver.transport
                if id(transport) not in self._taken_transports:
                    self._taken_transports.add(id(transport))
                    # SRTCP (and SRTP before the ICE pair is nominated) still come this way
                    aiortc_hooks.hook_transport(
                        transport, lambda data, _ms: self.rx.on_srtp(data, PLAIN),
                        self.rx.on_rtcp)
                    self._sub_writer = aiortc_hooks.DatagramWriter(transport)
                    new.append(transport)
            # sockets the beat reads in batches (loadtest/hub.py), not the event loop
            aiortc_hooks.gather_on_polled_sockets(pc, self.ice_addresses,
                                                  self.pacer.open_polled)
            await pc.setLocalDescription(await pc.createAnswer())
            for transport in new:  # gathered now: its sockets exist
                state = aiortc_hooks.srtp_receive_state(transport)
                for sock in aiortc_hooks.ice_sockets(transport):
                    self.pacer.hub.take_srtp(sock, self.rx.on_srtp, state)
            await self.send_answer(pc.localDescription.sdp)

    async def send_answer(self, sdp: str) -> None:
        await self.send({"type": "subscribe_answer", "sdp": sdp})

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
        repair = Counter[str]()
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
                repair.update(nacked=track.nacked, repaired=track.repaired,
                              unrepaired=track.unrepaired, plis=track.plis,
                              layer_switches=track.layer_switches,
                              switches_off_keyframe=track.switches_off_keyframe)
                if track.received:
                    senders.add(track.participant)
                    layers[track.layer or "none"] += 1
            if reset:
                track.reset()
        shown = self.shown()
        retransmitted = sum(h.retransmitted for h in self.history.values())
        repair["publisher_retransmitted"] = retransmitted - self._retransmitted
        audio_only_s = self.audio_only_s + (now - self.audio_only_since
                                           if self.audio_only_since else 0.0)
        # whose video should come: the page's, less what the server says it does not forward
        wanted = {pid: self.others[pid] for pid in shown
                  if pid in self.others and (self.forwarded is None or pid in self.forwarded)}
        # Tiles on the page whose video the server does not forward show a placeholder: not
        # "missing" (the server said so), but not seen either; counted apart so the report
        # says how many videos a person sees, not only that the forwarded ones arrive.
        placeholders = sorted(self.others[pid] for pid in shown
                              if pid in self.others and self.forwarded is not None
                              and pid not in self.forwarded)
        result = {
            "name": self.name, "room": self.room, "elapsed_s": elapsed,
            "expected": {k: v[0] for k, v in loss.items()},
            "received": {k: v[1] for k, v in loss.items()},
            "recv_bytes": recv_bytes, "jitter_ms": jitter, "layers": dict(layers),
            "frames_by_layer": dict(frames), "marker_ok": markers[0], "marker_bad": markers[1],
            "video_from": len(senders & wanted.keys()), "others": len(wanted),
            # the videos a person would see: one page of the gallery, as far as forwarded
            "video_expected": len(wanted),
            "video_missing_from": sorted(name for pid, name in wanted.items()
                                         if pid not in senders),
            "tiles_without_video": placeholders,
            # videos received at all (on the page or not) and the page's size
            "videos_received": len(senders), "page_tiles": len(shown),
            "delay_hist": dict(self.rx.delay_ms), "audio_only": self.audio_only,
            "audio_only_s": audio_only_s, "reconnects": self.reconnects,
            "unknown_packets": self.rx.unknown_packets, "repair": dict(repair),
            "sent_layers": {layer.rid: layer.active for layer in self.layers},
        }
        if reset:
            self._retransmitted = retransmitted
            self.rx.delay_ms = Counter()
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
