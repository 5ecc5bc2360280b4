"""The 2 Mbps rule on a busy machine (issue 10): a busy CPU must not read as a slow link.

DownlinkControl (sfu/downlink_control.py) with the pure DownlinkPolicy, driven tick by tick with
time passed in: real Producer/Consumer objects, REMBs and receiver-report loss as the subscriber
connection would feed them. Transport-cc cases use ``EstimatorOutputs``, the four figures the
control reads from SendSideBandwidthEstimator, so each case states exactly what was measured.
"""

from __future__ import annotations

from dataclasses import dataclass

from sfu.consumer import Consumer
from sfu.downlink_control import REMB_STALE_S, DownlinkControl, probe_shows_link_below
from sfu.events import AudioOnlyChanged
from sfu.policy.downlink import RETRY_WITHOUT_PROBES_S, DownlinkPolicy
from sfu.producer import Producer
from sfu.types import Codec, Kind, PauseReason

TICK_S = 0.125
VP8_OUT = Codec("video/VP8", 90000, 100, 101)


class NullWriter:
    def send_rtp(self, packet: bytes) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class EstimatorOutputs:
    estimate_bps: float
    acked_bps: float | None
    last_decrease_s: float | None = None
    loss_fraction: float = 0.0

    def probe_result(self, cluster: int) -> int | None:
        return None


def video(owner: str, rates: tuple[int, ...]) -> Consumer:
    producer = Producer(f"{owner}:1", owner, Kind.VIDEO, "1", lambda p, layer: None,
                        rids=["q", "h", "f"][:len(rates)])
    for layer, rate in zip(producer.layers, rates, strict=True):
        layer.bitrate_bps = rate
        layer.last_packet_s = 1e9  # every layer flows
    consumer = Consumer(producer, "sub", "0", 1000, 1001, NullWriter())
    consumer.configure(VP8_OUT, audio_level_id=0, abs_send_time_id=3)
    producer.consumers.append(consumer)
    return consumer


def audio(owner: str) -> Consumer:
    producer = Producer(f"{owner}:0", owner, Kind.AUDIO, "0", lambda p, layer: None)
    return Consumer(producer, "sub", "1", 2000, 2001, NullWriter())


class Harness:
    def __init__(self) -> None:
        self.clock = Clock()
        self.events: list[AudioOnlyChanged] = []
        self.control = DownlinkControl("sub", DownlinkPolicy(), self.events.append,
                                       lambda packet: True, self.clock)
        self.sent = 0

    def run(self, seconds: float, consumers: list[Consumer], send_bps: float,
            remb: int | None = None, loss: float | None = None) -> None:
        for _ in range(int(seconds / TICK_S)):
            self.clock.now += TICK_S
            self.sent += int(send_bps * TICK_S / 8)
            if remb is not None:
                self.control.on_remb(remb)
            if loss is not None:
                self.control.on_receiver_loss(loss, self.clock.now)
            self.control.tick(consumers, self.sent)

    @property
    def audio_only(self) -> bool:
        return self.control.policy.gate.audio_only


def test_a_low_remb_from_a_busy_aiortc_receiver_is_no_slow_link() -> None:
    """aiortc's REMB for a small stream under CPU load: a few dozen kbit/s while 200 kbit/s
    arrive without loss. Before the fix: audio-only within a second, and never back."""
    h = Harness()
    cam, mic = video("fox", (150_000, 500_000, 1_300_000)), audio("fox")
    h.run(6.0, [cam, mic], 200_000, remb=40_000, loss=0.0)
    assert not h.audio_only and not h.events
    assert cam.target_layer == 0 and cam.pause_reason is None  # video keeps flowing


def test_a_low_remb_with_loss_is_a_slow_link() -> None:
    h = Harness()
    cam, mic = video("fox", (150_000, 500_000, 1_300_000)), audio("fox")
    h.run(2.0, [cam, mic], 200_000, remb=40_000, loss=0.3)
    assert h.audio_only
    assert [e.audio_only for e in h.events] == [True]
    assert cam.pause_reason is PauseReason.BANDWIDTH


def test_a_remb_only_receiver_gets_video_back_without_probes() -> None:
    """Audio-only by a real measurement, then the link recovers: no video flows so no REMB can
    rise; video is retried, and stays since the fresh (application-limited) REMB shows no loss."""
    h = Harness()
    cam, mic = video("fox", (150_000, 500_000, 1_300_000)), audio("fox")
    h.run(2.0, [cam, mic], 200_000, remb=40_000, loss=0.3)
    assert h.audio_only
    h.run(RETRY_WITHOUT_PROBES_S - 3, [cam, mic], 40_000, loss=0.0)  # no REMB while audio-only
    assert h.audio_only
    h.run(4.0, [cam, mic], 40_000, loss=0.0)
    assert not h.audio_only and cam.target_layer == 0
    h.run(6.0, [cam, mic], 200_000, remb=240_000, loss=0.0)
    assert not h.audio_only
    assert [e.audio_only for e in h.events] == [True, False]


