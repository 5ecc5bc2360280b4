"""``python -m bench.relay_layers``: what carrying every simulcast layer over the relay costs.

In this process, real ``Producer``s and ``Consumer``s (rewriting, history), writers that only
count, no SRTP or sockets except where named. The publisher's stream: the three pre-encoded
layers q/h/f (``loadtest.media.load_simulcast_clips``: 320x180, 640x360, 1280x720), one frame of
each every 1/30 s, packetized as aiortc does. Figures are CPU microseconds per second of that
stream (``time.process_time``), so paths that see different packet counts compare fairly. The
paths alternate inside each round, the best of the rounds is kept (a busy machine only ever
adds time), and the load average is printed with them.

- **A: the relay's consumers**: what A spends on its relay subscriber. ``top only``: one consumer
  held on f (before: A forwarded its best layer); ``every layer``: ``LayerStreams``, one held
  consumer per layer (``sfu/layer_streams.py``).
- **B: direct**: a local simulcast publisher with N subscribers spread over the layers (half on
  f, a quarter each on h and q); **B: relay hop**: the same N subscribers behind
  ``UpstreamTracks`` -> ``RelayedTrack`` with the three layers, fed what A's per-layer consumers
  sent.
- **B: worker hop**: the relay hop with the room in a worker process (``--workers N``): each
  relayed packet framed as ``RelayRtp``, through a real socketpair, decoded, parsed and fed by
  ``RelayHost`` (both processes' CPU added up), against the in-process hop.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.relay import CountingWriter, ListWriter
from loadtest.media import FPS, load_simulcast_clips
from loadtest.simulcast import vp8_payloads
from sfu.consumer import Consumer
from sfu.layer_streams import LayerStreams
from sfu.plane_relay import RelayHost, RemotePublication
from sfu.plane_wire import RelayCall, RelayPublish, RelayRtp, RelayTrack, decode_call, frame
from sfu.producer import Producer
from sfu.relay import FarLayer, FarTrack, LocalPublication, UpstreamTracks
from sfu.types import Codec, Kind
from sfu.wire.rtp_packet import RtpView

VP8 = Codec("video/VP8", 90000, 96, 97)
RIDS = ("q", "h", "f")

Packet = tuple[bytes, int, float]  # (RTP, layer index, arrival)


def simulcast_stream(seconds: float) -> list[Packet]:
    """The publisher's three layers, interleaved frame by frame as a browser sends them."""
    clips = load_simulcast_clips()
    ssrcs = [0x5EED0 + index for index in range(len(clips))]
    seqs = [random.randrange(1 << 15) for _ in clips]
    out: list[Packet] = []
    for index in range(int(seconds * FPS)):
        for layer, clip in enumerate(clips):
            payloads = vp8_payloads(clip.frames[index % len(clip.frames)], index & 0x7FFF)
            for number, payload in enumerate(payloads):
                marker = 0x80 if number == len(payloads) - 1 else 0
                header = struct.pack("!BBHII", 0x80, marker | VP8.payload_type,
                                     seqs[layer] & 0xFFFF, (index * 3000) & 0xFFFFFFFF,
                                     ssrcs[layer])
                seqs[layer] += 1
                out.append((header + payload, layer, index / FPS))
    return out


def simulcast_producer(name: str) -> Producer:
    producer = Producer(f"{name}:1", name, Kind.VIDEO, "1", lambda _p, _l: None, list(RIDS))
    producer.set_codec(VP8)
    return producer


def subscribers_on_layers(producer: Producer, count: int, writer: Any) -> None:
    """Half on f, a quarter each on h and q (at least one on f)."""
    for n in range(count):
        layer = 2 if n % 2 == 0 else (1 if n % 4 == 1 else 0)
        ssrc = random.getrandbits(32)
        consumer = Consumer(producer, f"s{n}", str(n), ssrc, ssrc ^ 1, writer)
        consumer.configure(VP8, 0, 0)
        consumer.wanted_layer = layer
        consumer.set_target(layer)
        producer.attach(consumer)


