"""One clock for every recorded track. Pure: times are passed in.

Each publisher stamps its RTP with a random 32-bit origin per SSRC and says, in its RTCP sender
reports (SR), which RTP timestamp belongs to which instant of its own NTP clock. The recorder maps
every frame to the *common clock* (the server's wall clock, seconds since the epoch) in two steps:

1. RTP -> the sender's NTP clock, through the newest SR of that SSRC (unwrapped timestamps, so a
   wrap of the 32-bit counter changes nothing). Before the first SR, the arrival time of the
   SSRC's first packet anchors it instead.
2. Sender NTP -> common clock, by one offset per publisher (``SenderClock``), shared by its audio
   and video so lip sync survives: the smallest ``arrival - ntp`` over the last ~16 s, sampled
   from every mapped frame's arrival as well as from SRs (the least queued sample is the best
   estimate of the one-way path). Frames, not only SRs: an SR reaches the recorder only at the
   media plane's next maintenance tick (every 0.5 s), so its "arrival" can be late by that much,
   and with the few SRs of a participant who just joined the minimum was measured 277 ms late
   (tests/integration/test_recording.py); frames arrive 50 times a second, each as it comes.

Tracks of different participants then line up to within the network delay difference; each
file's own timestamps start at zero (``TrackTimeline``), and the manifest keeps the start on the
common clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from sfu.wire.seqmath import ts_diff

__all__ = [
    "NTP_EPOCH_OFFSET",
    "SenderClock",
    "TimestampUnwrapper",
    "TrackClock",
    "TrackTimeline",
    "ntp_to_seconds",
]

NTP_EPOCH_OFFSET = 2_208_988_800
"""Seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)."""
OFFSET_WINDOW = 16
"""Seconds of samples remembered for the publisher's clock offset (the minimum of each second,
for the last 16 seconds: follows a drifting sender clock)."""
MAX_SKEW_S = 10.0
"""A mapped time this far from the frame's arrival is a lie or a timestamp jump (RTP comes from
publishers: untrusted). The frame then gets its arrival time, and an arrival anchor restarts;
so a forged SR or timestamp cannot open hours of gap in a file (or in an export)."""


def ntp_to_seconds(ntp: int) -> float:
    """A 64-bit NTP timestamp (32.32 fixed point, RFC 3550 4) as Unix seconds."""
    return (ntp >> 32) - NTP_EPOCH_OFFSET + (ntp & 0xFFFFFFFF) / 2**32


class TimestampUnwrapper:
    """32-bit RTP timestamps -> an extended, monotonic-in-meaning integer (seqmath.ts_diff)."""

    __slots__ = ("_newest",)

    def __init__(self) -> None:
        self._newest: int | None = None

    def unwrap(self, timestamp: int) -> int:
        newest = self._newest
        if newest is None:
            self._newest = timestamp
            return timestamp
        ext = newest + ts_diff(timestamp, newest)
        if ext > newest:
            self._newest = ext
        return ext


class SenderClock:
    """One publisher's NTP clock -> the common clock (an offset, from its sender reports)."""

    def __init__(self, window: int = OFFSET_WINDOW) -> None:
        self._offsets: deque[list[float]] = deque(maxlen=window)  # [second, min offset]

    @property
    def known(self) -> bool:
        return bool(self._offsets)

    def observe(self, ntp_s: float, arrival_s: float) -> None:
        """A sample: something stamped ``ntp_s`` by the sender arrived at ``arrival_s``."""
        offset = arrival_s - ntp_s
        second = float(int(arrival_s))
        if self._offsets and self._offsets[-1][0] == second:
            bucket = self._offsets[-1]
            bucket[1] = min(bucket[1], offset)
        else:
            self._offsets.append([second, offset])

    def offset(self) -> float:
        if not self._offsets:
            raise ValueError("no sender report seen: the sender's clock offset is unknown")
        return min(bucket[1] for bucket in self._offsets)

    def to_common(self, ntp_s: float) -> float:
        return ntp_s + self.offset()


@dataclass(slots=True)
class _Anchor:
    ext_rtp: int
    seconds: float  # sender NTP (for an SR) or common clock (for an arrival)


@dataclass(slots=True)
class _SsrcState:
    unwrapper: TimestampUnwrapper
    report: _Anchor | None = None
    arrival: _Anchor | None = None


class TrackClock:
    """RTP timestamps of one track (any of its SSRCs: simulcast layers) -> the common clock."""

    def __init__(self, clock_rate: int, sender: SenderClock) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock rate {clock_rate} must be positive")
        self.clock_rate = clock_rate
        self.sender = sender
        self.implausible = 0  # frames whose mapped time was rejected (MAX_SKEW_S)
        self._ssrcs: dict[int, _SsrcState] = {}

    def _state(self, ssrc: int) -> _SsrcState:
        state = self._ssrcs.get(ssrc)
        if state is None:
            state = self._ssrcs[ssrc] = _SsrcState(TimestampUnwrapper())
        return state

    def on_sender_report(self, ssrc: int, ntp_s: float, rtp_timestamp: int,
                         arrival_s: float) -> None:
        """An RTCP SR of this track: ``ntp_s`` in Unix seconds (``ntp_to_seconds``)."""
        state = self._state(ssrc)
        state.report = _Anchor(state.unwrapper.unwrap(rtp_timestamp), ntp_s)
        self.sender.observe(ntp_s, arrival_s)

    def common_time(self, ssrc: int, rtp_timestamp: int, arrival_s: float) -> float:
        """When the frame stamped ``rtp_timestamp`` was captured, on the common clock."""
        state = self._state(ssrc)
        ext = state.unwrapper.unwrap(rtp_timestamp)
        if state.report is not None and self.sender.known:
            anchor = state.report
            ntp_s = anchor.seconds + (ext - anchor.ext_rtp) / self.clock_rate
            if abs(arrival_s - ntp_s - self.sender.offset()) <= MAX_SKEW_S:
                self.sender.observe(ntp_s, arrival_s)  # a lie or a jump must not move the offset
            mapped = self.sender.to_common(ntp_s)
            if abs(mapped - arrival_s) <= MAX_SKEW_S:
                return mapped
            self.implausible += 1
            return arrival_s
        if state.arrival is not None:
            anchor = state.arrival
            mapped = anchor.seconds + (ext - anchor.ext_rtp) / self.clock_rate
            if abs(mapped - arrival_s) <= MAX_SKEW_S:
                return mapped
            self.implausible += 1
        state.arrival = _Anchor(ext, arrival_s)
        return arrival_s


class TrackTimeline:
    """Common-clock instants -> the file's timestamps in clock ticks, starting at 0.

    Timestamps only grow: when the mapping moves backwards (a better clock offset, the first SR
    replacing the arrival anchor, a simulcast layer switch) the frame gets the previous timestamp
    + 1 tick (counted in ``clamped``). Gaps forwards are kept: a gap stays a gap.
    """

    __slots__ = ("clock_rate", "start_s", "last_pts", "clamped")

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.start_s: float | None = None  # common clock of pts 0
        self.last_pts: int | None = None
        self.clamped = 0

    def pts(self, common_s: float) -> int:
        if self.start_s is None:
            self.start_s = common_s
        pts = round((common_s - self.start_s) * self.clock_rate)
        last = self.last_pts
        if last is not None and pts <= last:
            pts = last + 1
            self.clamped += 1
        self.last_pts = pts
        return pts
