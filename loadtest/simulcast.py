"""Synthetic simulcast: a publisher that sends three rid-tagged VP8 layers like Chrome, and a
subscriber whose downlink estimate (REMB) the test chooses.

``SimulcastPublisher`` offers one video m-line with ``a=rid:q/h/f send`` + ``a=simulcast:send
q;h;f`` and no ``a=ssrc`` lines (what Chromium sends), then replays pre-encoded VP8 for each layer
(``loadtest.media.load_simulcast_clips``: 320x180, 640x360, 1280x720) as RTP on three SSRCs of its
own, every packet carrying the MID, RID and abs-send-time extensions, SRTP-protected and sent
through the publisher connection's DTLS transport. aiortc's own video sender never runs. A PLI
for a layer makes that layer jump to its next keyframe at the next frame. Audio is aiortc's
sender of pre-encoded Opus (with the audio-level extension, as the forwarding benchmark does),
or with ``own_audio`` our ``OpusSender``. Every publisher of a process is paced by one beat
(``loadtest/pacer.py``: the process's, or the event loop's shared one): no task per stream.

``RembSubscriber`` receives without decoding (its transport's decrypted RTP is only counted, per
remote participant and kind), never lets aiortc estimate or send REMB, and sends its own REMB of
``forced_remb_bps`` every 200 ms. The SFU rewrites SSRCs, so the layer it receives is recognised
by the VP8 keyframe's frame width (``layer_widths`` / ``packets_by_width``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCSessionDescription
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

from loadtest.audio_sender import PERIOD_S as AUDIO_PERIOD_S
from loadtest.audio_sender import OpusSender, audio_level_element
from loadtest.client import SyntheticParticipant
from loadtest.media import (
    AUDIO_LEVEL_DBOV,
    FPS,
    LayerClip,
    PreEncodedAudioTrack,
    load_clip,
    load_simulcast_clips,
)
from loadtest.pacer import Pacer, shared_pacer
from loadtest.retransmit import LayerHistory, rtx_payload_type
from loadtest.simulcast_sdp import RTPMAP, make_simulcast_offer, mid_of, section_info
from sfu import aiortc_hooks
from sfu.negotiation import (
    URI_ABS_SEND_TIME,
    URI_AUDIO_LEVEL,
    URI_MID,
    URI_REPAIRED_RID,
    URI_RID,
)
from sfu.wire.rtp_packet import RtpView, abs_send_time_now, build_extension_block, pack_header
from sfu.wire.sdp_munging import split_sections
from sfu.wire.vp8 import vp8_keyframe_size

logger = logging.getLogger(__name__)

VIDEO_CLOCK = 90000
MAX_PAYLOAD = 1100
"""VP8 payload bytes per RTP packet (Chrome's packets are ~1200 bytes all-in)."""
PACKETS_PER_BLOCK = 8
"""Packets of a frame that share one abs-send-time (they leave within microseconds)."""
MAX_LAG_S = 0.2
SENDER_REPORT_INTERVAL_S = 1.0
REMB_INTERVAL_S = 0.2

# -- VP8 -------------------------------------------------------------------------------------------


VP8_DESCRIPTOR_BYTES = 4


def vp8_descriptors(picture_id: int) -> tuple[bytes, bytes]:
    """RFC 7741 payload descriptors with a 15-bit picture id (as Chrome sends): (the first
    packet's of a frame: X, S for the start of partition 0, I; the other packets')."""
    pid = bytes((0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF))
    return b"\x90\x80" + pid, b"\x80\x80" + pid


@functools.lru_cache(maxsize=4096)
def vp8_chunks(frame: bytes, max_size: int = MAX_PAYLOAD) -> tuple[bytes, ...]:
    """A frame cut into packet payloads, descriptors left out: the same for every publisher
    and every loop of the clip, so cut once (a clip's frames live as long as the process)."""
    chunk = max_size - VP8_DESCRIPTOR_BYTES
    return tuple(frame[pos:pos + chunk] for pos in range(0, len(frame), chunk))


def vp8_payloads(frame: bytes, picture_id: int, max_size: int = MAX_PAYLOAD) -> list[bytes]:
    """RFC 7741 packetization with a 15-bit picture id (as Chrome sends), one partition."""
    first, rest = vp8_descriptors(picture_id)
    return [(rest if i else first) + chunk
            for i, chunk in enumerate(vp8_chunks(frame, max_size))]


# -- the publisher ---------------------------------------------------------------------------------


class LayerSender:
    """One simulcast encoding: its SSRC, numbering and position in the pre-encoded loop."""

    def __init__(self, clip: LayerClip, ssrc: int) -> None:
        self.clip = clip
        self.rid = clip.rid
        self.ssrc = ssrc
        self.active = True
        self.seq = random.randrange(32768)
        self.ts_base = random.getrandbits(32)
        self.picture_id = random.randrange(1 << 15)
        self.index = 0  # position in the loop
        self.keyframe_wanted = False
        self.packets = 0
        self.octets = 0
        self.frames = 0
        self.keyframes_sent = 0
        self.plis = 0
        self.pli_at: list[float] = []
        self.last_timestamp: int | None = None


class SimulcastPublisher(SyntheticParticipant):
    """Publishes audio + one simulcast video m-line with three rid-tagged layers (q, h, f)."""

    def __init__(self, base_url: str, room: str, name: str = "simulcast", *,
                 own_audio: bool = False, audio_level_dbov: int = AUDIO_LEVEL_DBOV,
                 rtx: bool = False, lose_every: int = 0, pacer: Pacer | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("decode", False)
        super().__init__(base_url, room, name, **kwargs)
        # True: audio goes out through OpusSender (loadtest/audio_sender.py), not aiortc's sender
        self.own_audio = own_audio
        self.audio_level_dbov = audio_level_dbov  # 127: silence (a muted microphone)
        self.opus: OpusSender | None = None
        self.pacer = pacer  # None: the event loop's shared one (at publish)
        self._next_video = self._next_audio = self._last_report = 0.0
        self.clips = load_simulcast_clips()
        ssrcs = random.sample(range(1, 1 << 32), len(self.clips))
        self.layers = [LayerSender(clip, ssrc)
                       for clip, ssrc in zip(self.clips, ssrcs, strict=True)]
        # True: NACKs are answered with RTX (loadtest/retransmit.py), as browsers do
        self.history = {layer.ssrc: LayerHistory(layer.rid) for layer in self.layers} \
            if rtx else {}
        self._rtx_pt = 0
        self._rrid_id = 0
        self.lose_every = lose_every  # validation: every Nth video packet is not sent at first
        self._by_ssrc = {layer.ssrc: layer for layer in self.layers}
        self.audio_track: PreEncodedAudioTrack | None = None
        self.video_mid: str | None = None
        self.offer_sdp: str | None = None
        self.answer_sdp: str | None = None
        self.rembs: list[int] = []  # uplink estimates the server sent us
        self.nacks = 0
        self.send_failures = 0
        self._writer: aiortc_hooks.DatagramWriter | None = None
        self._pt = 0
        self._ext: list[tuple[int, bytes]] = []
        self._abs_id = 0
        self._rid_id = 0
        self._t0 = 0.0
        self._rtcp_ssrc = random.getrandbits(32)

    async def publish(self, timeout: float = 10.0) -> None:
        pc = self.publisher
        audio = None
        if self.audio and self.own_audio:
            audio = pc.addTransceiver("audio", direction="sendonly")
            aiortc_hooks.capture_sender(audio.sender, lambda _parameters: None)
        elif self.audio:
            self.audio_track = PreEncodedAudioTrack(load_clip())
            audio = pc.addTransceiver(self.audio_track, direction="sendonly")
            aiortc_hooks.send_audio_level(audio.sender, AUDIO_LEVEL_DBOV)
        video = pc.addTransceiver("video", direction="sendonly")
        # aiortc's sender must never send video: we send the three layers ourselves.
        aiortc_hooks.capture_sender(video.sender, lambda _parameters: None)
        aiortc_hooks.configure_ice(pc, self.ice_addresses, None)
        await pc.setLocalDescription(await pc.createOffer())
        self.video_mid = video.mid
        offer, info = make_simulcast_offer(pc.localDescription.sdp)
        self.offer_sdp = offer
        answer = await self.request({"type": "publish", "sdp": offer}, "publish_answer", timeout)
        self.answer_sdp = answer["sdp"]
        exts, codecs = section_info(answer["sdp"], info.mid)
        if "vp8" not in codecs:
            raise RuntimeError(f"the server did not accept VP8: {codecs}")
        self._pt = codecs["vp8"]
        mid_id = exts.get(URI_MID)
        self._abs_id = exts.get(URI_ABS_SEND_TIME, 0)
        self._rid_id = exts.get(URI_RID, 0)
        if not mid_id or not self._rid_id:
            raise RuntimeError(f"the answer lacks the MID or RID extension: {exts}")
        self._ext = [(mid_id, info.mid.encode())]
        self._rtx_pt = rtx_payload_type(answer["sdp"], info.mid, self._pt) or 0
        self._rrid_id = exts.get(URI_REPAIRED_RID, 0)
        if not (self._rtx_pt and self._rrid_id):
            self.history = {}  # no RTX agreed: NACKs go unanswered
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        transports = {id(t.sender.transport): t.sender.transport for t in pc.getTransceivers()}
        for transport in transports.values():
            aiortc_hooks.hook_transport(transport, lambda _data, _arrival: None, self._on_rtcp)
        self._writer = aiortc_hooks.DatagramWriter(video.sender.transport)
        if audio is not None and self.own_audio and audio.mid is not None:
            self._make_opus(audio, answer["sdp"])
        self._start_sending()

    def _start_sending(self) -> None:
        """Join the beat (``loadtest/pacer.py``), at a random phase of our own."""
        if self.pacer is None:
            self.pacer = shared_pacer()
        now = asyncio.get_running_loop().time()
        self._t0 = self._last_report = now
        self._next_video = now + random.random() / FPS
        self._next_audio = now + random.random() * AUDIO_PERIOD_S
        self.pacer.add(self, self._pace)

    def _pace(self, now: float) -> None:
        """Send what is due (the pacer calls this every few milliseconds with the loop time)."""
        video_due = now >= self._next_video
        audio_due = self.opus is not None and now >= self._next_audio
        if not (video_due or audio_due):
            return
        writer = self._writer
        if writer is None or not writer.check():
            return  # not connected yet
        assert self.pacer is not None
        batch = self.pacer.batch
        if video_due:
            # late by more than MAX_LAG_S (a starved loop): carry on from now, no burst
            late = now - self._next_video > MAX_LAG_S
            self._next_video = (now if late else self._next_video) + 1 / FPS
            for layer in self.layers:
                if layer.active:
                    self._queue_frame(layer, now, batch)
            if now - self._last_report >= SENDER_REPORT_INTERVAL_S:
                self._last_report = now
                self._send_sender_reports(now)
        opus = self.opus
        if audio_due and opus is not None:
            late = now - self._next_audio > MAX_LAG_S
            self._next_audio = (now if late else self._next_audio) + AUDIO_PERIOD_S
            opus.send_one(now, batch)

    def _make_opus(self, audio: Any, answer_sdp: str) -> None:
        exts, codecs = section_info(answer_sdp, audio.mid)
        if "opus" not in codecs:
            raise RuntimeError(f"the server did not accept Opus: {codecs}")
        elements = []
        if exts.get(URI_MID):
            elements.append((exts[URI_MID], audio.mid.encode()))
        if exts.get(URI_AUDIO_LEVEL):
            elements.append(audio_level_element(exts[URI_AUDIO_LEVEL], self.audio_level_dbov))
        assert self._writer is not None
        ssrc, _rtx = aiortc_hooks.sender_ssrcs(audio.sender)
        self.opus = OpusSender(load_clip().audio, ssrc, codecs["opus"], elements, self._writer)

    # -- RTCP from the server ----------------------------------------------------------------------

    def _on_rtcp(self, data: bytes) -> None:
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            return
        now = time.monotonic()
        for packet in packets:
            if isinstance(packet, RtcpPsfbPacket):
                if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                    layer = self._by_ssrc.get(packet.media_ssrc)
                    if layer is not None:
                        layer.plis += 1
                        layer.pli_at.append(now)
                        layer.keyframe_wanted = True
                elif packet.fmt == RTCP_PSFB_APP:
                    with contextlib.suppress(Exception):
                        self.rembs.append(unpack_remb_fci(packet.fci)[0])
            elif isinstance(packet, RtcpRtpfbPacket):
                self.nacks += 1
                history = self.history.get(packet.media_ssrc)
                if history is not None and packet.fmt == RTCP_RTPFB_NACK and self._writer:
                    elements = [*self._ext, (self._rrid_id, history.rid.encode())]
                    for rtx in history.rtx_packets(packet.lost, self._rtx_pt, elements, now):
                        self._writer.send_rtp(rtx)

    # -- sending -----------------------------------------------------------------------------------

    def _timestamp(self, layer: LayerSender, now: float) -> int:
        return (layer.ts_base + int((now - self._t0) * VIDEO_CLOCK)) & 0xFFFFFFFF

    def _queue_frame(self, layer: LayerSender, now: float, batch: list[Any]) -> None:
        """The next frame of ``layer``: its packets go out with the beat's batch."""
        writer = self._writer
        assert writer is not None
        for head, payload in self._frame_packets(layer, now):
            if writer.queue_rtp(batch, head, payload, writer):
                layer.packets += 1
                layer.octets += len(payload) + VP8_DESCRIPTOR_BYTES
            else:
                self.send_failures += 1

    def _frame_packets(self, layer: LayerSender, now: float) -> list[tuple[bytes, bytes]]:
        """The RTP packets of ``layer``'s next frame captured at ``now``, as (header with
        extensions and the VP8 descriptor, the rest of the payload: one of the frame's cached
        chunks, never copied here) (kept for retransmission; one left out now and then with
        ``lose_every``)."""
        clip = layer.clip
        if layer.keyframe_wanted:
            layer.keyframe_wanted = False
            layer.index = clip.next_keyframe(layer.index)
        frame = clip.frames[layer.index]
        if clip.keyframes[layer.index]:
            layer.keyframes_sent += 1
        layer.index = (layer.index + 1) % len(clip.frames)
        timestamp = self._timestamp(layer, now)
        layer.last_timestamp = timestamp
        chunks = vp8_chunks(frame)
        descriptors = vp8_descriptors(layer.picture_id)
        layer.picture_id = (layer.picture_id + 1) & 0x7FFF
        layer.frames += 1
        rid = (self._rid_id, layer.rid.encode())
        last = len(chunks) - 1
        out = []
        block = b""
        history = self.history.get(layer.ssrc) if self.history else None
        for i, chunk in enumerate(chunks):
            if i % PACKETS_PER_BLOCK == 0:
                # one block per burst: the packets of a burst leave within microseconds, so
                # they share a send time (abs-send-time is in 1/262144 s anyway)
                elements = [*self._ext, rid]
                if self._abs_id:
                    elements.append((self._abs_id, abs_send_time_now(time.monotonic())))
                block = build_extension_block(elements)
            descriptor = descriptors[1 if i else 0]
            head = pack_header(0x90, (0x80 if i == last else 0) | self._pt, layer.seq,
                               timestamp, layer.ssrc) + block + descriptor
            if history is not None:
                history.put(layer.seq, timestamp, 0x80 if i == last else 0, chunk, descriptor)
            layer.seq = (layer.seq + 1) & 0xFFFF
            if self.lose_every and layer.seq % self.lose_every == 0:
                continue  # "lost" on the way: only a retransmission can bring it
            out.append((head, chunk))
        return out

    def _send_sender_reports(self, now: float) -> None:
        from aiortc.clock import current_ntp_time

        ntp = current_ntp_time()
        chunk = b""
        for layer in self.layers:
            if layer.packets:
                chunk += bytes(RtcpSrPacket(ssrc=layer.ssrc, sender_info=RtcpSenderInfo(
                    ntp_timestamp=ntp, rtp_timestamp=self._timestamp(layer, now),
                    packet_count=layer.packets & 0xFFFFFFFF,
                    octet_count=layer.octets & 0xFFFFFFFF,
                )))
        if self.opus is not None:
            chunk += self.opus.sender_report(ntp, now)
        if chunk and self._writer is not None:
            self._writer.send_rtcp(chunk)

    def describe(self) -> dict[str, Any]:
        return {layer.rid: {"ssrc": layer.ssrc, "frames": layer.frames, "packets": layer.packets,
                            "keyframes": layer.keyframes_sent, "plis": layer.plis}
                for layer in self.layers}

    async def close(self) -> None:
        if self.pacer is not None:
            self.pacer.remove(self)
        if self.audio_track is not None:
            self.audio_track.stop()
        await super().close()


# -- the subscriber --------------------------------------------------------------------------------


class TimedEvents(list[dict[str, Any]]):
    """The participant's event list, with the monotonic time each message arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: Any) -> None:
        self.times.append(time.monotonic())
        super().append(item)

    def timed(self, message_type: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in zip(self.times, self, strict=True)
                if m.get("type") == message_type]


@dataclass
class SsrcState:
    """What one incoming SSRC carries; for video, the layer (keyframe width) now arriving."""

    mid: str
    kind: str
    width: int | None = None
    height: int | None = None
    packets: int = 0


@dataclass
class KeyframeSeen:
    at: float  # time.monotonic()
    participant_id: str
    width: int
    height: int


class RembSubscriber(SyntheticParticipant):
    """Subscribes, counts RTP without decoding, and reports the REMB the test chooses.

    ``forced_remb_bps`` None sends no REMB at all. ``received[participant][kind]`` counts RTP
    packets; ``packets_by_width[participant][width]`` counts video packets per layer (the width of
    the latest keyframe on that stream), ``keyframes`` lists every keyframe with its time.
    """

    def __init__(self, base_url: str, room: str, name: str = "remb",
                 forced_remb_bps: int | None = None, **kwargs: Any) -> None:
        super().__init__(base_url, room, name, audio=False, video=False, decode=False, **kwargs)
        self.forced_remb_bps = forced_remb_bps
        self.events: TimedEvents = TimedEvents()
        self.ssrcs: dict[int, SsrcState] = {}
        self.kinds_by_pt: dict[int, str] = {}
        self.rtx_pts: set[int] = set()
        self.packets_by_width: dict[str, Counter[int]] = defaultdict(Counter)
        self.keyframes: list[KeyframeSeen] = []
        self.last_packet_at: dict[tuple[str, str], float] = {}
        self.rembs_sent = 0
        self.unknown_packets = 0
        self._writer: aiortc_hooks.DatagramWriter | None = None
        self._remb_task: asyncio.Task[None] | None = None
        self._rtcp_ssrc = uuid.uuid4().int & 0xFFFFFFFF

    # -- offers ------------------------------------------------------------------------------------

    def _learn(self, sdp: str) -> None:
        _session, sections = split_sections(sdp)
        for section in sections:
            kind = section[0][2:].split()[0]
            mid = mid_of(section)
            for line in section:
                match = RTPMAP.match(line)
                if match:
                    pt = int(match.group(1))
                    if match.group(2).lower() == "rtx":
                        self.rtx_pts.add(pt)
                    else:
                        self.kinds_by_pt[pt] = kind
                if line.startswith("a=ssrc:") and mid is not None:
                    ssrc = int(line[7:].split()[0])
                    state = self.ssrcs.get(ssrc)
                    if state is None or state.mid != mid:
                        self.ssrcs[ssrc] = SsrcState(mid, kind)

    async def _answer(self, message: dict[str, Any]) -> None:
        async with self._offer_lock:
            pc = self.subscriber
            await pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="offer"))
            self.tracks = message["tracks"]
            self._learn(message["sdp"])
            for transport in self.take_over_receivers(self._on_rtp):
                self._writer = aiortc_hooks.DatagramWriter(transport)
            if self._remb_task is None:
                self._remb_task = asyncio.ensure_future(self._remb_forever())
            aiortc_hooks.configure_ice(pc, self.ice_addresses, None)
            await pc.setLocalDescription(await pc.createAnswer())
            await self.send({"type": "subscribe_answer", "sdp": pc.localDescription.sdp})

    # -- RTP ---------------------------------------------------------------------------------------

    def _on_rtp(self, data: bytes, _arrival_ms: int) -> None:
        pt = data[1] & 0x7F
        if pt in self.rtx_pts:
            return  # retransmissions and probes: not media
        ssrc = int.from_bytes(data[8:12], "big")
        state = self.ssrcs.get(ssrc)
        info = self.tracks.get(state.mid) if state is not None else None
        if state is None or info is None:
            self.unknown_packets += 1
            return
        participant, kind = info["participant_id"], info["kind"]
        state.packets += 1
        self.received[participant][kind] += 1
        now = time.monotonic()
        self.last_packet_at[(participant, kind)] = now
        if kind != "video":
            return
        try:
            payload = RtpView.parse(data).payload
        except ValueError:
            return
        size = vp8_keyframe_size(payload)
        if size is not None:
            state.width, state.height = size
            self.keyframes.append(KeyframeSeen(now, participant, *size))
        if state.width is not None:
            self.packets_by_width[participant][state.width] += 1

    # -- REMB --------------------------------------------------------------------------------------

    def video_ssrcs(self) -> list[int]:
        return [ssrc for ssrc, state in self.ssrcs.items() if state.kind == "video"]

    def send_remb(self, bitrate_bps: int) -> bool:
        if self._writer is None:
            return False
        packet = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=self._rtcp_ssrc, media_ssrc=0,
                                fci=pack_remb_fci(bitrate_bps, self.video_ssrcs()))
        sent = self._writer.send_rtcp(bytes(packet))
        self.rembs_sent += sent
        return sent

    async def _remb_forever(self) -> None:
        while True:
            await asyncio.sleep(REMB_INTERVAL_S)
            if self.forced_remb_bps is not None:
                self.send_remb(self.forced_remb_bps)

    # -- what the test asks ------------------------------------------------------------------------

    def current_width(self, participant_id: str) -> int | None:
        """The layer (frame width) now arriving from ``participant_id``, if any video came."""
        widths = [s.width for s in self.ssrcs.values()
                  if s.kind == "video" and s.width is not None
                  and self.tracks.get(s.mid, {}).get("participant_id") == participant_id]
        return widths[-1] if widths else None

    def seconds_since(self, participant_id: str, kind: str) -> float:
        last = self.last_packet_at.get((participant_id, kind))
        return float("inf") if last is None else time.monotonic() - last

    def bandwidth_events(self) -> list[tuple[float, dict[str, Any]]]:
        return self.events.timed("bandwidth")

    async def close(self) -> None:
        if self._remb_task is not None:
            self._remb_task.cancel()
        await super().close()


@dataclass
class WidthWindow:
    """Video packets per width received between two moments (for "only this layer" checks)."""

    start: dict[int, int] = field(default_factory=dict)

    @classmethod
    def begin(cls, subscriber: RembSubscriber, participant_id: str) -> WidthWindow:
        return cls(dict(subscriber.packets_by_width[participant_id]))

    def since(self, subscriber: RembSubscriber, participant_id: str) -> dict[int, int]:
        now = subscriber.packets_by_width[participant_id]
        return {w: n - self.start.get(w, 0) for w, n in now.items() if n - self.start.get(w, 0)}
