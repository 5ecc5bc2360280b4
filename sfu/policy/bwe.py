"""Send-side bandwidth estimation from transport feedback: a simplified GoogCC.

The SFU must know each subscriber's downlink to pick simulcast layers and to decide audio-only, and
it must *probe* to learn more than it currently sends. A receiver's REMB cannot tell us that (it
stays near 1.5 x what arrives), so we estimate on our side, from ``sfu.wire.twcc`` feedback:

- delay-based: packets sent within 5 ms form a group; the change of one-way delay between groups,
  accumulated and smoothed, is fitted by least squares over the last 20 groups. A rising slope
  (queues filling) above an adaptive threshold is overuse: the estimate drops to 0.85 x what was
  actually delivered. A falling slope (queues draining) holds the estimate.
- loss-based: more than 10% lost cuts the estimate by half the loss fraction; under 2% lets it grow.
- increase: 8%/s while the link capacity is unknown, about one packet per response time once an
  overuse has shown where the capacity is; never past 1.5 x the delivered rate + 10 kbps, because
  an application-limited sender has no evidence of more.
- probes: a burst tagged with a cluster id gives min(send rate, receive rate); the result is
  trusted and raises the estimate at once (that is how the SFU learns it may leave audio-only).

Pure code: time comes in as float seconds (our clock for sends and ``now_s``; arrival times are in
the receiver's clock and only their differences are used).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol

from sfu.wire.seqmath import ref24_diff
from sfu.wire.twcc import REFERENCE_TIME_US, TransportFeedback, TransportSequencer

__all__ = ["BandwidthEstimator", "SendSideBandwidthEstimator"]

NORMAL = "normal"
OVERUSING = "overusing"
UNDERUSING = "underusing"

_GROUP_S = 0.005  # packets sent this close together are one group (a frame, a pacer burst)
_BURST_S = 0.005
_MAX_BURST_S = 0.1
_ACKED_WINDOW_S = 0.5
_LOSS_WINDOW_S = 1.0
_BETA = 0.85  # overuse: estimate = beta * delivered rate
_MAX_DECREASE_INTERVAL_S = 0.2
_LOSS_DECISION_S = 0.3  # loss-based changes at most this often
_MIN_LOSS_PACKETS = 40  # fewer say too little: 3 of 20 lost is often chance at 5%
_HIGH_LOSS = 0.10
_LOW_LOSS = 0.02
_MULTIPLICATIVE_PER_S = 1.08
_PACKET_BITS = 1200 * 8
_PROBE_MIN_PACKETS = 5
_PROBE_FULLY_COVERED = 0.95
_PROBE_MAX_INTERVAL_S = 1.0
_MAX_CLUSTERS = 16


class _InterArrival:
    """Cuts packets (in arrival order) into send groups; returns deltas between completed groups."""

    __slots__ = (
        "_first_send",
        "_last_send",
        "_first_arrival",
        "_last_arrival",
        "_prev_send",
        "_prev_arrival",
    )

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._first_send: float | None = None
        self._last_send = 0.0
        self._first_arrival = 0.0
        self._last_arrival = 0.0
        self._prev_send: float | None = None
        self._prev_arrival = 0.0

    def add(self, send_s: float, arrival_s: float) -> tuple[float, float, float] | None:
        """(send delta, arrival delta, arrival time), in s, when ``send_s`` opens a new group."""
        if self._first_send is None:
            self._start(send_s, arrival_s)
            return None
        if send_s < self._first_send:
            return None  # reordered across groups: its delay says nothing reliable
        if self._in_group(send_s, arrival_s):
            self._last_send = max(self._last_send, send_s)
            self._last_arrival = max(self._last_arrival, arrival_s)
            return None
        result = None
        if self._prev_send is not None:
            send_delta = self._last_send - self._prev_send
            arrival_delta = self._last_arrival - self._prev_arrival
            if arrival_delta - send_delta > 3.0 or arrival_delta < 0:
                # The receiver's clock jumped (or groups arrived reordered): start over.
                self.reset()
                self._start(send_s, arrival_s)
                return None
            result = (send_delta, arrival_delta, self._last_arrival)
        self._prev_send = self._last_send
        self._prev_arrival = self._last_arrival
        self._start(send_s, arrival_s)
        return result

    def _start(self, send_s: float, arrival_s: float) -> None:
        self._first_send = self._last_send = send_s
        self._first_arrival = self._last_arrival = arrival_s

    def _in_group(self, send_s: float, arrival_s: float) -> bool:
        assert self._first_send is not None
        # A burst: packets that arrive back to back faster than they were sent were queued
        # together behind something; splitting them would read queue drain as delay change.
        arrival_delta = arrival_s - self._last_arrival
        send_delta = send_s - self._last_send
        if send_delta == 0:
            return True
        if (
            arrival_delta - send_delta < 0
            and arrival_delta <= _BURST_S
            and arrival_s - self._first_arrival < _MAX_BURST_S
        ):
            return True
        return send_s - self._first_send <= _GROUP_S


class _Trendline:
    """Least-squares slope of the smoothed accumulated delay, against an adaptive threshold."""

    WINDOW = 20
    SMOOTHING = 0.9
    GAIN = 4.0
    K_UP = 0.0087  # the threshold rises slowly (so real overuse is not masked) ...
    K_DOWN = 0.039  # ... and falls fast (so detection stays sensitive after jitter passes)

    __slots__ = (
        "_x",
        "_y",
        "_first_ms",
        "_accumulated",
        "_smoothed",
        "_deltas",
        "_threshold",
        "_last_threshold_ms",
        "_over_ms",
        "_over_count",
        "_prev_trend",
        "state",
    )

    def __init__(self) -> None:
        self._x: deque[float] = deque(maxlen=self.WINDOW)
        self._y: deque[float] = deque(maxlen=self.WINDOW)
        self._first_ms: float | None = None
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._deltas = 0
        self._threshold = 12.5
        self._last_threshold_ms: float | None = None
        self._over_ms = -1.0
        self._over_count = 0
        self._prev_trend = 0.0
        self.state = NORMAL

    def update(self, send_delta_s: float, arrival_delta_s: float, arrival_s: float) -> str:
        send_delta_ms = send_delta_s * 1000
        arrival_ms = arrival_s * 1000
        self._deltas = min(self._deltas + 1, 1000)
        self._accumulated += (arrival_delta_s - send_delta_s) * 1000
        self._smoothed = self.SMOOTHING * self._smoothed + (1 - self.SMOOTHING) * self._accumulated
        if self._first_ms is None:
            self._first_ms = arrival_ms
        self._x.append(arrival_ms - self._first_ms)
        self._y.append(self._smoothed)
        trend = self._prev_trend
        if len(self._x) == self.WINDOW:
            slope = _slope(self._x, self._y)
            if slope is not None:
                trend = slope
        self._detect(trend, send_delta_ms, arrival_ms)
        return self.state

    def _detect(self, trend: float, send_delta_ms: float, now_ms: float) -> None:
        if self._deltas < 2:
            self.state = NORMAL
            return
        # Scaled by the sample count so that a young, noisy fit weighs less.
        modified = min(self._deltas, 60) * trend * self.GAIN
        if modified > self._threshold:
            if self._over_ms < 0:
                self._over_ms = send_delta_ms / 2
            else:
                self._over_ms += send_delta_ms
            self._over_count += 1
            # Overuse must last a little (10 ms, two groups) and not be already receding.
            if self._over_ms > 10 and self._over_count > 1 and trend >= self._prev_trend:
                self._over_ms = 0.0
                self._over_count = 0
                self.state = OVERUSING
        elif modified < -self._threshold:
            self._over_ms = -1.0
            self._over_count = 0
            self.state = UNDERUSING
        else:
            self._over_ms = -1.0
            self._over_count = 0
            self.state = NORMAL
        self._prev_trend = trend
        self._adapt_threshold(modified, now_ms)

    def _adapt_threshold(self, modified: float, now_ms: float) -> None:
        if self._last_threshold_ms is None:
            self._last_threshold_ms = now_ms
        size = abs(modified)
        if size > self._threshold + 15:
            # A spike (e.g. a route change) should not drag the threshold up.
            self._last_threshold_ms = now_ms
            return
        k = self.K_DOWN if size < self._threshold else self.K_UP
        dt = min(max(now_ms - self._last_threshold_ms, 0.0), 100.0)
        self._threshold = min(max(self._threshold + k * (size - self._threshold) * dt, 6.0), 600.0)
        self._last_threshold_ms = now_ms


def _slope(xs: deque[float], ys: deque[float]) -> float | None:
    n = len(xs)
    mean_x = sum(xs) / n
    mean_y = sum(ys) / n
    num = 0.0
    den = 0.0
    for x, y in zip(xs, ys, strict=True):
        dx = x - mean_x
        num += dx * (y - mean_y)
        den += dx * dx
    return num / den if den else None


class _LinkCapacity:
    """Delivered rates seen at overuse: where the link's ceiling is, and how sure we are."""

    __slots__ = ("mean", "_rel_var")

    def __init__(self) -> None:
        self.mean: float | None = None
        self._rel_var = 0.01

    def on_overuse(self, delivered_bps: float) -> None:
        if self.mean is None:
            self.mean = delivered_bps
            return
        self.mean = 0.95 * self.mean + 0.05 * delivered_bps
        rel = (self.mean - delivered_bps) / max(self.mean, 1.0)
        self._rel_var = min(max(0.95 * self._rel_var + 0.05 * rel * rel, 0.0004), 0.0625)

    def upper(self) -> float:
        assert self.mean is not None
        return self.mean * (1 + 3 * math.sqrt(self._rel_var))

    def reset(self) -> None:
        self.mean = None


