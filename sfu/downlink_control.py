"""The shell that runs a subscriber's DownlinkPolicy: estimates in, layers and probes out.

Estimates come from transport-cc feedback (our send-side estimator) when the subscriber
negotiated it, else from its REMB. Every tick the policy decides; this shell applies the layer
targets, tells the client when its audio-only state changes, and paces probe packets (padding
on an RTX stream) so the estimator can learn whether more bandwidth is there.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence

from sfu.consumer import Consumer
from sfu.events import AudioOnlyChanged, Direction, EventSink
from sfu.policy.audio_only import CONGESTED_BELOW_SENT
from sfu.policy.bwe import BandwidthEstimator, SendSideBandwidthEstimator
from sfu.policy.downlink import DownlinkPolicy
from sfu.wire.twcc import TransportFeedback, TransportSequencer

logger = logging.getLogger(__name__)

PROBE_DURATION_S = 0.3
UNUSED_SEQUENCER_SIZE = 1
"""The sequencer of a subscriber without transport-cc: never stamps, so one slot."""
PROBE_TICK_S = 0.01
PROBE_PACKET_BYTES = 255  # the most padding one RTP packet can declare
PROBE_MAX_PACKETS = 2000
SENT_WINDOW_S = 1.0
PROBE_SUCCESS = 0.9
PROBE_BELOW_MARGIN = 0.9
"""A probe alone shows the link below the threshold only when it measured clearly under it: a
receiver on a busy CPU stamps a burst's arrivals late, so a probe of 3.25 Mbit/s over loopback
came back at 1.98 Mbit/s. A real link just under the threshold still shows itself once video
fills it (the estimate falls below what is sent)."""
SRTP_OVERHEAD = 10  # the auth tag the writer's byte count includes
REMB_CONGESTED_BELOW_SENT = 1.2
"""A receiver estimate (REMB) that is not idle climbs toward 1.5x what arrives (libwebrtc's and
aiortc's cap); one that stays under 1.2x is pinned by the link. Only read after REMB_SETTLE_S,
since a fresh REMB estimator starts near the incoming rate."""
REMB_SETTLE_S = 5.0
REMB_DROP = 0.9
REMB_DROP_VALID_S = 2.0
REMB_STALE_S = 5.0
"""A REMB older than this is no estimate any more: receivers repeat theirs at least every second
while media arrives (libwebrtc and aiortc alike), so silence means the receiver stopped
estimating (it switched to transport-cc, or nothing with abs-send-time reaches it)."""
WAS_ABOVE_S = 3.0
PROBE_AFTERMATH_S = 1.5
PROBE_RESULT_VALID_S = 3.0
REMB_CAP = 1.5
REMB_CAP_EXTRA_BPS = 10_000
"""A receiver estimate (REMB) climbs at most to 1.5x what arrives + 10 kbit/s (libwebrtc's and
aiortc's AIMD clamp): while we send less than the threshold / 1.5, no REMB can reach it, so a
REMB under the threshold is application-limited, not a measurement against it."""
REMB_LOSS_CONGESTED = 0.05
"""While application-limited, a REMB under what we send counts only with this much loss reported
(RTCP receiver reports): aiortc stamps arrivals in a Python event loop, so a busy CPU reads as
queueing delay (an overuse cut to 0.85x a throughput counted over a short, bursty window), and
it reports a few dozen kbit/s on a loopback link. A link really slower than what we send loses."""
LOSS_VALID_S = 3.0
ACKED_PEAK_S = 2.5
"""What gets through while congested measures the link: the best delivered rate (0.5 s windows)
over this long. One window alone misreads a busy CPU: a stalled sender (our event loop, or the
publisher's encoder) leaves gaps that read as a slower link (issue 10: audio-only on a 2.6 Mbit/s
link), and once layers drop the delivered rate only shows what we still send."""
LINK_FULL_BELOW_SENT = 0.9
"""The delivered rate is the link's only while less gets through than we send (or packets are
lost); otherwise it is a lower bound, and an overuse signal alone may be a busy CPU's jitter."""
LINK_FULL_LOSS = 0.02
LINK_FULL_FOR_S = 1.0
"""Full means full in every tick of the last second, not at one instant: after an event-loop
stall (ours or the receiver's) the acknowledged rate lags what we sent for a moment, and a
participant receiving 1 Mbit/s then looked like one on a link below 2 Mbit/s (issue 10: three
loopback Chromiums put on audio only at once at load 12). A link that really is too small stays
full; the wait adds at most this long to a cut while we send under the threshold."""


def flowing_layer(consumer: Consumer, layer: int | None, now: float) -> int | None:
    """The granted layer, or while the publisher has it paused, the best one below it that
    flows: a paused layer is switched back on (``wanted_layer`` tells the uplink policy), and
    until its first keyframe the subscriber keeps seeing something."""
    if layer is None:
        return None
    layers = consumer.producer.layers
    for index in range(min(layer, len(layers) - 1), -1, -1):
        if layers[index].active(now):
            return index
    return layer



def probe_shows_link_below(target_bps: int, result_bps: int, achieved_bps: float,
                           threshold_bps: int) -> bool:
    """Does one probe alone show the link below the threshold? Only a probe aimed at the
    threshold or above, actually sent that fast (a loaded event loop paces late), that came back
    clearly under it (``PROBE_BELOW_MARGIN``)."""
    return (target_bps >= threshold_bps and result_bps < PROBE_BELOW_MARGIN * threshold_bps
            and achieved_bps >= threshold_bps)


def _sends_nothing(packet: bytes) -> bool:
    return False


def _tells_nobody(event: object) -> None:
    pass


class DownlinkControl:
    def __init__(
        self,
        participant_id: str,
        policy: DownlinkPolicy,
        notify: EventSink,
        send_rtp: Callable[[bytes], bool],
        loop_time: Callable[[], float],
    ) -> None:
        self.participant_id = participant_id
        self.policy = policy
        self.notify = notify
        self._send_rtp = send_rtp
        self._time = loop_time
        # The full ring (8,192 packets, ~200 KB) once transport-cc is negotiated: a subscriber
        # without it (REMB) never stamps a packet. Consumers read the sequencer when they are
        # configured, which happens after it is replaced (sfu/subscriber_negotiator.py).
        self.sequencer = TransportSequencer(UNUSED_SEQUENCER_SIZE)
        # Send-side estimation once transport-cc is negotiated; until then (or without it) REMB.
        self.estimator: BandwidthEstimator | None = None
        self.remb_bps: int | None = None
        self._remb_at = float("-inf")
        self.probes_sent = 0
        self.audio_only_seconds = 0.0
        self._audio_only_since: float | None = None
        self._cluster = 0
        self._probe_handle: asyncio.TimerHandle | None = None
        self._probe_started = float("-inf")
        self._probe_target = 0
        self._judged = 0
        self.last_probe_bps: int | None = None
        self.sent_bps = 0.0
        self._sent_samples: deque[tuple[float, int]] = deque()
        self._first_tick: float | None = None
        self._probe_bytes = 0  # padding is not media: kept out of the sent rate
        self._probe_achieved_bps = 0.0  # what the last probe really sent (media + padding)
        self._remb_dropped_at = float("-inf")
        self._above_at = float("-inf")  # when the estimate was last at or above the threshold
        self._loss: tuple[float, float] = (0.0, float("-inf"))  # (fraction lost, when reported)
        self._acked: deque[tuple[float, float]] = deque()  # (tick time, estimator's acked_bps)
        self._full: deque[tuple[float, bool]] = deque()  # (tick time, acked < 0.9 x sent)

    # -- estimates ---------------------------------------------------------------------------------

    def enable_transport_cc(self) -> None:
        if self.estimator is None:
            self.sequencer = TransportSequencer()
            self.estimator = SendSideBandwidthEstimator()
            self.policy.can_probe = True

    def on_transport_feedback(self, feedback: TransportFeedback) -> None:
        if self.estimator is not None:
            self.estimator.on_feedback(feedback, self.sequencer, self._time())

    def on_remb(self, bitrate_bps: int) -> None:
        # A receiver's AIMD only decreases on overuse or loss: a drop is congestion evidence.
        now = self._time()
        if self.remb_bps is not None:
            if self.remb_bps >= self.policy.gate.threshold_bps:
                self._above_at = now
            if bitrate_bps < REMB_DROP * self.remb_bps:
                self._remb_dropped_at = now
        self.remb_bps = bitrate_bps
        self._remb_at = now

    def on_receiver_loss(self, fraction_lost: float, now: float) -> None:
        """The worst loss of our streams in one RTCP receiver report (0..1)."""
        loss, at = self._loss
        if now - at >= 0.5 or fraction_lost > loss:  # the worst stream of one report round
            self._loss = (fraction_lost, now)

    def _recent_loss(self, now: float) -> float:
        loss, at = self._loss
        return loss if now - at < LOSS_VALID_S else 0.0

    def recent_loss(self, now: float) -> float | None:
        """The worst loss of the last receiver report, if still fresh (the participant list)."""
        loss, at = self._loss
        return loss if now - at < LOSS_VALID_S else None

    def _note_acked(self, now: float) -> None:
        acked = getattr(self.estimator, "acked_bps", None)
        probing = now - self._probe_started < PROBE_AFTERMATH_S  # padding is no steady rate
        if acked is not None and not probing:
            self._acked.append((now, float(acked)))
            self._full.append((now, acked < LINK_FULL_BELOW_SENT * self.sent_bps))
        while self._acked and now - self._acked[0][0] > ACKED_PEAK_S:
            self._acked.popleft()
        while self._full and now - self._full[0][0] > LINK_FULL_FOR_S:
            self._full.popleft()

    def _link_below(self, threshold: int) -> bool:
        """Is the link measured below ``threshold``: full (less gets through than we send, or
        packets are lost) and under it in every recent window?"""
        acked = getattr(self.estimator, "acked_bps", None)
        loss = getattr(self.estimator, "loss_fraction", 0.0)
        held = (bool(self._full) and all(full for _at, full in self._full)
                and self._full[-1][0] - self._full[0][0] >= 0.75 * LINK_FULL_FOR_S)
        full = acked is None or loss > LINK_FULL_LOSS or (
            acked < LINK_FULL_BELOW_SENT * self.sent_bps and held)
        return full and (not self._acked or max(a for _at, a in self._acked) < threshold)

    def remb_app_limited(self) -> bool:
        """A REMB-only receiver sent so little that its estimate could not reach the threshold
        (docs/architecture.md#the-2-mbps-rule)."""
        return (self.estimator is None and REMB_CAP * self.sent_bps + REMB_CAP_EXTRA_BPS
                < self.policy.gate.threshold_bps)

    @property
    def estimate_bps(self) -> float | None:
        if self.estimator is not None:
            return float(self.estimator.estimate_bps) if self._has_feedback() else None
        if self.remb_bps is None or self._time() - self._remb_at > REMB_STALE_S:
            return None
        return float(self.remb_bps)

    def loss_fraction(self, now: float) -> float:
        """Recent loss of the media we send it (diagnostics, the daily report): the receiver's
        RTCP reports. Not the transport-cc loss, which counts our probes' padding: a link
        near its limit loses padding by design (62 % seen early in a healthy call)."""
        return self._recent_loss(now)

    @property
    def rtt_s(self) -> float | None:
        """Round trip as the send-side estimator sees it (diagnostics); None without one."""
        rtt = getattr(self.estimator, "rtt_s", None)
        return float(rtt) if rtt is not None else None

    def _has_feedback(self) -> bool:
        return self.estimator is not None and self.estimator.acked_bps is not None

    # -- the tick ----------------------------------------------------------------------------------

    def _measure_sent(self, now: float, sent_bytes: int) -> None:
        """Media sent over the last second: shorter windows read a keyframe burst as a rate."""
        samples = self._sent_samples
        samples.append((now, sent_bytes))
        while len(samples) > 2 and now - samples[1][0] >= SENT_WINDOW_S:
            samples.popleft()
        first_at, first_bytes = samples[0]
        if now - first_at >= SENT_WINDOW_S / 2:
            self.sent_bps = (sent_bytes - first_bytes) * 8 / (now - first_at)

    def _probe_verdict(self, now: float) -> int | None:
        """The latest probe's result while it is fresh; judged once for the back-off."""
        if self.estimator is None or now - self._probe_started >= PROBE_RESULT_VALID_S:
            return None
        result = self.estimator.probe_result(self._cluster)
        if result is not None and self._judged != self._cluster:
            self._judged = self._cluster
            self.last_probe_bps = result
            self.policy.probe_outcome(result >= PROBE_SUCCESS * self._probe_target)
            logger.info("%s: probe %d at %d bps -> %d bps (estimate %s, sent %.0f)",
                        self.participant_id, self._cluster, self._probe_target, result,
                        self.estimate_bps, self.sent_bps)
        return result

    def _probe_caused(self, dropped_at: float, threshold: int) -> bool:
        """Our own probe overfilled a link it measured above the threshold: the cut that
        followed says the probe was too big, not that the link is too small."""
        return (0 <= dropped_at - self._probe_started < PROBE_AFTERMATH_S
                and self.last_probe_bps is not None and self.last_probe_bps >= threshold)

    def congested(self, now: float) -> bool:
        """Is the estimate a measured limit? (Tell congestion from idleness:
        docs/architecture.md#the-downlink-tick.)"""
        result = self._probe_verdict(now)  # first: every probe is judged for the back-off
        threshold = self.policy.gate.threshold_bps
        estimate = self.estimate_bps
        if estimate is None:
            return False
        # A drop from above the threshold is a measured cut of the link (REMB only decreases on
        # overuse, our estimator likewise). A dip from an unmeasured start value proves nothing:
        # that is what the probe at the threshold is for; nor does a cut our own probe caused.
        dropped = (self._remb_dropped_at if self.estimator is None
                   else self.estimator.last_decrease_s)
        recent_drop = dropped is not None and now - dropped < REMB_DROP_VALID_S
        # The ignores below: recent_drop implies dropped is not None, which mypy cannot follow.
        if recent_drop and self._probe_caused(dropped, threshold):  # type: ignore[arg-type]
            return False
        if self.remb_app_limited():
            if recent_drop and dropped - self._above_at < WAS_ABOVE_S:  # type: ignore[operator]
                return True  # a measured cut from above the threshold
            return (estimate < CONGESTED_BELOW_SENT * self.sent_bps
                    and self._recent_loss(now) >= REMB_LOSS_CONGESTED)
        if estimate < CONGESTED_BELOW_SENT * self.sent_bps or (
                recent_drop and dropped - self._above_at < WAS_ABOVE_S):  # type: ignore[operator]
            # While congested, what gets through measures the link: a cut that overshot (two
            # top layers on a 2.6 Mbit/s link) still delivers over the threshold.
            return self.estimator is None or self._link_below(threshold)
        if (self.estimator is None and self._first_tick is not None
                and now - self._first_tick >= REMB_SETTLE_S
                and estimate < REMB_CONGESTED_BELOW_SENT * self.sent_bps):
            return True
        return result is not None and probe_shows_link_below(
            self._probe_target, result, self._probe_achieved_bps, threshold)

    def tick(self, consumers: Sequence[Consumer], sent_bytes: int = 0,
             audio_consumers: int | None = None) -> None:
        """``consumers``: those to decide for (``Subscriber.tick_consumers``: only videos);
        ``audio_consumers``: how many audio ones share the budget (None: counted in
        ``consumers``)."""
        now = self._time()
        if self._first_tick is None and sent_bytes:
            self._first_tick = now
        self._measure_sent(now, sent_bytes - self._probe_bytes)
        self._note_acked(now)
        estimate = self.estimate_bps
        if self.estimator is not None and estimate is not None \
                and estimate >= self.policy.gate.threshold_bps:
            self._above_at = now
        decision = self.policy.decide(self.estimate_bps, consumers, now, self.congested(now),
                                      audio_consumers)
        for consumer, (layer, reason) in decision.targets.items():
            consumer.wanted_layer = layer
            consumer.set_target(flowing_layer(consumer, layer, now), reason)
        if decision.audio_only:
            if self._audio_only_since is None:
                self._audio_only_since = now
        elif self._audio_only_since is not None:
            self.audio_only_seconds += now - self._audio_only_since
            self._audio_only_since = None
        if decision.changed:
            logger.info("%s: audio-only %s (%s), estimate %s", self.participant_id,
                        decision.audio_only, decision.reason, self.estimate_bps)
            self.notify(AudioOnlyChanged(
                direction=Direction.DOWN, audio_only=decision.audio_only, reason=decision.reason,
                estimate_bps=int(self.estimate_bps) if self.estimate_bps else None,
                threshold_bps=self.policy.gate.threshold_bps,
            ))
        if decision.probe_bps:
            self.start_probe(decision.probe_bps, consumers)

    def seconds_audio_only(self, now: float) -> float:
        running = now - self._audio_only_since if self._audio_only_since is not None else 0.0
        return self.audio_only_seconds + running

    # -- probing -----------------------------------------------------------------------------------

    def start_probe(self, target_bps: int, consumers: Sequence[Consumer]) -> bool:
        """Probe at ``target_bps`` for ~300 ms: media sent meanwhile counts, padding fills the
        rest (sending the full target on top of media would overload the link we measure)."""
        carrier = next((c for c in consumers if c.producer.is_video and c.codec is not None
                        and c.codec.rtx_payload_type is not None and c.twcc is not None), None)
        if carrier is None or self._probe_handle is not None or self.estimator is None:
            return False
        self._cluster += 1
        cluster = self._cluster
        self._probe_started = self._time()
        self._probe_target = target_bps
        padding_bps = max(0.0, target_bps - self.sent_bps)
        logger.info("%s: probing at %d bps (estimate %s, sent %.0f, padding %.0f)",
                    self.participant_id, target_bps, self.estimate_bps, self.sent_bps,
                    padding_bps)
        self.estimator.expect_probe(cluster, target_bps)
        self.sequencer.open_cluster(cluster)
        total = min(PROBE_MAX_PACKETS,
                    int(padding_bps * PROBE_DURATION_S / 8 / PROBE_PACKET_BYTES))
        ticks = max(1, int(PROBE_DURATION_S / PROBE_TICK_S))
        per_tick = -(-total // ticks)
        loop = asyncio.get_running_loop()
        state = {"left": total, "ticks": ticks}
        media_bps, started, padding_before = self.sent_bps, self._time(), self._probe_bytes
        self._probe_achieved_bps = 0.0

        def burst() -> None:
            self._probe_handle = None
            now = self._time()
            for _ in range(min(per_tick, state["left"])):
                packet = carrier.padding_packet(PROBE_PACKET_BYTES, now, cluster)
                if packet is None or not self._send_rtp(packet):
                    state["left"] = 0
                    break
                state["left"] -= 1
                self.probes_sent += 1
                self._probe_bytes += len(packet) + SRTP_OVERHEAD
            state["ticks"] -= 1
            if state["ticks"] > 0 and not carrier.closed:
                self._probe_handle = loop.call_later(PROBE_TICK_S, burst)
            else:
                self.sequencer.close_cluster(cluster)
                # A loaded event loop stretches the burst: then it proved less than its target.
                elapsed = max(self._time() - started, PROBE_DURATION_S)
                padding = (self._probe_bytes - padding_before) * 8 / elapsed
                self._probe_achieved_bps = media_bps + padding

        burst()
        return True

    def dismantle(self) -> None:
        """Closed with its subscriber: drop the callbacks into it (a cycle through the
        subscriber's bound method), so reference counting frees both (sfu/gctune.py)."""
        self._send_rtp = _sends_nothing
        self.notify = _tells_nobody

    def close(self) -> None:
        if self._probe_handle is not None:
            self._probe_handle.cancel()
            self._probe_handle = None
        self.sequencer.active_cluster = -1
