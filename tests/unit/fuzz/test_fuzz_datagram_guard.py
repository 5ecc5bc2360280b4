"""Fuzz target: the media-port guard (``sfu.wire.demux``): RFC 7983 demultiplexing, DTLS record
framing and the SRTP/SRTCP precheck, on random bytes, on the attacker's datagrams of the barrage
test (tests/datagrams.py) and on seeded mutations of real DTLS (an in-memory pyOpenSSL handshake, as
aiortc runs it) and real SRTP/SRTCP (pylibsrtp).

Properties: the guard never raises; what it accepts is never empty, never over 1,500 bytes, of
the kind its first byte says, and (unless STUN) from a source that authenticated; once the
handshake is done no plaintext DTLS record and before it no SRTP gets through; and whatever DTLS
it accepts after the handshake leaves a connected OpenSSL session working, exactly as aiortc
feeds it (``bio_write`` then ``recv``, errors swallowed).
"""

from __future__ import annotations

import datetime
import random
import struct
from collections import Counter
from functools import cache

import pylibsrtp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from OpenSSL import SSL

from sfu.wire.demux import (
    MAX_DATAGRAM,
    DatagramDrop,
    DatagramKind,
    IceCredentials,
    MediaPortGuard,
    check_dtls,
)
from tests.datagrams import garbage
from tests.unit.fuzz.helpers import FUZZ, MUTATIONS, mutants, valid_rtcp_packets, valid_rtp_packets

CREDENTIALS = IceCredentials("srvU", "server-password-0123456789", "cliU", "client-password-9876")
PEER = ("127.0.0.1", 40000)
STRANGER = ("127.0.0.1", 40001)


# -- real material ------------------------------------------------------------------------------


def _context() -> SSL.Context:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "diemcau-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    context = SSL.Context(SSL.DTLS_METHOD)
    context.use_certificate(cert)
    context.use_privatekey(key)
    context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *_args: True)
    context.set_tlsext_use_srtp(b"SRTP_AES128_CM_SHA1_80")
    return context


def _pump(source: SSL.Connection, sink: SSL.Connection | None) -> list[bytes]:
    out = []
    while True:
        try:
            data = source.bio_read(65536)
        except SSL.WantReadError:
            break
        if not data:
            break
        out.append(data)
        if sink is not None:
            sink.bio_write(data)
    return out


def connected_pair() -> tuple[SSL.Connection, SSL.Connection, list[bytes]]:
    """(client, server, the handshake's datagrams) of a completed in-memory DTLS handshake."""
    client, server = SSL.Connection(_context()), SSL.Connection(_context())
    client.set_connect_state()
    server.set_accept_state()
    flights: list[bytes] = []
    done = {id(client): False, id(server): False}
    for _ in range(10):
        for side, other in ((client, server), (server, client)):
            if not done[id(side)]:
                try:
                    side.do_handshake()
                    done[id(side)] = True
                except SSL.WantReadError:
                    pass
            flights += _pump(side, other)
        if all(done.values()):
            return client, server, flights
    raise AssertionError("the in-memory DTLS handshake did not complete")


@cache
def dtls_material() -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """(handshake datagrams, encrypted datagrams: application data and a close_notify)."""
    client, _server, flights = connected_pair()
    client.send(b"hello")
    encrypted = _pump(client, None)
    client.shutdown()
    encrypted += _pump(client, None)
    return tuple(flights), tuple(encrypted)


