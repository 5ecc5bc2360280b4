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

Step 1 uses, of the SRs of the last ~16 s, the one that puts the RTP timestamps earliest (the
smallest ``ntp - rtp / rate``), not the newest. An SR's NTP time can only be late: aiortc stamps it
when it has *sent* the last packet of a frame, so a stalled sender (a busy machine) says a frame
happened up to ~290 ms after the others say (measured: the SR base of one SSRC jumped +101, +291,
+136 ms and back). Frame samples are kept as ``arrival - rtp / rate`` and turned into offsets with
the chosen SR at read time, so a late SR chosen for a while leaves no samples behind that would
pull the track early for the next 16 s (the cross-participant offsets of 150-350 ms of issue 10).

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
SR_AGREEMENT_S = 1.0
"""SRs of one SSRC whose mappings differ by more than this are not one timeline with a late
stamp but a restart or a jump of the sender's timestamps: the newest replaces the others."""
MAX_REPORTS = 64  # SRs remembered per SSRC (one a second, for OFFSET_WINDOW seconds)
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


class _Buckets:
    """The minimum of samples per second of arrival, for the last ``window`` such seconds."""

    __slots__ = ("_buckets",)

    def __init__(self, window: int) -> None:
        self._buckets: deque[list[float]] = deque(maxlen=window)  # [second, minimum]

    def add(self, value: float, arrival_s: float) -> None:
        second = float(int(arrival_s))
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            bucket = buckets[-1]
            bucket[1] = min(bucket[1], value)
        else:
            buckets.append([second, value])

    def minimum(self) -> float | None:
        return min(bucket[1] for bucket in self._buckets) if self._buckets else None

    def clear(self) -> None:
        self._buckets.clear()


class SenderClock:
    """One publisher's NTP clock -> the common clock (an offset, from its sender reports).

    Samples: ``observe`` (an SR: an NTP time and when it arrived) and ``observe_media`` (a frame
    of one source, an SSRC, in its own RTP seconds); a source's frames count once ``set_base``
    says which NTP time its RTP second 0 is (``ntp - rtp / rate`` of its chosen SR).
    """

    def __init__(self, window: int = OFFSET_WINDOW) -> None:
        self._window = window
        self._reports = _Buckets(window)
        self._media: dict[int, _Buckets] = {}
        self._bases: dict[int, float] = {}
        self._sources = 0

    @property
    def known(self) -> bool:
        return self._reports.minimum() is not None

    def new_source(self) -> int:
        self._sources += 1
        return self._sources

    def observe(self, ntp_s: float, arrival_s: float) -> None:
        """A sample: something stamped ``ntp_s`` by the sender arrived at ``arrival_s``."""
        self._reports.add(arrival_s - ntp_s, arrival_s)

    def observe_media(self, source: int, media_s: float, arrival_s: float) -> None:
        """A frame of ``source`` stamped ``media_s`` (RTP timestamp / rate) arrived then."""
        buckets = self._media.get(source)
        if buckets is None:
            buckets = self._media[source] = _Buckets(self._window)
        buckets.add(arrival_s - media_s, arrival_s)

    def set_base(self, source: int, base_s: float, restart: bool = False) -> None:
        """``source``'s RTP second 0 is at ``base_s`` on the sender's NTP clock. ``restart``:
        its timestamps jumped, so its earlier frame samples belong to another timeline."""
        self._bases[source] = base_s
        if restart and source in self._media:
            self._media[source].clear()

    def offset(self) -> float:
        best = self._reports.minimum()
        if best is None:
            raise ValueError("no sender report seen: the sender's clock offset is unknown")
        bases = self._bases
        for source, buckets in self._media.items():
            base = bases.get(source)
            low = buckets.minimum()
            if base is not None and low is not None and low - base < best:
                best = low - base
        return best

    def to_common(self, ntp_s: float) -> float:
        return ntp_s + self.offset()


@dataclass(slots=True)
class _Anchor:
    ext_rtp: int
    seconds: float  # common clock (an arrival)


@dataclass(slots=True)
class _SsrcState:
    unwrapper: TimestampUnwrapper
    source: int  # in the SenderClock
    reports: deque[tuple[float, float]]  # (arrival, base = ntp - ext_rtp / rate) of recent SRs
    base: float | None = None  # the chosen SR's: the smallest of ``reports``
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
            state = self._ssrcs[ssrc] = _SsrcState(
                TimestampUnwrapper(), self.sender.new_source(), deque(maxlen=MAX_REPORTS))
        return state

    def on_sender_report(self, ssrc: int, ntp_s: float, rtp_timestamp: int,
                         arrival_s: float) -> None:
        """An RTCP SR of this track: ``ntp_s`` in Unix seconds (``ntp_to_seconds``)."""
        state = self._state(ssrc)
        base = ntp_s - state.unwrapper.unwrap(rtp_timestamp) / self.clock_rate
        reports = state.reports
        restart = bool(reports) and abs(base - reports[-1][1]) > SR_AGREEMENT_S
        if restart:
            reports.clear()
        reports.append((arrival_s, base))
        while reports[0][0] < arrival_s - OFFSET_WINDOW:
            reports.popleft()
        state.base = min(b for _, b in reports)  # the least late stamp (see the module doc)
        self.sender.set_base(state.source, state.base, restart)
        self.sender.observe(ntp_s, arrival_s)

    def common_time(self, ssrc: int, rtp_timestamp: int, arrival_s: float) -> float:
        """When the frame stamped ``rtp_timestamp`` was captured, on the common clock."""
        state = self._state(ssrc)
        ext = state.unwrapper.unwrap(rtp_timestamp)
        if state.base is not None and self.sender.known:
            media_s = ext / self.clock_rate
            ntp_s = state.base + media_s
            if abs(arrival_s - ntp_s - self.sender.offset()) <= MAX_SKEW_S:
                # (a lie or a jump must not move the offset)
                self.sender.observe_media(state.source, media_s, arrival_s)
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
