"""``native.receive`` (sfu/_fanout.c): one SRTP datagram's kernel arrival time and libsrtp
unprotect in one C call, on the direct receive path of ``GuardedStunProtocol``.

Every byte reaching it is an attacker's: truncated, oversized, forged and random datagrams (a
corpus generated here with a fixed seed, plus Janus' public RTP fuzzing corpus when
DIEMCAU_PUBLIC_CORPORA names it) must give None, never an exception or a crash, and a genuine
packet exactly what pylibsrtp gives.
"""

from __future__ import annotations

import os
import random
import socket
import struct
from pathlib import Path

import pylibsrtp
import pytest

from sfu import native, native_srtp
from sfu.arrival_stamps import kernel_arrival_ms
from sfu.wire.rtp_packet import RtpView

pytestmark = pytest.mark.skipif(not native_srtp.NATIVE_UNPROTECT,
                                reason="sfu._fanout not built (pip install -e .)")

KEY = bytes(range(30))


def sessions() -> tuple[pylibsrtp.Session, pylibsrtp.Session, int]:
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    rx = pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    ctx = native_srtp.srtp_context_address(rx)
    assert ctx is not None
    return tx, rx, ctx


def rtp(seq: int, payload: bytes, extension: bytes = b"") -> bytes:
    first = 0x90 if extension else 0x80
    return struct.pack("!BBHII", first, 96, seq, seq * 3000, 0x1234) + extension + payload


def test_genuine_packets_come_out_as_pylibsrtp_gives_them() -> None:
    tx, rx, ctx = sessions()
    _tx2, rx2, _ctx2 = sessions()
    block = b"\xbe\xde\x00\x01\x10\xff\x00\x00"  # one-byte extension block
    for seq, size in enumerate((0, 1, 100, 1000, 1300)):
        packet = rtp(seq, bytes([seq]) * size, block if seq % 2 else b"")
        protected = tx.protect(packet)
        plain, arrival = native.receive(ctx, -1, protected)
        assert plain == packet == rx2.unprotect(protected)
        assert RtpView.parse(plain).sequence_number == seq
        assert arrival == -1  # no socket given
    assert native.receive(ctx, -1, protected) == (None, -1)  # a replay is refused


def test_hostile_datagrams_give_none_and_never_raise() -> None:
    tx, _rx, ctx = sessions()
    rng = random.Random(1107)
    genuine = tx.protect(rtp(1, bytes(900)))
    corpus = [b"", b"\x80", genuine[:11], b"\x80" * 1501, b"\xff" * 65000]
    corpus += [genuine[:cut] for cut in range(0, len(genuine), 7)]  # every kind of truncation
    for _ in range(300):
        size = rng.choice((rng.randrange(0, 40), rng.randrange(0, 1600)))
        data = bytearray(rng.randbytes(size))
        if data and rng.random() < 0.7:
            data[0] = 0x80 | (data[0] & 0x3F)  # RTP-shaped: version 2, any flags
        corpus.append(bytes(data))
    flipped = bytearray(genuine)
    flipped[-1] ^= 1
    corpus.append(bytes(flipped))  # a forged tag
    extension = bytearray(tx.protect(rtp(2, bytes(50), b"\xbe\xde\x00\x01" + bytes(4))))
    extension[14:16] = b"\xff\xff"
    corpus.append(bytes(extension))  # an extension length far beyond the packet
    public = os.environ.get("DIEMCAU_PUBLIC_CORPORA")
    if public:
        corpus += [p.read_bytes() for p in sorted(
            Path(public, "fuzzers", "corpora", "rtp_fuzzer").glob("*"))[:2000]
            if p.is_file()]
    for data in corpus:
        assert native.receive(ctx, -1, data)[0] is None
    # The session still works after all that.
    packet = rtp(3, b"after")
    assert native.receive(ctx, -1, tx.protect(packet))[0] == packet
    # Hostile headers (CSRC counts, extension lengths, padding) that a sender protected: the
    # native path gives exactly what pylibsrtp gives (libsrtp parses them in both).
    tx2, rx2, ctx2 = sessions()
    _tx3, rx3, _ctx3 = sessions()
    compared = 0
    for data in corpus:
        try:
            protected = tx2.protect(data)
        except (pylibsrtp.Error, ValueError):
            continue
        try:
            expected: bytes | None = rx3.unprotect(protected)
        except (pylibsrtp.Error, ValueError):
            expected = None
        assert native.receive(ctx2, -1, protected)[0] == expected
        compared += 1
    assert compared > 50


def test_arrival_time_is_the_kernels_and_a_bad_descriptor_gives_minus_one() -> None:
    tx, _rx, ctx = sessions()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.bind(("127.0.0.1", 0))
        sender.sendto(tx.protect(rtp(5, b"x" * 20)), receiver.getsockname())
        data = receiver.recv(2048)
        expected = kernel_arrival_ms(receiver)
        plain, arrival = native.receive(ctx, receiver.fileno(), data)
        assert plain is not None and expected is not None and arrival == expected
    finally:
        receiver.close()
        sender.close()
    assert native.receive(ctx, 1 << 20, b"\x80" * 20) == (None, -1)


def test_bad_arguments_raise_type_errors_not_crashes() -> None:
    _tx, _rx, ctx = sessions()
    with pytest.raises(TypeError):
        native.receive(ctx, -1, "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        native.receive(0, -1, b"\x80" * 20)  # no context