@cache
def srtp_material() -> tuple[bytes, ...]:
    key = bytes(range(30))
    sender = pylibsrtp.Session(pylibsrtp.Policy(key=key,
                                                ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    rtp = [sender.protect(p) for p in valid_rtp_packets() if len(p) < 1300]
    rtcp = [sender.protect_rtcp(p) for p in valid_rtcp_packets()]
    return tuple(rtp + rtcp)


def all_material() -> list[bytes]:
    handshake, encrypted = dtls_material()
    return [*handshake, *encrypted, *srtp_material()]


# -- the properties -----------------------------------------------------------------------------


def first_record_epoch(data: bytes) -> int | None:
    if 20 <= data[0] <= 31 and len(data) >= 5:
        return int(struct.unpack_from("!H", data, 3)[0])
    return None


def check(guard: MediaPortGuard, data: bytes, source: tuple[str, int],
          handshake_done: bool) -> DatagramDrop | DatagramKind:
    verdict = guard.check(data, source, lambda: CREDENTIALS, set(), handshake_done)
    if guard.passes_srtp(data, source, handshake_done):  # the shortcut agrees with check
        assert verdict == (DatagramKind.SRTP, None)
    if isinstance(verdict, DatagramDrop):
        return verdict
    kind, message = verdict
    assert 0 < len(data) <= MAX_DATAGRAM
    if kind is DatagramKind.STUN:
        assert data[0] <= 3 and message is not None
        return kind
    assert message is None and source in guard.trusted
    if kind is DatagramKind.DTLS:
        assert 20 <= data[0] <= 63
        if handshake_done or data[0] == 21:
            assert first_record_epoch(data) != 0
    else:
        assert 128 <= data[0] <= 191 and handshake_done and len(data) >= 8
    return kind


def trusted_guard() -> MediaPortGuard:
    return MediaPortGuard(trusted={PEER})


def test_real_material_is_accepted_when_it_should_be() -> None:
    handshake, encrypted = dtls_material()
    for data in handshake:
        assert check_dtls(data, handshake_done=False) is None, data[:13].hex()
    # the last flights start with plaintext records: not accepted once the handshake is done
    assert check_dtls(handshake[0], handshake_done=True) is DatagramDrop.DTLS_PLAINTEXT
    for data in encrypted:
        assert check(trusted_guard(), data, PEER, True) is DatagramKind.DTLS
    for data in srtp_material():
        assert check(trusted_guard(), data, PEER, True) is DatagramKind.SRTP
        assert check(trusted_guard(), data, PEER, False) is DatagramDrop.SRTP_BEFORE_KEYS
        assert check(MediaPortGuard(), data, STRANGER, True) is DatagramDrop.UNKNOWN_SOURCE


@FUZZ
@given(st.binary(max_size=MAX_DATAGRAM + 100), st.booleans())
def test_random_bytes(data: bytes, handshake_done: bool) -> None:
    check(trusted_guard(), data, PEER, handshake_done)
    check(MediaPortGuard(), data, STRANGER, handshake_done)


@FUZZ
@given(st.integers(20, 63), st.binary(max_size=300), st.booleans())
def test_random_bytes_with_a_dtls_first_byte(first: int, data: bytes, handshake_done: bool) -> None:
    check(trusted_guard(), bytes([first]) + data, PEER, handshake_done)


def dtls_length_fields(rng: random.Random, data: bytearray) -> None:
    """Corrupt a record's epoch, length, version or content type (first record)."""
    if len(data) < 13:
        return
    choice = rng.randrange(4)
    if choice == 0:
        struct.pack_into("!H", data, 3, rng.choice([0, 1, 2, 0xFFFF]))
    elif choice == 1:
        struct.pack_into("!H", data, 11, rng.choice([0, 1, len(data), len(data) - 13, 0xFFFF]))
    elif choice == 2:
        struct.pack_into("!H", data, 1, rng.choice([0xFEFD, 0xFEFF, 0x0303, 0]))
    else:
        data[0] = rng.choice([20, 21, 22, 23, 25, 26, 27, 0x2C, 0x3F, 0x30])


def test_mutated_material() -> None:
    outcomes: Counter[str] = Counter()
    for index, data in enumerate(mutants(all_material(), dtls_length_fields, MUTATIONS, seed=7)):
        result = check(trusted_guard(), data, PEER, handshake_done=bool(index % 2))
        outcomes[result.value] += 1
    for reason in ("dtls", "srtp", "dtls_malformed", "dtls_plaintext"):
        assert outcomes[reason] > 0, outcomes


def test_attackers_datagrams() -> None:
    """The barrage's mix: from a stranger nothing but STUN is even looked at; spoofed from the
    participant's own (trusted) address, only well-framed DTLS and SRTP-sized datagrams pass."""
    rng = random.Random(9)
    outcomes: Counter[str] = Counter()
    for index in range(5 * MUTATIONS):
        kind, data = garbage(rng)
        stranger = check(MediaPortGuard(), data, STRANGER, handshake_done=True)
        assert stranger in (DatagramKind.STUN, *DatagramDrop), stranger
        result = check(trusted_guard(), data, PEER, handshake_done=bool(index % 4))
        outcomes[f"{kind}->{result.value}"] += 1
    assert outcomes["empty->empty"] and outcomes["oversized->oversized"], outcomes
    accepted = {key for key in outcomes if key.endswith(("->stun", "->dtls", "->srtp"))}
    assert not {key for key in accepted if key.startswith(("empty", "oversized", "one_byte"))}
    assert "stun->stun" not in accepted, outcomes  # none is signed
    assert {"dtls->dtls", "rtp->srtp"} <= accepted, outcomes  # only libsrtp/OpenSSL can tell


def test_accepted_dtls_leaves_a_connected_session_working() -> None:
    """What the guard lets through after the handshake, fed to OpenSSL as aiortc does, never
    stops the session: application data sent afterwards still arrives."""
    client, server, _flights = connected_pair()
    rng = random.Random(10)
    fed = 0
    candidates = [g for _kind, g in (garbage(rng) for _ in range(4 * MUTATIONS))]
    candidates += list(mutants(all_material(), dtls_length_fields, MUTATIONS, seed=11))
    for data in candidates:
        if check(trusted_guard(), data, PEER, handshake_done=True) is not DatagramKind.DTLS:
            continue
        fed += 1
        server.bio_write(data)
        try:
            server.recv(1500)
        except SSL.ZeroReturnError:
            raise AssertionError(f"a forged record closed the session: {data[:16].hex()}") \
                from None
        except SSL.Error:
            pass  # aiortc ignores it the same way
        client.send(b"still here %d" % fed)
        _pump(client, server)
        assert server.recv(1500) == b"still here %d" % fed
    assert fed > 100, fed


def _record(content_type: int, epoch: int, body: bytes, version: int = 0xFEFD) -> bytes:
    return struct.pack("!BHH6sH", content_type, version, epoch, bytes(6), len(body)) + body


def _handshake(kind: int, total: int, offset: int, fragment: bytes) -> bytes:
    return bytes([kind]) + total.to_bytes(3, "big") + b"\x00\x01" + offset.to_bytes(3, "big") \
        + len(fragment).to_bytes(3, "big") + fragment


@pytest.mark.parametrize(("data", "done", "expected"), [
    (_record(22, 0, _handshake(1, 4, 0, b"abcd")), False, None),
    (_record(22, 0, _handshake(1, 8, 4, b"abcd")), False, None),  # the last fragment
    (_record(22, 0, _handshake(1, 4, 0, b"abcd")), True, DatagramDrop.DTLS_PLAINTEXT),
    (_record(22, 0, _handshake(20, 4, 0, b"abcd")), False, DatagramDrop.DTLS_MALFORMED),
    (_record(22, 0, _handshake(1, 4, 2, b"abcd")), False, DatagramDrop.DTLS_MALFORMED),
    (_record(22, 0, _handshake(1, 4, 0, b"abcd") + b"x"), False, DatagramDrop.DTLS_MALFORMED),
    (_record(22, 0, b""), False, DatagramDrop.DTLS_MALFORMED),
    (_record(20, 0, b"\x01"), False, None),
    (_record(20, 0, b"\x02"), False, DatagramDrop.DTLS_MALFORMED),
    (_record(21, 0, b"\x02\x28"), False, DatagramDrop.DTLS_PLAINTEXT),
    (_record(23, 0, b"data"), False, DatagramDrop.DTLS_PLAINTEXT),
    (_record(23, 1, b"anything, OpenSSL checks the MAC"), True, None),
    (_record(21, 1, b"encrypted alert"), False, None),
    (_record(23, 1, b"x", version=0x0303), True, DatagramDrop.DTLS_MALFORMED),
    (_record(23, 1, b"xy")[:-1], True, DatagramDrop.DTLS_MALFORMED),
    (bytes([0x2C, 0, 1, 0, 16]) + bytes(16), True, None),  # DTLS 1.3 unified header
    (bytes([0x2C, 0, 1, 0, 15]) + bytes(15), True, DatagramDrop.DTLS_MALFORMED),
    (bytes([0x3C, 0, 1, 0, 16]) + bytes(16), True, DatagramDrop.DTLS_MALFORMED),  # with a CID
], ids=lambda value: value.hex()[:16] if isinstance(value, bytes) else str(value))
def test_dtls_record_rules(data: bytes, done: bool, expected: DatagramDrop | None) -> None:
    assert check_dtls(data, handshake_done=done) is expected
