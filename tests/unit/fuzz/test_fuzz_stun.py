"""Fuzz target: STUN as a media port receives it (aioice's ``stun.parse_message`` behind
``sfu.wire.demux.parse_stun``, then ``check_stun``'s ICE rules).

Properties: ``parse_stun`` returns a message or ``STUN_MALFORMED`` and never raises (aioice's own
parser raises ``struct.error`` on an attribute of the wrong size, which escaped its
``datagram_received``); ``check_stun`` never raises; nothing unsigned, or signed with another
password, is ever accepted as a request; responses pass only for a pending transaction.
"""

from __future__ import annotations

import random
import struct
from collections import Counter

import pytest
from aioice import stun
from hypothesis import given
from hypothesis import strategies as st

from sfu.wire.demux import (
    DatagramDrop,
    DatagramKind,
    IceCredentials,
    MediaPortGuard,
    check_stun,
    parse_stun,
)
from tests.datagrams import STUN_COOKIE, stun_shaped
from tests.unit.fuzz.helpers import FUZZ, MUTATIONS, mutants

CREDENTIALS = IceCredentials("srvU", "server-password-0123456789", "cliU", "client-password-9876")
PEER = ("127.0.0.1", 40000)


def request(*, username: str = "srvU:cliU", password: str = CREDENTIALS.local_password,
            controlling: bool = True, use_candidate: bool = False) -> bytes:
    message = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    message.attributes["USERNAME"] = username
    message.attributes["PRIORITY"] = 1853824767
    message.attributes["ICE-CONTROLLING" if controlling else "ICE-CONTROLLED"] = 0x1122334455667788
    if use_candidate:
        message.attributes["USE-CANDIDATE"] = None
    message.add_message_integrity(password.encode())
    message.add_fingerprint()
    return bytes(message)


def response(transaction_id: bytes, *, error: bool = False) -> bytes:
    message = stun.Message(message_method=stun.Method.BINDING,
                           message_class=stun.Class.ERROR if error else stun.Class.RESPONSE,
                           transaction_id=transaction_id)
    if error:
        message.attributes["ERROR-CODE"] = (487, "Role Conflict")
    else:
        message.attributes["XOR-MAPPED-ADDRESS"] = PEER
    assert CREDENTIALS.remote_password is not None
    message.add_message_integrity(CREDENTIALS.remote_password.encode())
    message.add_fingerprint()
    return bytes(message)


def valid_stun() -> list[bytes]:
    return [request(), request(controlling=False, use_candidate=True), response(b"t" * 12),
            response(b"e" * 12, error=True)]


def stun_length_fields(rng: random.Random, data: bytearray) -> None:
    """Corrupt the message length, an attribute's type or length, or the magic cookie."""
    choice = rng.randrange(4)
    if choice == 0 and len(data) >= 4:
        struct.pack_into("!H", data, 2, rng.choice([0, 4, len(data) - 20, 0xFFFF]) & 0xFFFF)
    elif choice == 1 and len(data) >= 8:
        struct.pack_into("!I", data, 4, rng.choice([0, STUN_COOKIE ^ 1]))
    elif len(data) > 24:  # walk to an attribute header and bend its length or type
        pos, starts = 20, []
        while pos + 4 <= len(data):
            starts.append(pos)
            pos += 4 + (struct.unpack_from("!H", data, pos + 2)[0] + 3) // 4 * 4
        pos = rng.choice(starts) if starts else 20
        if pos + 4 <= len(data):
            if choice == 2:
                struct.pack_into("!H", data, pos + 2, rng.choice([0, 1, 2, 3, 7, 0xFFFF]))
            else:
                struct.pack_into("!H", data, pos, rng.choice([0x0024, 0x8029, 0x0020, 0x0009]))


def check(data: bytes, pending: set[bytes]) -> DatagramDrop | stun.Message:
    """The properties, for one input; returns the drop reason or the accepted message."""
    parsed = parse_stun(data)
    if isinstance(parsed, DatagramDrop):
        assert parsed is DatagramDrop.STUN_MALFORMED
        return parsed
    drop = check_stun(parsed, CREDENTIALS, pending)
    if drop is not None:
        return drop
    if parsed.message_class == stun.Class.REQUEST:
        assert parsed.message_method == stun.Method.BINDING
        assert parsed.check_message_integrity(CREDENTIALS.local_password.encode())
        assert parsed.attributes["USERNAME"].startswith("srvU:")
        assert isinstance(parsed.attributes["PRIORITY"], int)
    else:
        assert parsed.message_class in (stun.Class.RESPONSE, stun.Class.ERROR)
        assert parsed.transaction_id in pending
    return parsed


