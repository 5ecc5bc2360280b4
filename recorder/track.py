"""The pure core of one recorded track: RTP and sender reports in, packets to mux out.

Depacketizer (frames), TrackClock (common clock) and TrackTimeline (file timestamps) together,
plus the key frame requests the shell turns into PLIs: one at the start, one after a layer
change or a loss, repeated at most every ``keyframe_retry_s`` while still waiting. No I/O, time
passed in.

Feed it one track's RTP and that stream's sender reports. In the server that is a local
subscriber's consumer (``sfu/local_subscriber.py``): one SSRC whose sequence numbers and
timestamps continue across simulcast switches, which happen only at keyframes, so a switch is
simply the next (key) frame. A layer's own packets, as the publisher sent them, work too: a
layer switch is then a new SSRC, which the depacketizer and the clock both key on.
"""

from __future__ import annotations

from recorder.clock import SenderClock, TrackClock, TrackTimeline
from recorder.depacketize import Depacketizer, EncodedFrame, depacketizer_for
from recorder.track_writer import CODECS, MuxPacket
from sfu.wire.rtp_packet import RtpView

__all__ = ["KEYFRAME_RETRY_S", "TrackRecorder"]

KEYFRAME_RETRY_S = 1.0


class TrackRecorder:
    def __init__(self, codec: str, sender: SenderClock, *,
                 keyframe_retry_s: float = KEYFRAME_RETRY_S,
                 depacketizer: Depacketizer | None = None) -> None:
        codec = codec.lower()
        if codec not in CODECS:
            raise ValueError(f"cannot record codec {codec!r}; known: {sorted(CODECS)}")
        self.codec = codec
        self.kind = CODECS[codec][1]
        clock_rate = CODECS[codec][2]
        self.depacketizer = depacketizer or depacketizer_for(codec)
        self.clock = TrackClock(clock_rate, sender)
        self.timeline = TrackTimeline(clock_rate)
        self.keyframe_retry_s = keyframe_retry_s
        self._last_request_s: float | None = None

    @property
    def start_s(self) -> float | None:
        """The common-clock instant of the file's timestamp 0 (None until the first frame)."""
        return self.timeline.start_s

    def on_rtp(self, packet: RtpView, arrival_s: float) -> list[MuxPacket]:
        return self._map(self.depacketizer.push(packet, arrival_s))

    def poll(self, now_s: float) -> list[MuxPacket]:
        """Call now and then (e.g. every 100 ms): gives up holes older than the wait window."""
        return self._map(self.depacketizer.poll(now_s))

    def on_sender_report(self, ssrc: int, ntp_s: float, rtp_timestamp: int,
                         arrival_s: float) -> None:
        self.clock.on_sender_report(ssrc, ntp_s, rtp_timestamp, arrival_s)

    def on_layer_change(self) -> None:
        """The recorded layer changes: drop the partial frame, wait for a key frame."""
        self.depacketizer.reset()
        self._last_request_s = None

    def keyframe_request(self, now_s: float) -> bool:
        """True when the shell should send a PLI now (waiting, and not asked too recently)."""
        if not self.depacketizer.waiting_for_keyframe:
            return False
        last = self._last_request_s
        if last is not None and now_s - last < self.keyframe_retry_s:
            return False
        self._last_request_s = now_s
        return True

    def _map(self, frames: list[EncodedFrame]) -> list[MuxPacket]:
        out: list[MuxPacket] = []
        for frame in frames:
            common = self.clock.common_time(frame.ssrc, frame.timestamp, frame.arrival_s)
            out.append(MuxPacket(frame.data, self.timeline.pts(common), frame.keyframe,
                                 frame.size, frame.parameter_sets))
        return out