def cpu(packets: list[Packet], clock: list[float], step: Callable[[bytes, int], None]) -> float:
    start = time.process_time()
    for data, layer, at in packets:
        clock[0] = at
        step(data, layer)
    return time.process_time() - start


def far_side(packets: list[Packet], every_layer: bool) -> tuple[float, list[tuple[bytes, int]]]:
    """A's producer feeding only its relay consumers: CPU, and what the relay receives."""
    clock = [0.0]
    producer = simulcast_producer("chair")
    out = ListWriter()
    primary = Consumer(producer, "relay", "1", 0xF0, 0xF1, out)
    producer.attach(primary)
    consumers = [primary]
    if every_layer:
        consumers = [*LayerStreams("relay", {}).add(producer, primary, out), primary]
    else:
        primary.wanted_layer = 2
        primary.set_target(2)
    for consumer in consumers:
        consumer.configure(VP8, 0, 0)
    layer_of = {c.ssrc: index for index, c in enumerate(consumers)} if every_layer else {0xF0: 0}
    seconds = cpu(packets, clock, lambda data, layer: producer.receive(
        RtpView.parse(data), producer.layers[layer], clock[0]))
    sent = [(data, layer_of[RtpView.parse(data).ssrc]) for data in out.packets]
    return seconds, sent


def near_side(packets: list[Packet], relayed: list[tuple[bytes, int]], subscribers: int,
              ) -> dict[str, float]:
    """B: direct vs the relay hop vs the relay hop through a worker socket (CPU seconds)."""
    clock = [0.0]
    direct = simulcast_producer("pub")
    direct_out = CountingWriter()
    subscribers_on_layers(direct, subscribers, direct_out)
    direct_s = cpu(packets, clock, lambda data, layer: direct.receive(
        RtpView.parse(data), direct.layers[layer], clock[0]))

    ssrcs = sorted({RtpView.parse(data).ssrc: layer for data, layer in relayed}.items(),
                   key=lambda item: item[1])
    relay_in = [(data, layer, at) for (data, layer), (_d, _l, at)
                in zip(relayed, packets, strict=False)]

    def hop(publication_of: Callable[[], Any]) -> tuple[float, int]:
        near_out = CountingWriter()
        publication = publication_of()
        track = FarTrack("1", Kind.VIDEO, VP8, ssrcs[-1][0], None, None, participant_id="chair",
                         layers=[FarLayer(rid, ssrc, None) for rid, (ssrc, _layer)
                                 in zip(RIDS, ssrcs, strict=True)])
        upstream = UpstreamTracks(lambda t: publication.add_track(
            "chair.1", t.kind, t.codec, lambda _layer: None, None, t.rids),
            lambda _ssrc, _lost: None)
        for index, (ssrc, _layer) in enumerate(ssrcs):
            upstream.by_ssrc[ssrc] = (track, False, index)
        upstream.listed.append(track)
        attach[:] = [lambda producer: subscribers_on_layers(producer, subscribers, near_out)]
        seconds = cpu(relay_in, clock, lambda data, _layer: upstream.on_rtp(data))
        return seconds, near_out.packets

    attach: list[Callable[[Producer], None]] = []

    def ready(producer: Producer) -> None:
        attach[0](producer)

    def in_process() -> LocalPublication:
        return LocalPublication("b", "relay-x-1", {}, ready, lambda: clock[0])

    relay_s, relay_sent = hop(in_process)
    with WorkerPipe(lambda: clock[0], ready) as pipe:
        worker_s, worker_sent = hop(pipe.publication)
    return {"direct_s": direct_s, "relay_hop_s": relay_s, "worker_hop_s": worker_s,
            "forwarded_direct": direct_out.packets, "forwarded_relay": relay_sent,
            "forwarded_worker": worker_sent}


