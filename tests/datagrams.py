"""Attacker's datagrams for the UDP tests: every shape a media port can receive, deterministic.

``garbage(rng)`` yields one datagram of a randomly chosen kind (empty, 1 byte, oversized, random,
STUN-, DTLS-, RTP- and RTCP-shaped with plausible headers and wrong contents); ``UdpSender`` sends
datagrams from an ordinary socket, ``SpoofingSender`` with any source address through a raw
socket (root in a private network namespace); ``python -m tests.datagrams`` runs a barrage in a
process of its own. Used by the end-to-end barrage test and, as a seed
corpus, by the datagram guard's fuzz target.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import sys
import time
import zlib
from collections.abc import Callable

STUN_COOKIE = 0x2112A442
MAX_UDP_PAYLOAD = 65507  # IPv4: 65535 - 20 (IP) - 8 (UDP)


def _random_bytes(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


def stun_shaped(rng: random.Random) -> bytes:
    """A STUN header with the magic cookie and attributes that look right but are not."""
    method_class = rng.choice([0x0001, 0x0101, 0x0111, 0x0011, 0x0003, 0x0004, rng.getrandbits(14)])
    attributes = b""
    for _ in range(rng.randrange(0, 6)):
        kind = rng.choice([0x0006, 0x0008, 0x0024, 0x8029, 0x802A, 0x0025, 0x0020, 0x8028,
                           0x0009, rng.getrandbits(16)])
        if kind == 0x0006:  # USERNAME "a:b", random ufrags or invalid UTF-8
            value = rng.choice([b"%08x:%08x" % (rng.getrandbits(32), rng.getrandbits(32)),
                                _random_bytes(rng, rng.randrange(0, 40))])
        elif kind == 0x0008:  # MESSAGE-INTEGRITY: right length, wrong HMAC (or wrong length)
            value = _random_bytes(rng, rng.choice([20, 20, 20, 0, 7]))
        elif kind in (0x0024, 0x8028, 0x0020):  # PRIORITY / FINGERPRINT / XOR-MAPPED: odd sizes
            value = _random_bytes(rng, rng.choice([4, 8, 2, 1, 0, 3]))
        else:
            value = _random_bytes(rng, rng.randrange(0, 12))
        pad = b"\x00" * (-len(value) % 4)
        attributes += struct.pack("!HH", kind, len(value)) + value + pad
    length = len(attributes) if rng.random() < 0.85 else rng.getrandbits(16)
    cookie = STUN_COOKIE if rng.random() < 0.9 else rng.getrandbits(32)
    message = struct.pack("!HHI", method_class & 0x3FFF, length, cookie)
    message += _random_bytes(rng, 12) + attributes
    if rng.random() < 0.3:  # a FINGERPRINT that matches, so only the integrity check is left
        body = message[:2] + struct.pack("!H", len(attributes) + 8) + message[4:]
        crc = (zlib.crc32(body) ^ 0x5354554E) & 0xFFFFFFFF
        message = body + struct.pack("!HHI", 0x8028, 4, crc)
    return message


def dtls_shaped(rng: random.Random) -> bytes:
    """One or more DTLS records: alerts, handshake garbage, change-cipher-spec, application data,
    DTLS 1.3 unified headers; epoch 0, 1 or random; right or wrong lengths."""
    records = b""
    for _ in range(rng.randrange(1, 4)):
        if rng.random() < 0.2:  # DTLS 1.3 unified header: 001CSLEE
            first = 0x20 | rng.getrandbits(5)
            records += bytes([first]) + _random_bytes(rng, rng.randrange(0, 80))
            continue
        content_type = rng.choice([20, 21, 22, 23, 25, rng.randrange(20, 64)])
        version = rng.choice([0xFEFD, 0xFEFF, rng.getrandbits(16)])
        epoch = rng.choice([0, 0, 1, rng.getrandbits(16)])
        if content_type == 21:  # alert: fatal/warning, close_notify, handshake_failure, ...
            body = bytes([rng.choice([1, 2]), rng.choice([0, 10, 20, 40, 42, 80, 90])])
        elif content_type == 22:  # handshake: ClientHello/Finished-like header, garbage body
            msg = rng.choice([1, 2, 11, 16, 20, rng.getrandbits(8)])
            size = rng.randrange(0, 120)
            body = bytes([msg]) + size.to_bytes(3, "big") + _random_bytes(rng, 2)
            body += b"\x00\x00\x00" + size.to_bytes(3, "big") + _random_bytes(rng, size)
        elif content_type == 20:
            body = b"\x01"
        else:
            body = _random_bytes(rng, rng.randrange(0, 200))
        length = len(body) if rng.random() < 0.8 else rng.getrandbits(16)
        records += struct.pack("!BHH", content_type, version, epoch)
        records += rng.getrandbits(48).to_bytes(6, "big") + struct.pack("!H", length) + body
    return records


def rtp_shaped(rng: random.Random) -> bytes:
    """V=2 RTP (random payload type, SSRC, sequence) or RTCP (PT 192-207), random tail."""
    if rng.random() < 0.5:
        first = 0x80 | rng.getrandbits(6)
        second = rng.getrandbits(8) & 0x7F | (0x80 if rng.random() < 0.5 else 0)
        header = struct.pack("!BBHII", first, second, rng.getrandbits(16), rng.getrandbits(32),
                             rng.getrandbits(32))
        return header + _random_bytes(rng, rng.randrange(0, 1200))
    first = 0x80 | rng.getrandbits(5)
    packet_type = rng.randrange(192, 208)
    words = rng.randrange(0, 40)
    body = struct.pack("!I", rng.getrandbits(32)) + _random_bytes(rng, 4 * words)
    return struct.pack("!BBH", first, packet_type, words) + body + _random_bytes(rng, 14)


KINDS: dict[str, Callable[[random.Random], bytes]] = {
    "empty": lambda rng: b"",
    "one_byte": lambda rng: bytes([rng.getrandbits(8)]),
    "oversized": lambda rng: _random_bytes(rng, rng.randrange(60000, MAX_UDP_PAYLOAD + 1)),
    "random": lambda rng: _random_bytes(rng, rng.randrange(2, 1500)),
    "stun": stun_shaped,
    "dtls": dtls_shaped,
    "rtp": rtp_shaped,
}
# Oversized datagrams are few (they cost the sender and the kernel most); the rest even.
WEIGHTS = {"empty": 6, "one_byte": 6, "oversized": 1, "random": 15, "stun": 24, "dtls": 24,
           "rtp": 24}


def garbage(rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
    return kind, KINDS[kind](rng)


class UdpSender:
    """Sends from an ordinary socket on 127.0.0.1 (an address the server has never seen)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)

    def send(self, data: bytes, dest: tuple[str, int]) -> bool:
        try:
            self.sock.sendto(data, dest)
        except OSError:  # a full buffer: this datagram is lost, like any other
            return False
        return True

    def close(self) -> None:
        self.sock.close()


