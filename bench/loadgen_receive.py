"""``python -m bench.loadgen_receive``: what the load generator spends to receive a packet.

The same traffic, read three ways in turn by this process, alternating ``--rounds`` times:

- ``event-loop``: the generator before the receive hub: one datagram endpoint per socket on
  uvloop, ``datagram_received`` -> ``CheapReceiver.on_srtp`` per packet;
- ``hub-recvmmsg`` / ``hub-recvmsg``: ``loadtest.hub.ReceiveHub`` on a 5 ms beat, compiled
  reader or pure Python (``loadtest/rxbatch.py``).

A sender process (pinned to the other core when there are two) sends what ``--subscribers``
synthetic participants receive in a last-N 9 room: per subscriber nine videos (30 frames/s,
two packets a frame) and three voices (50/s), SRTP-protected. Printed per window: this
process's CPU time per packet received (``/proc``-free: ``time.process_time``), packets per
second, the load average. Needs a private network namespace (it only uses 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing
import os
import statistics
import sys
import time
from typing import Any

import pylibsrtp

from loadtest.hub import ReceiveHub
from loadtest.pacer import Pacer
from loadtest.receiver import CheapReceiver, Marker
from loadtest.server import load_average
from loadtest.simulcast import vp8_payloads
from sfu.wire.rtp_packet import pack_header

KEY = bytes(range(30))
VIDEOS, VOICES, FPS, PACKETS_PER_FRAME, VOICE_RATE = 9, 3, 30, 2, 50
MARKER = b"M" * 16
MARKERS: dict[bytes, Marker] = {MARKER: ("h", 0, True)}


def sections() -> tuple[list[list[str]], dict[str, dict[str, str]]]:
    """The m-sections a subscriber learns: SSRC 1000+i video (PT 96), 2000+i audio (PT 111)."""
    out, tracks = [], {}
    for i in range(VIDEOS):
        out.append(["m=video 9 UDP/TLS/RTP/SAVPF 96", f"a=mid:v{i}", "a=rtpmap:96 VP8/90000",
                    f"a=ssrc:{1000 + i} cname:x"])
        tracks[f"v{i}"] = {"participant_id": f"p{i}", "kind": "video"}
    for i in range(VOICES):
        out.append(["m=audio 9 UDP/TLS/RTP/SAVPF 111", f"a=mid:a{i}",
                    "a=rtpmap:111 opus/48000/2", f"a=ssrc:{2000 + i} cname:x"])
        tracks[f"a{i}"] = {"participant_id": f"p{i}", "kind": "audio"}
    return out, tracks


def send_forever(ports: list[int], own_port: int, seconds: float, cpu: int | None) -> None:
    """The sender process: every 5 ms what is due to every port, protected, until ``seconds``."""
    import socket

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", own_port))
    sessions = [pylibsrtp.Session(pylibsrtp.Policy(
        key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)) for _ in ports]
    payloads = vp8_payloads(MARKER + bytes(1900), 1)
    seq = [[0] * (VIDEOS + VOICES) for _ in ports]  # per port and stream
    start = time.monotonic()
    frame = 0
    while time.monotonic() - start < seconds:
        due = start + frame / 100  # 100 ticks a second: video every 3rd tick, audio every 2nd
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        for k, port in enumerate(ports):
            session, address = sessions[k], ("127.0.0.1", port)
            if frame % 3 == 0:
                ts = (frame // 3) * 3000
                for v in range(VIDEOS):
                    for payload in payloads[:PACKETS_PER_FRAME]:
                        sock.sendto(session.protect(pack_header(
                            0x80, 96, seq[k][v] & 0xFFFF, ts, 1000 + v) + payload), address)
                        seq[k][v] += 1
            if frame % 2 == 0:
                for a in range(VOICES):
                    sock.sendto(session.protect(pack_header(
                        0x80, 111, seq[k][VIDEOS + a] & 0xFFFF, frame * 480, 2000 + a)
                        + bytes(80)), address)
                    seq[k][VIDEOS + a] += 1
        frame += 1


class Subscriber:
    """One synthetic subscriber's receiver and receive session."""

    def __init__(self) -> None:
        self.rx = CheapReceiver(MARKERS, lambda _packet: True, rtcp_ssrc=7)
        self.rx.learn(*sections())
        self.srtp = pylibsrtp.Session(pylibsrtp.Policy(
            key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))

    def received(self) -> int:
        return sum(t.total_received for t in self.rx.tracks_by_ssrc.values())


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.subscriber.rx.on_srtp(data, self.subscriber.srtp)


