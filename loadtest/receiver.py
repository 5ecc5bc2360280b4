"""The load generator's cheap receiver: measures what arrives and answers like a browser.

A browser's receiver depacketizes, jitter-buffers and decodes every packet; the load generator
needs none of that, only what the SFU sees of a receiver and what a person would see:

- per packet (``on_srtp``, called by the process's receive hub, ``loadtest/hub.py``, with the
  kernel's receive time): the RTP header, which SRTP leaves in the clear:
  extended sequence number (loss, gaps), RFC 3550 interarrival jitter, bytes. No decryption,
  no aiortc receive task, no parse into objects;
- per video frame (its first packet, one in ~5): decrypt it, read the content marker (the
  frame's first bytes name its simulcast layer, its place in the clip and whether it is a
  keyframe), and the end-to-end delay from the sender report mapping (see ``loadtest/quality``);
- what a browser sends back: a generic NACK at once for every gap in a video stream (retried
  every ``NACK_RETRY_S`` up to ``NACK_TRIES`` times; the RTX answer is decrypted to learn which
  packet it repairs), a PLI when the picture would be broken (a loss that no retransmission
  repaired, or a layer change or a new stream that does not start with a keyframe; at most one
  per ``PLI_MIN_INTERVAL_S`` per stream), and receiver reports (fraction lost, cumulative loss,
  highest sequence number, jitter, LSR/DLSR) every second. The bandwidth estimate is REMB (the
  participant's), which the server accepts from peers without transport-cc.

The sequence-number arithmetic is ``sfu.wire.seqmath``'s.
"""

from __future__ import annotations

import struct
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiortc.rtp import (
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
)

from sfu.wire.seqmath import seq_diff
from sfu.wire.vp8 import frame_start_offset

_SEQ_TS_SSRC = struct.Struct("!HII")  # an RTP header's sequence number, timestamp and SSRC
MARKER_BYTES = 16
NTP_UNIX_OFFSET = 2208988800
CLOCK = {"video": 90000, "audio": 48000}
NACK_RETRY_S = 0.05
NACK_TRIES = 3
GIVE_UP_S = 1.0
"""A missing packet not repaired by then is lost for good: the picture breaks (PLI)."""
MAX_MISSING = 512
"""Missing packets remembered per stream; a bigger hole is a restart, not loss to repair."""
PLI_MIN_INTERVAL_S = 1.0
RR_INTERVAL_S = 1.0
REPORTS_PER_RR = 31  # RFC 3550: the report count is 5 bits

Marker = tuple[str, int, bool]
"""What a content marker names: (rid, index in the clip's loop, keyframe)."""


class TrackStats:
    """One incoming SSRC."""

    __slots__ = ("kind", "participant", "clock", "highest", "base", "received", "bytes",
                 "jitter", "last_transit", "last_ts", "sr", "sr_mid", "sr_at", "layer",
                 "frames_by_layer", "marker_ok", "marker_bad", "first_frame_at", "started",
                 "first", "total_received", "rr_expected", "rr_received", "missing",
                 "nacked", "repaired", "unrepaired", "plis", "last_pli", "layer_switches",
                 "switches_off_keyframe", "video")

    def __init__(self, kind: str, participant: str) -> None:
        self.kind = kind
        self.video = kind == "video"
        self.participant = participant
        self.clock = CLOCK.get(kind, 90000)
        self.highest: int | None = None  # extended sequence number
        self.base: int | None = None  # highest at the window start
        self.first: int | None = None  # extended sequence number of the first packet
        self.received = 0  # in this window (originals, in order or late)
        self.total_received = 0
        self.bytes = 0
        self.jitter = 0.0  # in clock units
        self.last_transit: float | None = None
        self.last_ts: int | None = None
        self.sr: tuple[float, int] | None = None  # (unix seconds, rtp timestamp)
        self.sr_mid = 0  # the middle 32 bits of the last SR's NTP time (RR's LSR)
        self.sr_at = 0.0  # when it arrived (monotonic)
        self.layer: str | None = None
        self.frames_by_layer: Counter[str] = Counter()
        self.marker_ok = 0
        self.marker_bad = 0
        self.first_frame_at: float | None = None
        self.started = time.monotonic()
        self.rr_expected = 0
        self.rr_received = 0
        self.missing: dict[int, list[float]] = {}  # ext seq -> [first NACK at, NACKs sent]
        self.nacked = 0  # packets asked for again (this window)
        self.repaired = 0  # ... that came back as RTX (or late) in time (this window)
        self.unrepaired = 0  # ... that did not (this window)
        self.plis = 0  # this window
        self.last_pli = -1e9
        self.layer_switches = 0  # this window
        self.switches_off_keyframe = 0  # layer changes on a delta frame: an SFU bug (this window)

    def reset(self) -> None:
        self.base = self.highest
        self.received = 0
        self.bytes = 0
        self.frames_by_layer = Counter()
        self.marker_ok = self.marker_bad = 0
        self.nacked = self.repaired = self.unrepaired = self.plis = 0
        self.layer_switches = self.switches_off_keyframe = 0

    def expected(self) -> int:
        if self.highest is None:
            return 0
        if self.base is None:
            return self.received  # first packets of the window: no loss known yet
        return max(0, self.highest - self.base)


