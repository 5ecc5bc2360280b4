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
from array import array
from collections import deque
from typing import Protocol

from sfu.policy.delay_trend import NORMAL, OVERUSING, _InterArrival, _Trendline
from sfu.wire.seqmath import ref24_diff
from sfu.wire.twcc import REFERENCE_TIME_US, TransportFeedback, TransportSequencer

__all__ = ["BandwidthEstimator", "SendSideBandwidthEstimator"]

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
        # Typed arrays: a list would hold an int object (28 bytes) per slot once filled.
        self._stamps: array[int] = array("q")
        self._received: array[int] = array("b")
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
            self._stamps = array("q", [-1]) * size
            self._received = array("b", bytes(size))

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