class WorkerPipe:
    """The relay's calls through a real socketpair into a ``RelayHost`` (both ends here; the
    receiving end is read after each packet, so the CPU of both processes is counted)."""

    def __init__(self, clock: Callable[[], float], ready: Callable[[Producer], None]) -> None:
        self.host = RelayHost(lambda room, pid, _name, _sink: LocalPublication(
            room, pid, {}, ready, clock), lambda _report: None)
        self.out, self.into = socket.socketpair()

    def __enter__(self) -> WorkerPipe:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.out.close()
        self.into.close()

    def publication(self) -> RemotePublication:
        self.host.publish(RelayPublish("b", "relay-x-1", "Chair (relay)"), lambda _event: None)
        return RemotePublication("b", "relay-x-1", self._send)

    def _send(self, call: RelayCall) -> None:
        data = frame(call)
        self.out.sendall(data)
        received = b""
        while len(received) < len(data):
            received += self.into.recv(len(data) - len(received))
        decoded = decode_call(received[4:])
        if isinstance(decoded, RelayRtp):
            self.host.rtp(decoded)
        elif isinstance(decoded, RelayTrack):
            self.host.handle(decoded)


def per_second(seconds: float, media_s: float) -> float:
    return seconds / media_s * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay_layers", description=__doc__)
    parser.add_argument("--subscribers", default="4,16", help="comma-separated counts on B")
    parser.add_argument("--seconds", type=float, default=10.0, help="of video per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    packets = simulcast_stream(args.seconds)
    media_s = args.seconds
    far_side(packets[:300], True)  # warm-up
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {len(packets)} packets of "
          f"q/h/f in {media_s:.0f} s of video")
    results: list[dict[str, float]] = []
    for count in (int(n) for n in args.subscribers.split(",")):
        rounds = []
        for _ in range(args.rounds):  # the paths alternate within each round
            top_s, top_sent = far_side(packets, False)
            every_s, sent = far_side(packets, True)
            near = near_side(packets, sent, count)
            rounds.append({"top_only_s": top_s, "every_layer_s": every_s, **near,
                           "relayed_packets": len(sent),
                           "top_only_kbps": sum(len(d) for d, _ in top_sent) * 8 / media_s / 1e3,
                           "every_layer_kbps": sum(len(d) for d, _ in sent) * 8 / media_s / 1e3})
        best = {key: min(r[key] for r in rounds) for key in rounds[0]}
        row = {"subscribers": count, "publisher_packets": len(packets),
               "load_average": os.getloadavg()[0],
               **{key.replace("_s", "_us_per_media_s") if key.endswith("_s") else key:
                  per_second(value, media_s) if key.endswith("_s") else value
                  for key, value in best.items()}}
        results.append(row)
        socket_us = ((row["worker_hop_us_per_media_s"] - row["relay_hop_us_per_media_s"])
                     * media_s / row["relayed_packets"])
        print(f"N={count:3d} load {row['load_average']:.2f}  "
              f"A relay consumers: top only {row['top_only_us_per_media_s']:7.0f} us/s, "
              f"every layer {row['every_layer_us_per_media_s']:7.0f} us/s "
              f"({row['top_only_kbps']:.0f} -> {row['every_layer_kbps']:.0f} kbit/s)  |  "
              f"B direct {row['direct_us_per_media_s']:7.0f} us/s, relay hop "
              f"{row['relay_hop_us_per_media_s']:7.0f} us/s "
              f"(x{row['relay_hop_us_per_media_s'] / row['direct_us_per_media_s']:.2f}), "
              f"worker hop {row['worker_hop_us_per_media_s']:7.0f} us/s "
              f"(+{socket_us:.1f} us/packet)  "
              f"forwarded {row['forwarded_direct']:.0f}/{row['forwarded_relay']:.0f}/"
              f"{row['forwarded_worker']:.0f}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
