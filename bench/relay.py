"""``python -m bench.relay``: CPU per packet of the relay's hop against direct forwarding.

In this process, no sockets: the same pre-encoded VP8 (``loadtest.media``, ~1 Mbit/s, 30 fps)
packetized as aiortc sends it, fanned out to N real ``Consumer``s (rewriting, history) whose
writers only count. Three paths, each timed with ``time.process_time`` over the same packets:

- **direct**: what a server does for a local publisher: parse, ``Producer.receive`` -> N consumers;
- **relay hop** (server B): ``UpstreamTracks.on_rtp`` (parse, far SSRC map, NACK bookkeeping)
  -> ``RelayedTrack`` -> ``Producer.receive`` -> N consumers;
- **far side** (server A): the one extra consumer A runs for the relay (what the relay costs A).

SRTP (unprotect on receive, protect on send) and the socket calls are left out: they are the
same per packet for a publisher's connection and the relay's, and for each subscriber's.
``diemcau bench forward`` measures them on the real server. Prints one line per N and, with
``--json``, the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtest.media import load_clip
from sfu.aiortc_hooks import vp8_packetize
from sfu.consumer import Consumer
from sfu.producer import Producer
from sfu.relay import FarLayer, FarTrack, LocalPublication, UpstreamTracks
from sfu.types import Codec, Kind
from sfu.wire.rtp_packet import RtpView

VP8 = Codec("video/VP8", 90000, 96, 97)
FAR_SSRC = 0x5EED


class CountingWriter:
    __slots__ = ("packets",)

    def __init__(self) -> None:
        self.packets = 0

    def send_rtp(self, packet: bytes) -> bool:
        self.packets += 1
        return True


class ListWriter:
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def send_rtp(self, packet: bytes) -> bool:
        self.packets.append(packet)
        return True


def rtp_stream(seconds: float) -> list[tuple[bytes, float]]:
    """(packet, arrival time) of the clip's video, repeated for ``seconds``."""
    clip = load_clip()
    out: list[tuple[bytes, float]] = []
    seq = 0
    frames = int(seconds * 30)
    for index in range(frames):
        frame = clip.video[index % len(clip.video)]
        payloads = vp8_packetize(frame, index & 0x7FFF)
        for number, payload in enumerate(payloads):
            marker = 0x80 if number == len(payloads) - 1 else 0
            header = struct.pack("!BBHII", 0x80, marker | VP8.payload_type, seq & 0xFFFF,
                                 (index * 3000) & 0xFFFFFFFF, FAR_SSRC)
            out.append((header + payload, index / 30))
            seq += 1
    return out


def attach_consumers(producer: Producer, count: int, writer: Any) -> None:
    for n in range(count):
        ssrc = random.getrandbits(32)
        consumer = Consumer(producer, f"s{n}", str(n), ssrc, ssrc ^ 1, writer)
        consumer.configure(VP8, 0, 0)
        consumer.wanted_layer = 0
        consumer.set_target(0)
        producer.attach(consumer)


def timed(packets: list[tuple[bytes, float]], clock: list[float],
          step: Callable[[bytes], None]) -> float:
    """CPU seconds for ``step`` over every packet (the producer's clock follows the stream)."""
    start = time.process_time()
    for data, at in packets:
        clock[0] = at
        step(data)
    return time.process_time() - start


def measure(packets: list[tuple[bytes, float]], subscribers: int) -> dict[str, float]:
    clock = [0.0]
    # direct
    direct_out = CountingWriter()
    direct = Producer("pub:1", "pub", Kind.VIDEO, "1", lambda _p, _l: None)
    direct.set_codec(VP8)
    attach_consumers(direct, subscribers, direct_out)
    layer = direct.layers[0]
    direct_s = timed(packets, clock,
                     lambda data: direct.receive(RtpView.parse(data), layer, clock[0]))
    # far side: the one consumer A runs for the relay
    to_relay = ListWriter()
    far = Producer("chair:1", "chair", Kind.VIDEO, "1", lambda _p, _l: None)
    far.set_codec(VP8)
    attach_consumers(far, 1, to_relay)
    far_layer = far.layers[0]
    far_s = timed(packets, clock,
                  lambda data: far.receive(RtpView.parse(data), far_layer, clock[0]))
    relayed_ssrc = RtpView.parse(to_relay.packets[0]).ssrc
    # relay hop on B
    near_out = CountingWriter()
    producers: dict[str, Producer] = {}
    publication = LocalPublication("b", "relay-x", producers,
                                   lambda p: attach_consumers(p, subscribers, near_out),
                                   lambda: clock[0])
    track = FarTrack("0", Kind.VIDEO, VP8, relayed_ssrc, None, None, participant_id="chair",
                     layers=[FarLayer("", relayed_ssrc, None)])
    upstream = UpstreamTracks(
        lambda t: publication.add_track("chair.0", t.kind, t.codec, lambda _layer: None),
        lambda _ssrc, _lost: None)
    upstream.by_ssrc[relayed_ssrc] = (track, False, 0)
    upstream.listed.append(track)
    relay_packets = [(data, at) for data, (_orig, at) in zip(to_relay.packets, packets,
                                                              strict=False)]
    relay_s = timed(relay_packets, clock, upstream.on_rtp)
    n = len(packets)
    return {
        "subscribers": subscribers,
        "packets": n,
        "direct_us_per_packet": direct_s / n * 1e6,
        "relay_hop_us_per_packet": relay_s / len(relay_packets) * 1e6,
        "far_side_us_per_packet": far_s / n * 1e6,
        "forwarded_direct": direct_out.packets,
        "forwarded_relay": near_out.packets,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__)
    parser.add_argument("--subscribers", default="1,4,16,64",
                        help="comma-separated subscriber counts on the near server")
    parser.add_argument("--seconds", type=float, default=20.0, help="of video per run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    packets = rtp_stream(args.seconds)
    measure(packets[:300], 1)  # warm-up (first calls, allocations)
    results = []
    for count in (int(n) for n in args.subscribers.split(",")):
        # The best of three runs: a busy machine only ever adds time.
        runs = [measure(packets, count) for _ in range(3)]
        result = {key: min(run[key] for run in runs) for key in runs[0]}
        results.append(result)
        print(f"N={count:3d}  direct {result['direct_us_per_packet']:7.1f} us/packet  "
              f"relay hop {result['relay_hop_us_per_packet']:7.1f} us/packet "
              f"(x{result['relay_hop_us_per_packet'] / result['direct_us_per_packet']:.2f})  "
              f"far side +{result['far_side_us_per_packet']:5.1f} us/packet  "
              f"forwarded {result['forwarded_direct']}/{result['forwarded_relay']}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