def test_valid_material_is_accepted() -> None:
    pending = {b"t" * 12, b"e" * 12}
    for data in valid_stun():
        assert isinstance(check(data, pending), stun.Message)


@pytest.mark.parametrize(("data", "reason"), [
    (request(password="wrong"), DatagramDrop.STUN_UNAUTHENTICATED),
    (request(username="srvU:someoneelse"), DatagramDrop.STUN_UNAUTHENTICATED),
    (request(username="other:cliU"), DatagramDrop.STUN_UNAUTHENTICATED),
    (response(b"x" * 12), DatagramDrop.STUN_UNSOLICITED),
    (struct.pack("!HHI", 0x0011, 0, STUN_COOKIE) + bytes(12), DatagramDrop.STUN_UNSOLICITED),
    # PRIORITY of 2 bytes: aioice's parser raised struct.error out of datagram_received
    (struct.pack("!HHI", 0x0001, 8, STUN_COOKIE) + bytes(12) + struct.pack("!HH", 0x0024, 2)
     + b"\x00\x01\x00\x00", DatagramDrop.STUN_MALFORMED),
], ids=["wrong password", "wrong remote ufrag", "wrong local ufrag", "unsolicited response",
        "indication", "short PRIORITY"])
def test_rejections(data: bytes, reason: DatagramDrop) -> None:
    assert check(data, set()) is reason


def test_aioice_parser_raises_struct_error_on_short_attribute() -> None:
    """The root cause the guard catches (if aioice fixes it, the guard still holds)."""
    data = struct.pack("!HHI", 0x0001, 8, STUN_COOKIE) + bytes(12) + \
        struct.pack("!HH", 0x0024, 2) + b"\x00\x01\x00\x00"
    with pytest.raises(struct.error):
        stun.parse_message(data)


def test_guard_trusts_only_authenticated_sources() -> None:
    guard = MediaPortGuard()
    assert guard.check(request(password="wrong"), PEER, lambda: CREDENTIALS, set(), False) \
        is DatagramDrop.STUN_UNAUTHENTICATED
    assert guard.check(b"\x80" + bytes(30), PEER, lambda: CREDENTIALS, set(), True) \
        is DatagramDrop.UNKNOWN_SOURCE
    verdict = guard.check(request(), PEER, lambda: CREDENTIALS, set(), False)
    assert not isinstance(verdict, DatagramDrop) and verdict[0] is DatagramKind.STUN
    assert guard.trusted == {PEER}
    other = ("127.0.0.1", 40001)  # an unsigned-by-the-peer response does not make a source trusted
    forged = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE,
                          transaction_id=b"p" * 12)
    forged.add_message_integrity(b"not the peer's password")
    assert not isinstance(guard.check(bytes(forged), other, lambda: CREDENTIALS, {b"p" * 12},
                                      False), DatagramDrop)  # aioice will discard it itself
    assert other not in guard.trusted


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    check(data, {data[8:20]})


@FUZZ
@given(st.binary(min_size=20, max_size=300), st.integers(0, 0x3FFF))
def test_random_bytes_with_a_stun_header(data: bytes, message_type: int) -> None:
    body = data[20:]
    header = struct.pack("!HHI", message_type, len(body), STUN_COOKIE) + data[8:20]
    check(header + body, {data[8:20]})


def test_mutated_messages() -> None:
    outcomes: Counter[str] = Counter()
    pending = {b"t" * 12, b"e" * 12}
    for data in mutants(valid_stun(), stun_length_fields, MUTATIONS, seed=5):
        result = check(data, pending)
        outcomes[result.value if isinstance(result, DatagramDrop) else "accepted"] += 1
    assert outcomes["stun_malformed"] > MUTATIONS // 4, outcomes
    assert outcomes["stun_unauthenticated"] > 0 and outcomes["accepted"] > 0, outcomes


def test_attackers_stun_is_never_accepted() -> None:
    """The barrage's STUN (tests/datagrams.py): right shape, no valid integrity."""
    rng = random.Random(6)
    outcomes: Counter[str] = Counter()
    for _ in range(MUTATIONS):
        result = check(stun_shaped(rng), set())
        assert isinstance(result, DatagramDrop), result
        outcomes[result.value] += 1
    assert len(outcomes) >= 3, outcomes