class CheapReceiver:
    """Every incoming stream of one participant's subscriber connection."""

    def __init__(self, markers: dict[bytes, Marker], send_rtcp: Callable[[bytes], bool],
                 rtcp_ssrc: int, nack: bool = True) -> None:
        self.markers = markers
        self.send_rtcp = send_rtcp
        self.rtcp_ssrc = rtcp_ssrc
        self.nack = nack
        self.tracks: dict[str, dict[str, str]] = {}  # mid -> what the server's offer says
        self.tracks_by_ssrc: dict[int, TrackStats] = {}
        self.ssrc_mid: dict[int, tuple[str, str]] = {}  # ssrc -> (mid, kind)
        self.rtx_of: dict[int, int] = {}  # RTX ssrc -> media ssrc (ssrc-group FID)
        self.rtx_pts: set[int] = set()
        self.delay_ms: Counter[int] = Counter()  # histogram, 1 ms bins
        self.unknown_packets = 0
        self.nacks_sent = 0
        self.plis_sent = 0
        self.rrs_sent = 0
        self._last_rr = 0.0

    # -- what the server's offer says ----------------------------------------------------------

    def learn(self, sections: list[list[str]], tracks: dict[str, dict[str, str]]) -> None:
        """SSRC -> (mid, kind), RTX SSRCs and payload types, from the offer's m-sections."""
        self.tracks = tracks
        for section in sections:
            kind = section[0][2:].split()[0]
            mid = next((line[6:].strip() for line in section if line.startswith("a=mid:")),
                       None)
            for line in section:
                if line.startswith("a=rtpmap:"):
                    fields = line[9:].split()
                    if len(fields) == 2 and fields[1].lower().startswith("rtx/"):
                        self.rtx_pts.add(int(fields[0]))
                elif line.startswith("a=ssrc-group:FID "):
                    ssrcs = [int(s) for s in line[17:].split()]
                    if len(ssrcs) == 2:
                        self.rtx_of[ssrcs[1]] = ssrcs[0]
                elif line.startswith("a=ssrc:") and mid is not None:
                    ssrc = int(line[7:].split()[0])
                    if ssrc in self.rtx_of:
                        continue
                    if self.ssrc_mid.get(ssrc, (None,))[0] != mid:
                        self.ssrc_mid[ssrc] = (mid, kind)
                        self.tracks_by_ssrc.pop(ssrc, None)  # a reused m-line: a new track
        for ssrc, track in list(self.tracks_by_ssrc.items()):
            # A pooled video m-line the offer names for another participant (switched by the
            # server, last-N video slots): counted for the one named from the next packet.
            known = self.ssrc_mid.get(ssrc)
            info = tracks.get(known[0]) if known is not None else None
            if info is not None and info.get("participant_id") != track.participant:
                del self.tracks_by_ssrc[ssrc]

    def follow_slot(self, mid: str, participant_id: str) -> None:
        """A pooled video m-line shows another participant from now on (``slot``): its
        stream continues (same SSRC), counted as that participant's from the next packet."""
        info = dict(self.tracks.get(mid) or {"kind": "video"})
        info["participant_id"] = info["stream_id"] = participant_id
        self.tracks = {**self.tracks, mid: info}
        for ssrc, (known_mid, _kind) in self.ssrc_mid.items():
            if known_mid == mid:
                self.tracks_by_ssrc.pop(ssrc, None)

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

    # -- per packet ----------------------------------------------------------------------------

    def on_srtp(self, data: bytes, srtp: Any, arrival: float = 0.0) -> None:
        """One SRTP packet as received (still encrypted), with the kernel's receive time in
        wall-clock seconds (0: now). Must not raise. (The hot loop of the load generator: one
        call per packet, one unpack for the header fields.)"""
        try:
            if (data[1] & 0x7F) in self.rtx_pts:
                self._on_rtx(data, srtp)
                return
            seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
            track = self.tracks_by_ssrc.get(ssrc) or self._track(ssrc)
            if track is None:
                self.unknown_packets += 1
                return
            self._packet(track, ssrc, seq, ts, data, srtp, arrival or time.time())
        except Exception:  # noqa: BLE001 - one bad packet must not stop receiving
            self.unknown_packets += 1

    def _packet(self, track: TrackStats, ssrc: int, seq: int, ts: int, data: bytes, srtp: Any,
                now: float) -> None:
        highest = track.highest
        in_order = True
        if highest is None:
            track.highest = track.first = seq
            track.base = seq - 1
        else:
            delta = seq_diff(seq, highest & 0xFFFF)
            if delta > 0:
                if delta > 1 and track.video and self.nack:
                    self._gap(ssrc, track, highest + 1, highest + delta - 1)
                track.highest = highest + delta
            else:
                in_order = False
                if track.missing:
                    track.missing.pop(highest + delta, None)  # came late: reordered, not lost
        track.received += 1
        track.total_received += 1
        track.bytes += len(data)
        transit = now * track.clock - ts
        if track.last_transit is not None:
            d = abs(transit - track.last_transit)
            if d < track.clock * 10:  # not a timestamp jump (layer switch or m-line reuse)
                track.jitter += (d - track.jitter) / 16
        track.last_transit = transit
        if in_order and track.video and ts != track.last_ts:
            # (a late packet belongs to a frame already seen: not a frame start)
            track.last_ts = ts
            self._frame(ssrc, track, data, ts, now, srtp)

    def _frame(self, ssrc: int, track: TrackStats, data: bytes, ts: int, now: float,
               srtp: Any) -> None:
        """The first packet of a new video frame that arrived: its delay and content marker."""
        if track.sr is not None:
            ticks = (ts - track.sr[1] + 0x80000000) % 0x100000000 - 0x80000000
            sent = track.sr[0] + ticks / 90000
            self.delay_ms[max(0, int((now - sent) * 1000))] += 1
        try:
            data = srtp.unprotect(data)
        except Exception:  # noqa: BLE001 - e.g. a replayed packet: no marker for it
            return
        payload = _payload(data)
        if payload is None:
            return
        skip = frame_start_offset(payload)
        if skip is None:
            return
        hit = self.markers.get(payload[skip:skip + MARKER_BYTES])
        if hit is None:
            track.marker_bad += 1
            return
        rid, _index, keyframe = hit
        track.marker_ok += 1
        if rid != track.layer:
            # a new stream or a layer switch: a decoder needs a keyframe to start on
            if track.layer is not None:
                track.layer_switches += 1
            if not keyframe:
                # a switch the SFU made on a delta frame is its bug; a stream that starts on one
                # (or a keyframe whose first packet was lost) only needs a keyframe
                if track.layer is not None and not track.missing:
                    track.switches_off_keyframe += 1
                self._pli(ssrc, track, time.monotonic())
            track.layer = rid
        track.frames_by_layer[rid] += 1
        if track.first_frame_at is None:
            track.first_frame_at = time.monotonic()

    def _on_rtx(self, data: bytes, srtp: Any) -> None:
        """A retransmission: which packet it repairs is its payload's first two bytes."""
        media_ssrc = self.rtx_of.get(int.from_bytes(data[8:12], "big"))
        track = self.tracks_by_ssrc.get(media_ssrc) if media_ssrc is not None else None
        if track is None or not track.missing or track.highest is None:
            return  # probe padding, or nothing asked for
        try:
            payload = _payload(srtp.unprotect(data))
        except Exception:  # noqa: BLE001 - not authentic: ignore it
            return
        if payload is None or len(payload) < 2:
            return
        osn = (payload[0] << 8) | payload[1]
        ext = track.highest + seq_diff(osn, track.highest & 0xFFFF)
        if track.missing.pop(ext, None) is not None:
            track.repaired += 1

    # -- what a browser sends back -------------------------------------------------------------

    def _gap(self, ssrc: int, track: TrackStats, first: int, last: int) -> None:
        if last - first >= MAX_MISSING:
            return  # a restart of the stream, not loss to repair
        at = time.monotonic()
        for ext in range(first, last + 1):
            track.missing[ext] = [at, 1]
        while len(track.missing) > MAX_MISSING:
            del track.missing[next(iter(track.missing))]
        track.nacked += last - first + 1
        self._send_nack(ssrc, [ext & 0xFFFF for ext in range(first, last + 1)])

    def _send_nack(self, ssrc: int, seqs: list[int]) -> None:
        packet = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=self.rtcp_ssrc, media_ssrc=ssrc)
        packet.lost = seqs
        self.nacks_sent += self.send_rtcp(bytes(packet))

    def _pli(self, ssrc: int, track: TrackStats, now: float) -> None:
        if now - track.last_pli < PLI_MIN_INTERVAL_S:
            return
        track.last_pli = now
        track.plis += 1
        self.plis_sent += self.send_rtcp(bytes(RtcpPsfbPacket(
            fmt=RTCP_PSFB_PLI, ssrc=self.rtcp_ssrc, media_ssrc=ssrc)))

    def tick(self, now: float | None = None) -> None:
        """NACK retries, PLIs for losses nothing repaired, receiver reports (call every ~0.1 s)."""
        now = time.monotonic() if now is None else now
        for ssrc, track in self.tracks_by_ssrc.items():
            if not track.missing:
                continue
            retry: list[int] = []
            broken = False
            for ext, state in list(track.missing.items()):
                if now - state[0] >= GIVE_UP_S or (state[1] >= NACK_TRIES
                                                   and now - state[0] >= NACK_RETRY_S * 4):
                    del track.missing[ext]
                    track.unrepaired += 1
                    broken = True
                elif state[1] < NACK_TRIES and now - state[0] >= NACK_RETRY_S * state[1]:
                    state[1] += 1
                    retry.append(ext & 0xFFFF)
            if retry:
                self._send_nack(ssrc, retry)
            if broken:
                self._pli(ssrc, track, now)
        if now - self._last_rr >= RR_INTERVAL_S:
            self._last_rr = now
            self.send_receiver_reports(now)

    def send_receiver_reports(self, now: float) -> None:
        reports = []
        for ssrc, track in self.tracks_by_ssrc.items():
            if track.highest is None or track.first is None:
                continue
            expected = track.highest - track.first + 1
            interval_expected = expected - track.rr_expected
            interval_received = track.total_received - track.rr_received
            track.rr_expected, track.rr_received = expected, track.total_received
            lost_interval = interval_expected - interval_received
            fraction = (lost_interval << 8) // interval_expected \
                if interval_expected > 0 and lost_interval > 0 else 0
            cumulative = max(-0x800000, min(0x7FFFFF, expected - track.total_received))
            dlsr = int((now - track.sr_at) * 65536) if track.sr_mid else 0
            reports.append(RtcpReceiverInfo(
                ssrc=ssrc, fraction_lost=min(255, fraction), packets_lost=cumulative,
                highest_sequence=track.highest & 0xFFFFFFFF, jitter=int(track.jitter),
                lsr=track.sr_mid, dlsr=dlsr & 0xFFFFFFFF))
        for start in range(0, len(reports), REPORTS_PER_RR):
            packet = RtcpRrPacket(ssrc=self.rtcp_ssrc,
                                  reports=reports[start:start + REPORTS_PER_RR])
            self.rrs_sent += self.send_rtcp(bytes(packet))

    # -- RTCP from the server ------------------------------------------------------------------

    def on_rtcp(self, data: bytes) -> None:
        """Sender reports: the clock mapping (delay) and LSR for our receiver reports."""
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
                    track.sr_mid = (ntp >> 16) & 0xFFFFFFFF
                    track.sr_at = time.monotonic()


class _Plain:
    """The "session" of a packet aiortc has already decrypted."""

    @staticmethod
    def unprotect(data: bytes) -> bytes:
        return data


PLAIN = _Plain()


def _payload(data: bytes) -> bytes | None:
    """The payload of a decrypted RTP packet (after CSRCs, extensions and padding)."""
    start = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        if len(data) < start + 4:
            return None
        start += 4 + 4 * int.from_bytes(data[start + 2:start + 4], "big")
    end = len(data) - (data[-1] if data[0] & 0x20 else 0)
    return data[start:end] if start <= end else None
