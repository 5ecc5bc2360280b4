"""A pure, deterministic network simulator for the bandwidth estimator tests.

One direction of a path: packets go through a bottleneck of ``capacity_bps`` with a drop-tail queue
bounded by time (like Linux ``tbf latency 100ms``: a packet that would wait longer is dropped), then
a fixed propagation delay, with optional seeded random loss and jitter (jitter never reorders, as on
a real FIFO path). The receiver records arrivals with ``FeedbackRecorder`` (in its own clock, offset
from the sender's) and sends transport feedback every 50-100 ms; the feedback travels back over an
uncongested path and is parsed with ``TransportFeedback.parse`` before it reaches the estimator, so
both ends of the wire format are exercised on every run.

The sender is open-loop (a fixed schedule of packets): the tests measure how the estimate reacts,
not a full congestion-control loop. Everything is driven by a simulated clock; no sleeping.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sfu.policy.bwe import SendSideBandwidthEstimator
from sfu.wire.twcc import FeedbackRecorder, TransportFeedback, TransportSequencer

Packet = tuple[float, int, int]  # send time, size in bytes, probe cluster (-1 for media)


@dataclass
class Link:
    capacity_bps: float
    propagation_s: float = 0.02
    queue_limit_s: float = 0.1
    loss: float = 0.0
    jitter_s: float = 0.0
    changes: Sequence[tuple[float, float]] = ()  # (from time, new capacity), in time order
    seed: int = 1
    dropped: int = 0
    _rng: random.Random = field(init=False, repr=False)
    _free_at: float = field(default=-math.inf, init=False, repr=False)
    _last_arrival: float = field(default=-math.inf, init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def capacity_at(self, t: float) -> float:
        capacity = self.capacity_bps
        for at, bps in self.changes:
            if t >= at:
                capacity = bps
        return capacity

    def transmit(self, send_s: float, size: int) -> float | None:
        """Arrival time (sender clock) of a packet handed to the link at ``send_s``, or None."""
        if self.loss and self._rng.random() < self.loss:
            self.dropped += 1
            return None
        start = max(send_s, self._free_at)
        if start - send_s > self.queue_limit_s:
            self.dropped += 1
            return None
        self._free_at = start + size * 8 / self.capacity_at(start)
        arrival = self._free_at + self.propagation_s
        if self.jitter_s:
            arrival += self._rng.uniform(0, self.jitter_s)
        arrival = max(arrival, self._last_arrival)
        self._last_arrival = arrival
        return arrival


@dataclass
class Sample:
    t: float
    estimate_bps: int
    acked_bps: float | None
    loss_fraction: float
    state: str


class Session:
    """Sender (sequencer + estimator) -> link -> receiver (recorder) -> feedback -> sender."""

    ARRIVAL, BUILD, DELIVER = 0, 1, 2  # event order at equal times

    def __init__(
        self,
        link: Link,
        bwe: SendSideBandwidthEstimator,
        *,
        feedback_interval_s: tuple[float, float] = (0.05, 0.1),
        clock_offset_s: float = 1000.0,
        first_seq: int = 0,
        seed: int = 2,
    ) -> None:
        self.link = link
        self.bwe = bwe
        self.sequencer = TransportSequencer(first_seq=first_seq)
        self.recorder = FeedbackRecorder()
        self.trace: list[Sample] = []
        self.feedbacks: list[TransportFeedback] = []
        self._interval = feedback_interval_s
        self._offset = clock_offset_s
        self._rng = random.Random(seed)
        self._events: list[tuple[float, int, int, object]] = []
        self._counter = 0
        self._push(self._rng.uniform(*self._interval), self.BUILD, None)

    def _push(self, t: float, kind: int, item: object) -> None:
        self._counter += 1
        heapq.heappush(self._events, (t, kind, self._counter, item))

    def send(self, now_s: float, size: int, cluster: int = -1) -> int:
        self.advance(now_s)
        seq = self.sequencer.next(size, now_s, cluster)
        arrival = self.link.transmit(now_s, size)
        if arrival is not None:
            self._push(arrival, self.ARRIVAL, seq)
        return seq

    def advance(self, now_s: float) -> None:
        events = self._events
        while events and events[0][0] <= now_s:
            t, kind, _, item = heapq.heappop(events)
            if kind == self.ARRIVAL:
                assert isinstance(item, int)
                self.recorder.on_packet(item, t + self._offset)
            elif kind == self.BUILD:
                for _ in range(100):  # drain; a feedback holds at most 500 packets
                    data = self.recorder.build(t + self._offset, 0x1111, 0x2222)
                    if data is None:
                        break
                    self._push(t + self.link.propagation_s, self.DELIVER, data)
                self._push(t + self._rng.uniform(*self._interval), self.BUILD, None)
            else:
                assert isinstance(item, bytes)
                feedback = TransportFeedback.parse(item)
                self.feedbacks.append(feedback)
                self.bwe.on_feedback(feedback, self.sequencer, t)
                b = self.bwe
                self.trace.append(Sample(t, b.estimate_bps, b.acked_bps, b.loss_fraction, b.state))

    def run(self, packets: Iterable[Packet], until_s: float) -> list[Sample]:
        for t, size, cluster in packets:
            if t > until_s:
                break
            self.send(t, size, cluster)
        self.advance(until_s)
        return self.trace


def video(
    rate_bps: float, start_s: float, end_s: float, fps: float = 30.0, mtu: int = 1200
) -> list[Packet]:
    """Frames of rate/fps bytes, each sent as a burst of MTU packets 0.1 ms apart."""
    packets: list[Packet] = []
    frame_bytes = rate_bps / 8 / fps
    for k in range(int((end_s - start_s) * fps)):
        t = start_s + k / fps
        remaining = int(frame_bytes)
        i = 0
        while remaining > 0:
            size = min(mtu, remaining)
            packets.append((t + i * 0.0001, size, -1))
            remaining -= size
            i += 1
    return packets


def audio(start_s: float, end_s: float, rate_bps: float = 50_000) -> list[Packet]:
    """One packet every 20 ms."""
    size = int(rate_bps * 0.02 / 8)
    return [(start_s + k * 0.02, size, -1) for k in range(int((end_s - start_s) / 0.02))]


def probe(
    rate_bps: float, start_s: float, duration_s: float, cluster: int, seed: int = 3
) -> list[Packet]:
    """A paced padding burst: packets of 250-1100 bytes spaced so the rate is ``rate_bps``."""
    rng = random.Random(seed)
    packets: list[Packet] = []
    t = start_s
    while t < start_s + duration_s:
        size = rng.randint(250, 1100)
        packets.append((t, size, cluster))
        t += size * 8 / rate_bps
    return packets


def merge(*streams: list[Packet]) -> list[Packet]:
    return sorted(p for stream in streams for p in stream)