class _Stun(asyncio.DatagramProtocol):
    def datagram_received(self, data: bytes, addr: Any) -> None:
        pass


def _nothing(_now: float) -> None:
    pass


async def window(mode: str, count: int, ports: list[int], sender: tuple[str, int],
                 seconds: float) -> dict[str, Any]:
    """Receive on ``ports`` for ``seconds`` in ``mode``; CPU per packet."""
    import socket

    loop = asyncio.get_running_loop()
    subscribers = [Subscriber() for _ in range(count)]
    closers: list[Any] = []
    pacer: Pacer | None = None
    if mode == "event-loop":
        for subscriber, port in zip(subscribers, ports, strict=True):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", port))
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(_Endpoint, subscriber), sock=sock)
            closers.append(transport)
    else:
        pacer = Pacer(hub=ReceiveHub(native=mode == "hub-recvmmsg"))
        for subscriber, port in zip(subscribers, ports, strict=True):
            transport = pacer.hub.open("127.0.0.1", _Stun(), port)
            srtp = subscriber.srtp

            def state(_srtp: Any = srtp) -> tuple[Any, Any]:
                return _srtp, sender

            pacer.hub.take_srtp(transport.get_extra_info("socket"), subscriber.rx.on_srtp,
                                state)
            closers.append(transport)
        pacer.add(pacer, _nothing)  # the beat runs while anybody is on it
    await asyncio.sleep(1.0)  # warm up
    cpu0, received0, wall0 = time.process_time(), sum(s.received() for s in subscribers), \
        time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, received1, wall1 = time.process_time(), sum(s.received() for s in subscribers), \
        time.monotonic()
    for transport in closers:
        transport.close()
    if pacer is not None:
        await pacer.close()
    await asyncio.sleep(0.05)
    packets = received1 - received0
    return {"mode": mode, "packets_per_s": round(packets / (wall1 - wall0)),
            "cpu_pct": round(100 * (cpu1 - cpu0) / (wall1 - wall0), 1),
            "cpu_us_per_packet": round((cpu1 - cpu0) / packets * 1e6, 2) if packets else None,
            "load_average_1m": load_average()}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    import socket

    probes = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
              for _ in range(args.subscribers + 1)]
    for probe in probes:
        probe.bind(("127.0.0.1", 0))
    *ports, sender_port = [probe.getsockname()[1] for probe in probes]
    for probe in probes:
        probe.close()
    modes = args.modes.split(",")
    total = args.rounds * len(modes) * (args.seconds + 1.5) + 5
    cpus = sorted(os.sched_getaffinity(0))
    sender_cpu = cpus[0] if len(cpus) > 1 else None
    if sender_cpu is not None:
        os.sched_setaffinity(0, set(cpus[1:]))
    sender = multiprocessing.get_context("spawn").Process(
        target=send_forever, args=(ports, sender_port, total, sender_cpu), daemon=True)
    sender.start()
    rows = []
    try:
        for _ in range(args.rounds):
            for mode in modes:
                row = await window(mode, args.subscribers, ports, ("127.0.0.1", sender_port),
                                   args.seconds)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        sender.terminate()
        sender.join(5)
    summary = {mode: statistics.median(r["cpu_us_per_packet"] for r in rows
                                       if r["mode"] == mode and r["cpu_us_per_packet"])
               for mode in modes}
    return {"subscribers": args.subscribers, "rows": rows,
            "median_cpu_us_per_packet": summary}


def main(argv: list[str] | None = None) -> int:
    from loadtest.server import BenchError, require_private_namespace
    from signaling.eventloop import new_event_loop

    parser = argparse.ArgumentParser(prog="python -m bench.loadgen_receive",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="event-loop,hub-recvmmsg,hub-recvmsg",
                        help="comma-separated, of event-loop, hub-recvmmsg, hub-recvmsg")
    args = parser.parse_args(argv)
    try:
        require_private_namespace("run it in a private network namespace (unshare -n)")
    except BenchError as exc:
        print(exc, file=sys.stderr)
        return 2
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        result = runner.run(main_async(args))
    print(json.dumps(result["median_cpu_us_per_packet"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
