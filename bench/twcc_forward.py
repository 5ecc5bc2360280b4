"""CPU per forwarded copy with and without transport-cc, on the native forward path (issue 11).

One ``Producer`` with N consumers, in process: each consumer's ``DatagramWriter`` has a real
libsrtp session and a real UDP socket on 127.0.0.1 (as in tests/unit/test_native_fanout.py),
its own receiving socket drained (read and discarded) between timed stretches. VP8 packets
(~1,000 bytes) go through ``Producer.receive``; only those calls are timed
(``time.process_time``, and user time from ``getrusage``: the kernel's ``sendto`` is in system
time). Three modes, alternated round by round so they see the same machine:

- ``off``: no transport-cc (every copy's extension block is the producer's, shared);
- ``twcc-py``: a ``TransportSequencer`` subclass per consumer, which the C forward path does not
  recognise, so it calls ``TransportSequencer.next`` in Python per copy (the path before the
  sequencer moved to C, sfu/_fanout_twcc.c);
- ``twcc``: a plain ``TransportSequencer``: the C path's own copy of ``next`` where it applies.

``--no-io`` replaces the batch's protect-and-send (``native.send_batch``) by a stand-in that
drops it: what is left is the forward path's own CPU per copy, where transport-cc's share is
not drowned in the kernel's ``sendto`` (nothing reaches the sockets then).

``--fused`` compares two other modes instead, both with a plain ``TransportSequencer``:
``two-calls`` (``native.forward`` queues each copy as a header bytes object and a tuple in a
list, ``native.send_batch`` protects and sends them: DIEMCAU_NO_FUSED_SEND=1) and ``fused``
(``native.forward_send``: each copy written into its send buffer, protected and sent in the
same call, sfu/_fanout_send.c). With ``--no-io`` the fused mode builds each copy in its buffer
and neither protects nor sends it (``native.dry_run``), two-calls drops its batch.

Media moves on loopback, so it runs in a private network namespace with only loopback::

    unshare -n sh -c 'ip link set lo up && exec python -m bench.twcc_forward --subscribers 16,64'

Figures go to stdout (and ``--json``), with the load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import sys
import time
from typing import Any

from loadtest.server import BenchError, require_private_namespace

MODES = ("off", "twcc-py", "twcc")
FUSED_MODES = ("two-calls", "fused")
KEY = bytes(range(30))
NAMESPACE_HELP = (
    "python -m bench.twcc_forward sends on loopback and must run inside a private network "
    "namespace that has only loopback, e.g.:\n"
    "  unshare -n sh -c 'ip link set lo up && exec python -m bench.twcc_forward'"
)
STRETCH = 40
"""Packets fed between two drains of the receiving sockets (40 x 64 copies fit their buffers)."""


def vp8_payload(picture_id: int, tl0: int, key: bool, size: int) -> bytes:
    """A VP8 payload descriptor (15-bit picture id, TL0PICIDX), a frame start and filler."""
    descriptor = bytes([0x90, 0xC0, 0x80 | (picture_id >> 8), picture_id & 0xFF, tl0])
    return descriptor + bytes([0x00 if key else 0x01]) + b"\x9d\x01\x2a" + bytes(size)


def _no_send(batch: list[Any]) -> None:
    """``--no-io``: every copy counts as sent, none is protected or sent."""
    return None


async def one_round(subscribers: int, mode: str, packets: int, first: int,
                    no_io: bool = False) -> dict[str, float]:
    """Feed ``packets`` packets to a fresh fan-out of ``subscribers``; CPU of the receive calls."""
    import pylibsrtp
    from aiortc import RTCPeerConnection

    from sfu import aiortc_hooks, native
    from sfu import producer as producer_module
    from sfu.consumer import Consumer
    from sfu.producer import Producer
    from sfu.types import Codec, Kind
    from sfu.wire.rtp_packet import RtpView
    from sfu.wire.twcc import TransportSequencer

    class PythonSequencer(TransportSequencer):
        """Not the exact class: the C forward path calls its ``next`` in Python."""

        __slots__ = ()

    fused_before = native._FUSED_READY[0]
    if mode in FUSED_MODES:
        native._FUSED_READY[0] = mode == "fused"
        if mode == "fused" and not native.fused_ready():
            raise BenchError("no native forward_send in this build")
    loop = asyncio.get_running_loop()
    pc = RTCPeerConnection()
    dtls = pc.addTransceiver("video", direction="sendonly").sender.transport
    producer = Producer("alice:1", "alice", Kind.VIDEO, "1", lambda p, layer: None)
    producer.set_codec(Codec("video/VP8", 90000, 96, 97))
    sockets: list[socket.socket] = []
    transports: list[Any] = []
    writers: list[aiortc_hooks.DatagramWriter] = []
    try:
        for i in range(subscribers):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            sockets.append(sock)
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
            transports.append(transport)
            writer = aiortc_hooks.DatagramWriter(dtls, use_native=True)
            writer._srtp = pylibsrtp.Session(pylibsrtp.Policy(
                key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
            writer._sendto = transport.sendto
            writer._addr = sock.getsockname()
            writer._native = writer._native_target(transport, writer._addr)
            writers.append(writer)
            consumer = Consumer(producer, f"sub{i}", "0", 5000 + 10 * i, 5001 + 10 * i, writer)
            twcc = (None if mode == "off" else
                    (PythonSequencer if mode == "twcc-py" else TransportSequencer)())
            consumer.configure(Codec("video/VP8", 90000, 100, 101), audio_level_id=0,
                               abs_send_time_id=0, twcc=twcc, twcc_id=5 if twcc else 0)
            producer.attach(consumer)
        stream = [RtpView(b"", 96, int(i % 3 == 2), (first + i) & 0xFFFF, 3000 * (i // 3),
                          0xA1, {}, vp8_payload((20 + i // 3) & 0x7FFF, (i // 3) & 0xFF,
                                                i == 0, 1000), 0)
                  for i in range(packets)]
        layer = producer.layers[0]
        if no_io:
            producer_module.send_batch = _no_send
            native.dry_run(True)
        cpu = user = 0.0
        copies = 0
        for start in range(0, packets, STRETCH):
            before_user = resource.getrusage(resource.RUSAGE_SELF).ru_utime
            before = time.process_time()
            for i in range(start, min(start + STRETCH, packets)):
                producer.receive(stream[i], layer, 1000.0 + i * 0.001)
            cpu += time.process_time() - before
            user += resource.getrusage(resource.RUSAGE_SELF).ru_utime - before_user
            for sock in sockets:
                for _ in range(STRETCH + 8):  # bounded: at most what one stretch sent
                    try:
                        sock.recv(2048)
                    except BlockingIOError:
                        break
                    copies += 1
        sent = sum(w.sent_packets for w in writers)
        return {"cpu_s": cpu, "user_s": user, "packets": float(packets),
                "copies_sent": float(sent), "copies_received": float(copies)}
    finally:
        producer_module.send_batch = native.send_batch
        native.dry_run(False)
        native._FUSED_READY[0] = fused_before
        for writer in writers:
            writer.close()
        for sock in sockets:
            sock.close()
        for transport in transports:
            transport.close()
        await pc.close()


async def run(subscribers: list[int], packets: int, rounds: int,
              no_io: bool = False, modes: tuple[str, ...] = MODES) -> list[dict[str, Any]]:
    from sfu import native
    from sfu.aiortc_hooks import _init_native_forward

    # Importing sfu.aiortc_hooks hands the classes to the C forward path already; asked again
    # here so the check below does not depend on that side effect.
    if not _init_native_forward() or not native.forward_ready():
        raise BenchError("the native forward path is not ready (sfu._fanout not built, or "
                         "DIEMCAU_NO_NATIVE=1): nothing to compare")
    results = []
    per_round = max(STRETCH, packets // rounds)
    for n in subscribers:
        samples: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
        for r in range(rounds):
            order = modes if r % 2 == 0 else modes[::-1]  # alternate which goes first
            for mode in order:
                samples[mode].append(await one_round(n, mode, per_round, 1000 * r, no_io))
        row: dict[str, Any] = {"subscribers": n, "packets_per_mode": per_round * rounds}
        for mode in modes:
            per_copy = [1e6 * s["cpu_s"] / s["copies_sent"] for s in samples[mode]]
            user_copy = [1e6 * s["user_s"] / s["copies_sent"] for s in samples[mode]]
            row[mode] = {
                "us_per_packet": statistics.median(1e6 * s["cpu_s"] / s["packets"]
                                                   for s in samples[mode]),
                "us_per_copy": statistics.median(per_copy),
                "us_per_copy_rounds": [round(v, 3) for v in per_copy],
                "user_us_per_copy": statistics.median(user_copy),
                "copies_sent": sum(s["copies_sent"] for s in samples[mode]),
                "copies_received": sum(s["copies_received"] for s in samples[mode]),
            }
        results.append(row)
    return results


def print_table(results: list[dict[str, Any]], modes: tuple[str, ...] = MODES) -> None:
    print(f"{'N':>4} {'mode':>9} {'us/packet':>10} {'us/copy':>8} {'user us/copy':>13} "
          f"{'sent':>9} {'received':>9}  us/copy per round")
    for row in results:
        for mode in modes:
            m = row[mode]
            print(f"{row['subscribers']:>4} {mode:>9} {m['us_per_packet']:>10.1f} "
                  f"{m['us_per_copy']:>8.2f} {m['user_us_per_copy']:>13.2f} "
                  f"{m['copies_sent']:>9.0f} {m['copies_received']:>9.0f}  "
                  f"{m['us_per_copy_rounds']}")
        if modes == FUSED_MODES:
            saved = row["two-calls"]["us_per_copy"] - row["fused"]["us_per_copy"]
            print(f"{row['subscribers']:>4} forward_send saves {saved:.2f} us per copy (median of "
                  f"rounds; {row['fused']['us_per_copy'] / row['two-calls']['us_per_copy']:.2f}x)")
            continue
        saved = row["twcc-py"]["us_per_copy"] - row["twcc"]["us_per_copy"]
        print(f"{row['subscribers']:>4} transport-cc in C saves {saved:.2f} us per copy "
              f"(median of rounds); transport-cc costs "
              f"{row['twcc']['us_per_copy'] - row['off']['us_per_copy']:.2f} us per copy over off")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.twcc_forward", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", default="16,64", help="fan-out sizes, e.g. 16,64")
    parser.add_argument("--packets", type=int, default=20000,
                        help="incoming packets per mode and fan-out size, over all rounds")
    parser.add_argument("--rounds", type=int, default=4, help="alternated rounds per mode")
    parser.add_argument("--no-io", action="store_true",
                        help="drop the batches instead of protecting and sending them")
    parser.add_argument("--fused", action="store_true",
                        help="compare forward + send_batch with forward_send instead")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    try:
        require_private_namespace(NAMESPACE_HELP)
        subscribers = [int(v) for v in args.subscribers.split(",") if v]
        load_before = os.getloadavg()
        modes = FUSED_MODES if args.fused else MODES
        results = asyncio.run(run(subscribers, args.packets, max(1, args.rounds),
                                  args.no_io, modes))
        load_after = os.getloadavg()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    if args.no_io:
        print("--no-io: batches dropped, not protected or sent (nothing received)")
    print_table(results, modes)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"load_before": load_before, "load_after": load_after,
                       "results": results}, file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
