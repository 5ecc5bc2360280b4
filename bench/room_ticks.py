"""The periodic work of one room of N, in process: CPU per second of meeting (issue 11).

A room of N real ``Participant``s (real ``Publisher`` and ``Subscriber`` shells, their peer
connections never connect; each publishes simulcast VP8 q/h/f and Opus), every consumer
negotiated, every subscriber with a 20 Mbit/s REMB estimate, 3 speakers. The clock is
simulated: per simulated second each subscriber's bandwidth tick runs 8 times and the room's
maintenance (speakers, last-N, uplink) twice, as the worker's scheduler runs them; only those
calls are timed (``time.process_time``), not the packets that keep layers and levels alive.
Sender reports are not included (with no connection their writer refuses at once).

``--against DIR`` runs the same in a child process on another checkout's ``sfu`` (e.g.
``/work/main``), alternating with this one, so both see the same machine::

    python -m bench.room_ticks --participants 16,32,50 --seconds 20 --pairs 3 --against ../main

No network: it needs no namespace. Figures go to stdout (and ``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SPEAKERS = 3
TICK_S = 0.125  # sfu/subscriber.py TICK_S
MAINTAIN_EVERY = 4  # the room's 0.5 s beat, in ticks


async def measure(participants: int, seconds: float, last_n: int) -> dict[str, Any]:
    """CPU seconds of the periodic calls per simulated second, in a room of ``participants``."""
    from aiortc import RTCPeerConnection

    from sfu.producer import Producer
    from sfu.publisher import Publisher
    from sfu.room import Participant, Room
    from sfu.subscriber import Subscriber
    from sfu.types import Codec, Kind
    from sfu.wire.rtp_packet import RtpView

    vp8 = Codec("video/VP8", 90000, 96, 97)
    opus = Codec("audio/opus", 48000, 111)
    clock = [0.0]

    def now() -> float:
        return clock[0]

    async def no_offer(sdp: str, tracks: object) -> None:
        return None

    room = Room("bench", last_n=last_n)
    people: list[tuple[Participant, Producer, Producer]] = []
    for index in range(participants):
        pid = f"p{index}"
        participant = Participant(pid, pid, lambda event: None)
        publisher = Publisher(pid, RTCPeerConnection(), lambda p: None, now)
        subscriber = Subscriber(pid, RTCPeerConnection(), no_offer, now)
        participant.publisher, participant.subscriber = publisher, subscriber
        room.add(participant)
        audio = Producer(f"{pid}:0", pid, Kind.AUDIO, "0", lambda p, layer: None)
        audio.set_codec(opus)
        audio.audio_level_ext_id = 1
        video = Producer(f"{pid}:1", pid, Kind.VIDEO, "1", lambda p, layer: None,
                         rids=["q", "h", "f"])
        video.set_codec(vp8)
        for mid, producer in (("0", audio), ("1", video)):
            publisher.producers[mid] = producer
            room.producer_ready(producer)
        people.append((participant, audio, video))
    for participant, _audio, _video in people:
        assert participant.subscriber is not None
        for consumer in participant.subscriber.consumers.values():
            assert consumer.producer.codec is not None
            consumer.configure(consumer.producer.codec, 1, 0)
        participant.subscriber.downlink.on_remb(20_000_000)
    seq = [0]

    def feed(t: float) -> None:
        """A packet per layer (layers stay active), a level per voice (3 speak), and each
        second a REMB (a receiver's repeats: an estimate older than 5 s is none)."""
        seq[0] += 1
        if seq[0] % 8 == 1:
            for participant, _a, _v in people:
                if participant.subscriber is not None:
                    participant.subscriber.downlink.on_remb(20_000_000)
        for index, (_participant, audio, video) in enumerate(people):
            level = 10 if index < SPEAKERS else 127
            audio.receive(_packet(RtpView, 111, seq[0], {1: bytes([level])}), audio.layers[0], t)
            for layer, size in zip(video.layers, (2_000, 6_000, 18_000), strict=True):
                layer.count(size, t)  # ~150/500/1,500 kbit/s at 8 calls per second

    ticks = int(seconds / TICK_S)
    cpu = 0.0
    subscribers = [p.subscriber for p, _a, _v in people if p.subscriber is not None]
    for tick in range(ticks):
        clock[0] = 1.0 + tick * TICK_S
        feed(clock[0])
        started = time.process_time()
        for subscriber in subscribers:
            subscriber.tick()
        if tick % MAINTAIN_EVERY == 0:
            room.maintain(clock[0])
        cpu += time.process_time() - started
    for participant, _audio, _video in people:
        assert participant.subscriber is not None and participant.publisher is not None
        await participant.subscriber.close()
        await participant.publisher.close()
    import sfu

    return {"participants": participants, "seconds": seconds, "sfu": sfu.__file__,
            "cpu_ms_per_s": round(1000 * cpu / seconds, 2),
            "pct_of_core": round(100 * cpu / seconds, 2)}


def _packet(view: Any, pt: int, seq: int, extensions: dict[int, bytes]) -> Any:
    """An RTP packet with one-byte header extensions (RFC 8285), parsed."""
    body = b"".join(bytes([(ext_id << 4) | (len(data) - 1)]) + data
                    for ext_id, data in extensions.items())
    body += bytes(-len(body) % 4)
    header = bytes([0x90, pt]) + (seq & 0xFFFF).to_bytes(2, "big") \
        + (960 * seq & 0xFFFFFFFF).to_bytes(4, "big") + (1234).to_bytes(4, "big")
    return view.parse(header + b"\xbe\xde" + (len(body) // 4).to_bytes(2, "big") + body
                      + b"\xfc")


def child(participants: int, seconds: float, last_n: int) -> dict[str, Any]:
    return asyncio.run(measure(participants, seconds, last_n))


def run_in(tree: Path, participants: int, seconds: float, last_n: int) -> dict[str, Any]:
    """This file's ``child`` in a fresh interpreter that imports ``sfu`` from ``tree``."""
    code = ("import json, runpy, sys; m = runpy.run_path(sys.argv[1]); "
            "print(json.dumps(m['child'](int(sys.argv[2]), float(sys.argv[3]), "
            "int(sys.argv[4]))))")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve()),
                          str(participants), str(seconds), str(last_n)],
                         cwd=tree, env=env, capture_output=True, text=True, check=True,
                         timeout=600)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.room_ticks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", default="16,32,50")
    parser.add_argument("--seconds", type=float, default=20.0, help="simulated seconds")
    parser.add_argument("--last-n", type=int, default=9)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another checkout (its sfu/) to compare")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parent.parent
    trees = {"this": here} | ({"other": args.against.resolve()} if args.against else {})
    rows: list[dict[str, Any]] = []
    for n in (int(x) for x in args.participants.split(",")):
        for pair in range(args.pairs):
            for label, tree in (trees.items() if pair % 2 == 0 else
                                reversed(list(trees.items()))):
                with open("/proc/loadavg") as file:
                    load = float(file.read().split()[0])
                row = run_in(tree, n, args.seconds, args.last_n)
                row.update(tree=label, pair=pair, load_average_1m=load)
                rows.append(row)
                print(f"N={n:3d} {label:5s} ({Path(row['sfu']).parent.parent}) pair {pair}: "
                      f"periodic {row['cpu_ms_per_s']:7.2f} "
                      f"ms CPU per s ({row['pct_of_core']:5.2f} % of a core), load {load}",
                      flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
