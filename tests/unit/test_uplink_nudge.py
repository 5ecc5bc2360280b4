"""A wanted simulcast layer the browser never sends (its own estimate keeps it off: issue 10) is
switched off and on again, so libwebrtc probes; with a doubling wait, and never while it flows."""

from __future__ import annotations

from sfu.consumer import Consumer
from sfu.policy.uplink import NUDGE_AFTER_S, NUDGE_OFF_S, UplinkPolicy
from sfu.producer import Producer
from sfu.types import Codec, Kind

VP8_OUT = Codec("video/VP8", 90000, 100, 101)
STEP_S = 0.5  # Room.maintain's period


class NullWriter:
    def send_rtp(self, packet: bytes) -> bool:
        return True


def simulcast_with_subscriber() -> tuple[Producer, Consumer]:
    producer = Producer("a:1", "a", Kind.VIDEO, "1", lambda p, layer: None, rids=["q", "h", "f"])
    consumer = Consumer(producer, "b", "0", 1000, 1001, NullWriter())
    consumer.configure(VP8_OUT, audio_level_id=0, abs_send_time_id=3)
    producer.consumers.append(consumer)
    consumer.set_target(0)
    consumer.wanted_layer = 2  # the allocator grants f; only q arrives
    return producer, consumer


def run(policy: UplinkPolicy, producer: Producer, start: float, seconds: float,
        flowing: tuple[int, ...]) -> list[tuple[float, bool]]:
    """(time, f switched on) every maintain step, with the given layers sending packets."""
    out = []
    now = start
    while now < start + seconds:
        for index in flowing:
            producer.layers[index].last_packet_s = now
        out.append((now, policy.active_layers(producer, now)["f"]))
        now += STEP_S
    return out


def test_a_wanted_layer_that_never_comes_is_switched_off_and_on_again() -> None:
    producer, _consumer = simulcast_with_subscriber()
    policy = UplinkPolicy()
    seen = run(policy, producer, 0.0, 40.0, flowing=(0,))
    offs = [t for t, on in seen if not on]
    assert offs, "never nudged"
    first = offs[0]
    assert NUDGE_AFTER_S <= first <= NUDGE_AFTER_S + STEP_S
    assert all(t < first + NUDGE_OFF_S for t in offs if t < first + 2 * NUDGE_AFTER_S)
    later = [t for t in offs if t >= first + NUDGE_OFF_S]
    assert later and later[0] >= first + NUDGE_OFF_S + 2 * NUDGE_AFTER_S - STEP_S  # doubled


def test_a_flowing_layer_or_a_silent_camera_is_left_alone() -> None:
    producer, _consumer = simulcast_with_subscriber()
    policy = UplinkPolicy()
    assert all(on for _t, on in run(policy, producer, 0.0, 30.0, flowing=(0, 1, 2)))
    quiet, _c = simulcast_with_subscriber()
    assert all(on for _t, on in run(UplinkPolicy(), quiet, 0.0, 30.0, flowing=()))