class SpoofingSender:
    """Sends UDP with any source address: a raw IPv4 socket builds the IP and UDP headers.

    Needs CAP_NET_RAW (root in the test's private network namespace). The UDP checksum is left
    0 ("none", allowed over IPv4) and the kernel fills in the IP checksum and length.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.sock.setblocking(False)
        self._ident = 0

    def send(self, data: bytes, dest: tuple[str, int], source: tuple[str, int]) -> bool:
        self._ident = (self._ident + 1) & 0xFFFF
        udp = struct.pack("!HHHH", source[1], dest[1], 8 + len(data), 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + len(data), self._ident, 0, 64,
                         socket.IPPROTO_UDP, 0, socket.inet_aton(source[0]),
                         socket.inet_aton(dest[0]))
        try:
            self.sock.sendto(ip + udp + data, (dest[0], 0))
        except OSError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()


def barrage(
    targets: list[tuple[tuple[str, int], tuple[str, int]]], count: int, seed: int,
    batch: int, pause_s: float,
) -> dict[str, int]:
    """Send ``count`` garbage datagrams round-robin to the (server port, own address) targets,
    every other one spoofed from that own address; ``batch`` back to back, then ``pause_s``.
    Returns the datagrams made per kind, plus "sent" (left the sockets) and "seconds"."""
    rng = random.Random(seed)
    plain, spoofer = UdpSender(), SpoofingSender()
    made: dict[str, int] = {}
    sent = 0
    started = time.monotonic()
    try:
        for index in range(count):
            kind, data = garbage(rng)
            made[kind] = made.get(kind, 0) + 1
            dest, own = targets[index % len(targets)]
            if index % 2:
                sent += spoofer.send(data, dest, own)
            else:
                sent += plain.send(data, dest)
            if index % batch == batch - 1:
                time.sleep(pause_s)
    finally:
        plain.close()
        spoofer.close()
    return {**made, "sent": sent, "seconds": round(time.monotonic() - started, 2)}


def main(argv: list[str]) -> None:
    """python -m tests.datagrams COUNT SEED BATCH PAUSE_S DEST_HOST:PORT/OWN_HOST:PORT ...
    (a separate process, like a real attacker: the participants' loop is not the sender's)."""
    count, seed, batch, pause_s = int(argv[0]), int(argv[1]), int(argv[2]), float(argv[3])
    targets = []
    for spec in argv[4:]:
        dest, own = (part.rsplit(":", 1) for part in spec.split("/"))
        targets.append(((dest[0], int(dest[1])), (own[0], int(own[1]))))
    print(json.dumps(barrage(targets, count, seed, batch, pause_s)))


if __name__ == "__main__":
    main(sys.argv[1:])