class _Cluster:
    __slots__ = (
        "received",
        "reported",
        "bytes",
        "first_send",
        "last_send",
        "last_send_size",
        "first_arrival",
        "first_arrival_size",
        "last_arrival",
    )

    def __init__(self) -> None:
        self.received = 0
        self.reported = 0
        self.bytes = 0
        self.first_send = math.inf
        self.last_send = -math.inf
        self.last_send_size = 0
        self.first_arrival = math.inf
        self.first_arrival_size = 0
        self.last_arrival = -math.inf

    def add(self, send_s: float, arrival_s: float, size: int) -> None:
        self.received += 1
        self.bytes += size
        self.first_send = min(self.first_send, send_s)
        if send_s >= self.last_send:
            self.last_send = send_s
            self.last_send_size = size
        if arrival_s < self.first_arrival:
            self.first_arrival = arrival_s
            self.first_arrival_size = size
        self.last_arrival = max(self.last_arrival, arrival_s)

    def rate(self) -> float | None:
        send_interval = self.last_send - self.first_send
        recv_interval = self.last_arrival - self.first_arrival
        if not (0 < send_interval <= _PROBE_MAX_INTERVAL_S):
            return None
        if not (0 < recv_interval <= _PROBE_MAX_INTERVAL_S):
            return None
        # n packets span n - 1 intervals: leave out the last one sent and the first one to arrive.
        send_bps = (self.bytes - self.last_send_size) * 8 / send_interval
        recv_bps = (self.bytes - self.first_arrival_size) * 8 / recv_interval
        if recv_bps < 0.9 * send_bps:
            return 0.95 * recv_bps  # the link was saturated: what got through is the capacity
        return min(send_bps, recv_bps)