def test_a_remb_cut_below_the_threshold_while_receiving_f_still_goes_audio_only() -> None:
    """Not application-limited (f at 1.4 Mbit/s could show 2 Mbit/s): the 900 kbit/s REMB of
    tests/integration/test_simulcast_layers.py is still a measured limit."""
    h = Harness()
    cam, mic = video("pub", (150_000, 500_000, 1_300_000)), audio("pub")
    h.run(3.0, [cam, mic], 1_400_000, remb=10_000_000)
    assert cam.target_layer == 2 and not h.audio_only
    h.run(1.0, [cam, mic], 1_400_000, remb=900_000)
    assert h.audio_only


def transport_cc(h: Harness, outputs: EstimatorOutputs) -> None:
    h.control.estimator = outputs
    h.control.policy.can_probe = False  # no probe packets in this pure run


def test_a_cut_on_a_link_that_delivers_over_the_threshold_keeps_video() -> None:
    """Two f layers (2.7 Mbit/s) on a 2.6 Mbit/s link; under CPU load one 0.5 s window of
    deliveries dips to 2.2 Mbit/s and the 0.85 x cut lands at 1.9 Mbit/s, under the threshold.
    The link delivered 2.5 Mbit/s a second ago: drop a layer, keep video."""
    h = Harness()
    one, two = video("a", (150_000, 500_000, 1_300_000)), video("b", (150_000, 500_000, 1_300_000))
    outputs = EstimatorOutputs(estimate_bps=3_200_000, acked_bps=2_500_000)
    transport_cc(h, outputs)
    h.run(3.0, [one, two], 2_700_000)
    assert (one.target_layer, two.target_layer) == (2, 2)
    outputs.acked_bps = 2_200_000
    outputs.estimate_bps = 1_900_000
    outputs.last_decrease_s = h.clock.now
    h.run(4.0, [one, two], 2_700_000)
    assert not h.audio_only and not h.events
    assert one.target_layer is not None and two.target_layer is not None


def test_a_link_that_delivers_under_the_threshold_goes_audio_only() -> None:
    """The shaped link cut to 1.2 Mbit/s while f (1.45 Mbit/s) is sent: less gets through than
    we send, in every window: a measured limit."""
    h = Harness()
    cam = video("a", (150_000, 500_000, 1_300_000))
    outputs = EstimatorOutputs(estimate_bps=3_200_000, acked_bps=1_450_000)
    transport_cc(h, outputs)
    h.run(3.0, [cam], 1_450_000)
    outputs.acked_bps = 1_150_000
    outputs.estimate_bps = 980_000
    outputs.last_decrease_s = h.clock.now
    h.run(3.0, [cam], 1_450_000)
    assert h.audio_only


def test_a_remb_that_stops_coming_ages_out_to_no_estimate() -> None:
    """A receiver that stops sending REMB (it switched estimators, or nothing carrying
    abs-send-time reaches it) leaves no estimate behind: the last figure is not kept for ever."""
    h = Harness()
    cam, mic = video("fox", (150_000, 500_000, 1_300_000)), audio("fox")
    h.run(2.0, [cam, mic], 1_400_000, remb=10_000_000)
    assert h.control.estimate_bps == 10_000_000
    h.run(REMB_STALE_S - 1.0, [cam, mic], 1_400_000)
    assert h.control.estimate_bps == 10_000_000  # still fresh: REMBs repeat about every second
    h.run(2.0, [cam, mic], 1_400_000)
    assert h.control.estimate_bps is None
    assert cam.target_layer == 0  # no estimate: the lowest layer, as before the first REMB
    assert not h.audio_only


def test_a_probe_just_under_the_threshold_from_a_busy_receiver_is_no_slow_link() -> None:
    """Seen over loopback under load: a 3.25 Mbit/s probe came back at 1.98 Mbit/s (the busy
    receiver stamped the burst's arrivals late). A shaped 1.5 Mbit/s link comes back well under."""
    assert not probe_shows_link_below(3_250_000, 1_980_000, 3_300_000, 2_000_000)
    assert probe_shows_link_below(3_250_000, 1_500_000, 3_300_000, 2_000_000)
    # A probe that was not aimed at the threshold, or not sent that fast, proves nothing.
    assert not probe_shows_link_below(1_500_000, 1_000_000, 1_600_000, 2_000_000)
    assert not probe_shows_link_below(3_250_000, 1_000_000, 1_700_000, 2_000_000)


def test_a_stall_that_leaves_acks_behind_for_a_moment_is_no_slow_link() -> None:
    """Seen at load 12: three loopback Chromiums receiving ~1 Mbit/s went audio-only at once,
    estimates 110-1100 kbit/s. An event-loop stall: for a moment less is acknowledged than was
    sent, the estimator cuts; a second later everything is acknowledged again."""
    h = Harness()
    cam = video("a", (150_000, 500_000, 1_300_000))
    outputs = EstimatorOutputs(estimate_bps=1_200_000, acked_bps=1_000_000)
    transport_cc(h, outputs)
    h.run(3.0, [cam], 1_000_000)
    outputs.acked_bps, outputs.estimate_bps = 110_000, 109_814  # the stall
    outputs.last_decrease_s = h.clock.now
    h.run(0.375, [cam], 1_000_000)
    outputs.acked_bps = 1_000_000  # caught up: everything sent got through
    h.run(4.0, [cam], 1_000_000)
    assert not h.audio_only and not h.events