class BandwidthEstimator(Protocol):
    """What the downlink control reads from a send-side estimator (fed transport-cc feedback)."""

    @property
    def estimate_bps(self) -> float: ...

    @property
    def acked_bps(self) -> float | None:
        """What the receiver reported delivered lately; None until feedback arrived."""

    @property
    def last_decrease_s(self) -> float | None:
        """When the estimate was last cut (overuse or loss); None if never."""

    def on_feedback(
        self, feedback: TransportFeedback, sequencer: TransportSequencer, now_s: float
    ) -> None: ...

    def expect_probe(self, cluster: int, target_bps: int) -> None: ...

    def probe_result(self, cluster: int) -> int | None: ...


class SendSideBandwidthEstimator:
    """One per subscriber connection; feed it every transport feedback the subscriber sends."""

    def __init__(
        self, initial_bps: int = 1_000_000, min_bps: int = 50_000, max_bps: int = 20_000_000
    ) -> None:
        if not 0 < min_bps <= max_bps:
            raise ValueError(f"need 0 < min_bps <= max_bps, got {min_bps}, {max_bps}")
        self.min_bps = min_bps
        self.max_bps = max_bps
        self.estimate_bps = min(max(initial_bps, min_bps), max_bps)
        self.acked_bps: float | None = None
        self.loss_fraction = 0.0
        self.state = NORMAL
        self.last_decrease_s: float | None = None
        self._groups = _InterArrival()
        self._trend = _Trendline()
        self._capacity = _LinkCapacity()
        self._ref: int | None = None  # last reference time, and its unwrapped value
        self._ref_ext = 0
        # Per-packet report state, a ring like the sequencer's: which unwrapped seq a slot
        # describes and whether it was reported received (so duplicates count once).
        self._stamps: list[int] = []
        self._received: list[bool] = []
        self._acked: deque[tuple[float, int]] = deque()
        self._acked_bytes = 0
        self._first_arrival: float | None = None
        self._newest_arrival = -math.inf
        self._loss: deque[tuple[float, int, int]] = deque()
        self._loss_lost = 0
        self._loss_total = 0
        self._last_loss_decision_s: float | None = None
        self._last_update_s: float | None = None
        self._rtt_s = 0.1
        self._clusters: dict[int, _Cluster] = {}
        self._probe_results: dict[int, int] = {}
        self._probe_targets: dict[int, int] = {}
        self._episode_cut = False

    @property
    def rtt_s(self) -> float:
        """Smoothed time from sending to its feedback: the round trip plus the receiver's
        feedback interval (diagnostics); 0.1 s until measured."""
        return self._rtt_s

    def probe_result(self, cluster: int) -> int | None:
        """The measured rate of probe cluster ``cluster`` in bit/s, once enough of it is known."""
        return self._probe_results.get(cluster)

    def on_feedback(
        self, feedback: TransportFeedback, sequencer: TransportSequencer, now_s: float
    ) -> None:
        """Update from one parsed feedback packet about packets stamped by ``sequencer``."""
        base_us = self._unwrap_reference(feedback.reference_time) * REFERENCE_TIME_US
        self._ensure_ring(sequencer)
        stamps = self._stamps
        received_flags = self._received
        mask = len(stamps) - 1
        packets: list[tuple[float, float, int, int]] = []  # arrival, send, size, cluster
        lost = 0
        newest_send = -math.inf
        for seq, arrival_us in feedback.arrivals:
            ext = sequencer.extended(seq)
            if ext is None:
                continue  # unknown or too old: nothing to learn
            slot = ext & mask
            known = stamps[slot] == ext
            if arrival_us is None:
                if not known:
                    stamps[slot] = ext
                    received_flags[slot] = False
                    lost += 1
                    cluster = sequencer.record(ext)[2]
                    if cluster >= 0:
                        self._cluster(cluster).reported += 1
                continue
            if known and received_flags[slot]:
                continue  # reported twice: keep the first
            send_s, size, cluster = sequencer.record(ext)
            if known:
                lost -= 1  # reported lost earlier, arrived late after all
            elif cluster >= 0:
                self._cluster(cluster).reported += 1
            stamps[slot] = ext
            received_flags[slot] = True
            newest_send = max(newest_send, send_s)
            packets.append(((base_us + arrival_us) / 1e6, send_s, size, cluster))

        packets.sort()
        self._count_losses(now_s, lost, len(packets))
        if packets:
            self._rtt_s = 0.9 * self._rtt_s + 0.1 * min(max(now_s - newest_send, 0.0), 2.0)
            self._update_acked(packets)
            for arrival_s, send_s, _, _ in packets:
                deltas = self._groups.add(send_s, arrival_s)
                if deltas is not None:
                    self._trend.update(*deltas)
            self.state = self._trend.state
        self._update_rate(now_s)
        self._update_probes(packets, sequencer)

    # --- input bookkeeping ---

    def _unwrap_reference(self, reference_time: int) -> int:
        if self._ref is None:
            self._ref_ext = reference_time
        else:
            self._ref_ext += ref24_diff(reference_time, self._ref)
        self._ref = reference_time
        return self._ref_ext

    def _ensure_ring(self, sequencer: TransportSequencer) -> None:
        size = sequencer.capacity  # same ring size: a slot per packet the sequencer remembers
        if len(self._stamps) != size:
            self._stamps = [-1] * size
            self._received = [False] * size

    def _cluster(self, cluster: int) -> _Cluster:
        state = self._clusters.get(cluster)
        if state is None:
            if len(self._clusters) >= _MAX_CLUSTERS:
                del self._clusters[next(iter(self._clusters))]
            state = self._clusters[cluster] = _Cluster()
        return state

    def _count_losses(self, now_s: float, lost: int, received: int) -> None:
        if lost or received:
            self._loss.append((now_s, lost, lost + received))
            self._loss_lost += lost
            self._loss_total += lost + received
        while self._loss and self._loss[0][0] <= now_s - _LOSS_WINDOW_S:
            _, old_lost, old_total = self._loss.popleft()
            self._loss_lost -= old_lost
            self._loss_total -= old_total
        if self._loss_total > 0:
            self.loss_fraction = min(max(self._loss_lost / self._loss_total, 0.0), 1.0)
        else:
            self.loss_fraction = 0.0

    def _update_acked(self, packets: list[tuple[float, float, int, int]]) -> None:
        newest = packets[-1][0]
        if newest < self._newest_arrival - 3.0:
            # The receiver's clock went back (a new session): old arrivals are meaningless.
            self._acked.clear()
            self._acked_bytes = 0
            self._first_arrival = None
            self._newest_arrival = -math.inf
        if self._first_arrival is None:
            self._first_arrival = packets[0][0]
        for arrival_s, _, size, _ in packets:
            self._acked.append((arrival_s, size))
            self._acked_bytes += size
        self._newest_arrival = max(self._newest_arrival, newest)
        cutoff = self._newest_arrival - _ACKED_WINDOW_S
        while self._acked and self._acked[0][0] <= cutoff:
            self._acked_bytes -= self._acked.popleft()[1]
        window = min(self._newest_arrival - self._first_arrival, _ACKED_WINDOW_S)
        if window >= 0.1:  # shorter spans give wild rates from a handful of packets
            self.acked_bps = self._acked_bytes * 8 / window

    # --- decisions ---

    def _update_rate(self, now_s: float) -> None:
        dt = 0.0 if self._last_update_s is None else min(max(now_s - self._last_update_s, 0), 1)
        self._last_update_s = now_s
        acked = self.acked_bps
        if acked is not None and self._capacity.mean is not None:
            if acked > self._capacity.upper():
                self._capacity.reset()  # more gets through than we believed: the link changed
        if self.state == OVERUSING:
            interval = min(max(self._rtt_s, 0.01), _MAX_DECREASE_INTERVAL_S)
            recent = self.last_decrease_s is not None and now_s - self.last_decrease_s < interval
            # One cut per congestion episode: after it the sender sends less (layers drop), so
            # the delivered rate falls and a second 0.85 x cut would undershoot the link.
            if acked is not None and not recent and not self._episode_cut:
                target = _BETA * acked
                if target < self.estimate_bps:
                    self._set(target)
                    self.last_decrease_s = now_s
                    self._episode_cut = True
                self._capacity.on_overuse(acked)
        elif self.state == NORMAL:
            self._episode_cut = False
        if self.state == NORMAL and acked is not None and self.loss_fraction < _LOW_LOSS:
            self._increase(dt, acked)
        self._loss_based(now_s)

    def _increase(self, dt: float, acked: float) -> None:
        # Application-limited: we have no evidence beyond what was delivered.
        ceiling = 1.5 * acked + 10_000
        estimate = self.estimate_bps
        if estimate >= ceiling or dt <= 0:
            return
        if self._capacity.mean is not None and estimate > self._capacity.upper():
            self._capacity.reset()
        if self._capacity.mean is None:
            step = estimate * (_MULTIPLICATIVE_PER_S**dt - 1)
        else:
            # Near the known ceiling: about one packet per response time.
            frame_bits = estimate / 30
            packet_bits = frame_bits / max(math.ceil(frame_bits / _PACKET_BITS), 1)
            step = max(4000.0, packet_bits / (self._rtt_s + 0.1)) * dt
        self._set(min(estimate + max(step, 1000 * dt), ceiling))

    def _loss_based(self, now_s: float) -> None:
        # Decide on the 1 s window rather than on each feedback's few packets: at 5% loss a
        # 30-packet sample shows over 10% about one time in twelve, which would cut the estimate
        # for nothing; a sustained loss still cuts it every 300 ms.
        if self._last_loss_decision_s is None:
            self._last_loss_decision_s = now_s
        if (
            self._loss_total < _MIN_LOSS_PACKETS
            or now_s - self._last_loss_decision_s < _LOSS_DECISION_S
        ):
            return
        self._last_loss_decision_s = now_s
        if self.loss_fraction > _HIGH_LOSS:
            self._set(self.estimate_bps * (1 - 0.5 * self.loss_fraction))
            self.last_decrease_s = now_s

    def expect_probe(self, cluster: int, target_bps: int) -> None:
        """A probe aimed at ``target_bps``: its result is capped there (the first packets of a
        burst pass a token bucket at line rate and would overstate the link)."""
        self._probe_targets[cluster] = target_bps
        if len(self._probe_targets) > _MAX_CLUSTERS:
            del self._probe_targets[next(iter(self._probe_targets))]

    def _update_probes(
        self, packets: list[tuple[float, float, int, int]], sequencer: TransportSequencer
    ) -> None:
        touched: set[int] = set()
        newest_media_send = -math.inf
        for arrival_s, send_s, size, cluster in packets:
            if cluster >= 0:
                self._cluster(cluster).add(send_s, arrival_s, size)
                touched.add(cluster)
            elif send_s > newest_media_send:
                newest_media_send = send_s
        for cluster in list(self._clusters):
            state = self._clusters[cluster]
            if cluster not in touched and cluster in self._probe_results:
                continue
            if state.received < _PROBE_MIN_PACKETS:
                continue
            # Judge a probe only when it is over (closed by the sender, or plain media sent
            # after it) and feedback has covered nearly all of it: a partial burst overstates.
            over = sequencer.is_closed(cluster) or newest_media_send > state.last_send + 0.02
            if not over or state.reported < _PROBE_FULLY_COVERED * sequencer.cluster_sent(cluster):
                continue
            rate = state.rate()
            if rate is None:
                continue
            target = self._probe_targets.get(cluster)
            if target is not None:
                rate = min(rate, target)
            self._probe_results[cluster] = int(rate)
            if len(self._probe_results) > _MAX_CLUSTERS:
                del self._probe_results[next(iter(self._probe_results))]
            if rate > self.estimate_bps:
                # A probe is a measurement, not a guess: take it at once. Whatever capacity an
                # earlier overuse suggested is out of date.
                self._set(rate)
                self._capacity.reset()

    def _set(self, bps: float) -> None:
        self.estimate_bps = int(min(max(bps, self.min_bps), self.max_bps))
