"""What a datagram on a media port may be, decided before aioice and aiortc see it (pure core).

Anybody can send anything to our UDP ports, with any source address, including the
participant's own. aioice and aiortc 1.16 trust those bytes too much: an empty datagram raises
IndexError in ``RTCDtlsTransport._recv_next`` and an RTP-shaped one over 1,500 bytes raises
ValueError in pylibsrtp, and either exception closes the participant's whole DTLS transport;
a STUN attribute of the wrong size raises ``struct.error`` out of aioice's
``datagram_received``. ``sfu/aiortc_hooks.py`` puts this module in front of them: every datagram
is sorted by its first byte (RFC 7983) and checked for what its kind must look like; anything else
is dropped with a ``DatagramDrop`` reason and counted.

Rules (``MediaPortGuard``):
- at most ``MAX_DATAGRAM`` bytes (pylibsrtp's buffer; no peer of ours sends more);
- STUN: must parse; requests must be Binding requests that carry our username and a valid
  MESSAGE-INTEGRITY (unauthenticated ones are dropped silently: answering 400/401 would reflect
  traffic at a spoofed address); responses must answer a request we have pending; indications
  are never needed;
- everything else only from an address that proved itself with authenticated STUN (an ICE check
  or a check response); a spoofed source still passes this, so:
- DTLS: records must be framed as DTLS records; during the handshake plaintext (epoch 0) records
  must be well-formed handshake fragments of a plaintext message type or a change-cipher-spec
  (a forged alert or unparseable handshake message would end the handshake); once it is done
  any plaintext record is dropped (only encrypted ones are legitimate then; OpenSSL
  authenticates those itself);
- SRTP/SRTCP: only once keys exist, and long enough to hold a header; the SRTP
  authentication tag is checked by libsrtp (failures are counted by the hook).

Left open: during the DTLS handshake (about 100 ms per connection) a well-formed plaintext
handshake message spoofed from the peer's own address cannot be told from the peer's, and
OpenSSL may abandon the handshake over it.
"""

from __future__ import annotations

import enum
import struct
from collections import Counter
from collections.abc import Callable, Container
from dataclasses import dataclass, field

from aioice import stun

MAX_DATAGRAM = 1500  # pylibsrtp's unprotect buffer; larger RTP-shaped input raises ValueError
MAX_TRUSTED_SOURCES = 16  # addresses with authenticated STUN per ICE connection (a few in practice)

Address = tuple[str, int]


class DatagramKind(enum.Enum):
    STUN = "stun"
    DTLS = "dtls"
    SRTP = "srtp"  # RTP or RTCP


class DatagramDrop(enum.Enum):
    """Why a datagram that reached a media port was not handed to aioice/aiortc."""

    EMPTY = "empty"
    OVERSIZED = "oversized"
    UNKNOWN_KIND = "unknown_kind"  # first byte in none of RFC 7983's ranges we use
    UNKNOWN_SOURCE = "unknown_source"  # not STUN, from an address no authenticated STUN came from
    STUN_MALFORMED = "stun_malformed"
    STUN_UNAUTHENTICATED = "stun_unauthenticated"
    STUN_UNSOLICITED = "stun_unsolicited"  # a response to no pending request, or an indication
    DTLS_MALFORMED = "dtls_malformed"
    DTLS_PLAINTEXT = "dtls_plaintext"  # epoch-0 alert, or any epoch-0 record after the handshake
    SRTP_BEFORE_KEYS = "srtp_before_keys"
    SRTP_MALFORMED = "srtp_malformed"  # too short for an RTP/RTCP header
    SRTP_UNAUTHENTICATED = "srtp_unauthenticated"  # libsrtp refused it (counted by the hook)
    BACKLOG = "backlog"  # the connection's receive queue is full: the reader is behind
    HANDLER_ERROR = "handler_error"  # aioice raised on it anyway (a bug: logged, rate-limited)


class DatagramDrops:
    """Per-reason drop counts of one worker (plain integers; read by the metrics collector)."""

    def __init__(self) -> None:
        self.counts: Counter[DatagramDrop] = Counter()

    def add(self, reason: DatagramDrop) -> None:
        self.counts[reason] += 1

    def get(self, reason: DatagramDrop) -> int:
        return self.counts[reason]


def classify(data: bytes) -> DatagramKind | DatagramDrop:
    """The kind by the first byte (RFC 7983), or why it is dropped before any look inside."""
    if not data:
        return DatagramDrop.EMPTY
    if len(data) > MAX_DATAGRAM:
        return DatagramDrop.OVERSIZED
    first = data[0]
    if first <= 3:
        return DatagramKind.STUN
    if 20 <= first <= 63:
        return DatagramKind.DTLS
    if 128 <= first <= 191:
        return DatagramKind.SRTP
    return DatagramDrop.UNKNOWN_KIND  # ZRTP, TURN channels (we are no TURN server), the rest


# -- DTLS record framing (RFC 6347 section 4.1, RFC 9147 section 4) -----------------------------

DTLS_CONTENT_TYPES = frozenset({20, 21, 22, 23, 24, 25, 26})
DTLS_VERSIONS = frozenset({0xFEFF, 0xFEFD})  # DTLS 1.0, 1.2 (and 1.3's legacy_record_version)
DTLS_HEADER = struct.Struct("!BHH6sH")  # type, version, epoch, sequence number, length
DTLS_MAX_RECORD = (1 << 14) + 2048
DTLS13_MIN_CIPHERTEXT = 16  # the record number mask samples 16 bytes of ciphertext
CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE = 20, 21, 22
HANDSHAKE_HEADER = struct.Struct("!B3sH3s3s")  # type, length, message_seq, offset, fragment length
# Handshake messages sent in plaintext (epoch 0): ClientHello, ServerHello, HelloVerifyRequest,
# NewSessionTicket (DTLS 1.2 sends it before ChangeCipherSpec), Certificate, ServerKeyExchange,
# CertificateRequest, ServerHelloDone, CertificateVerify, ClientKeyExchange. Finished and
# everything later is encrypted.
PLAINTEXT_HANDSHAKE_TYPES = frozenset({1, 2, 3, 4, 11, 12, 13, 14, 15, 16})


def _plaintext_record_ok(content_type: int, body: bytes) -> DatagramDrop | None:
    """Checks of an epoch-0 record during the handshake: OpenSSL ends the handshake on a
    handshake message it cannot parse, so random garbage must not reach it."""
    if content_type == ALERT:
        return DatagramDrop.DTLS_PLAINTEXT  # a forged fatal alert would end the handshake
    if content_type == CHANGE_CIPHER_SPEC:
        return None if body == b"\x01" else DatagramDrop.DTLS_MALFORMED
    if content_type != HANDSHAKE:
        return DatagramDrop.DTLS_PLAINTEXT  # application data etc. are never plaintext
    pos = 0
    while pos < len(body):  # one or more handshake fragments, tiling the record exactly
        if pos + HANDSHAKE_HEADER.size > len(body):
            return DatagramDrop.DTLS_MALFORMED
        kind, length, _seq, offset, fragment = HANDSHAKE_HEADER.unpack_from(body, pos)
        total, start, size = (int.from_bytes(v, "big") for v in (length, offset, fragment))
        if kind not in PLAINTEXT_HANDSHAKE_TYPES or start + size > total:
            return DatagramDrop.DTLS_MALFORMED
        pos += HANDSHAKE_HEADER.size + size
    return None if pos == len(body) and body else DatagramDrop.DTLS_MALFORMED


def check_dtls(data: bytes, handshake_done: bool) -> DatagramDrop | None:
    """None when ``data`` is a sequence of well-framed DTLS records we may hand to OpenSSL."""
    pos, size = 0, len(data)
    while pos < size:
        first = data[pos]
        if 0x20 <= first <= 0x3F:  # DTLS 1.3 unified header 001CSLEE: always encrypted
            if first & 0x10:
                return DatagramDrop.DTLS_MALFORMED  # connection IDs are never negotiated
            header = 1 + (2 if first & 0x08 else 1) + (2 if first & 0x04 else 0)
            if pos + header > size:
                return DatagramDrop.DTLS_MALFORMED
            if first & 0x04:
                length = int.from_bytes(data[pos + header - 2:pos + header], "big")
            else:
                length = size - pos - header  # no length: the record fills the datagram
            if length < DTLS13_MIN_CIPHERTEXT or pos + header + length > size:
                return DatagramDrop.DTLS_MALFORMED
            pos += header + length
            continue
        if pos + DTLS_HEADER.size > size:
            return DatagramDrop.DTLS_MALFORMED
        content_type, version, epoch, _sequence, length = DTLS_HEADER.unpack_from(data, pos)
        if content_type not in DTLS_CONTENT_TYPES or version not in DTLS_VERSIONS:
            return DatagramDrop.DTLS_MALFORMED
        if length > DTLS_MAX_RECORD or pos + DTLS_HEADER.size + length > size:
            return DatagramDrop.DTLS_MALFORMED
        start = pos + DTLS_HEADER.size
        if epoch == 0:
            if handshake_done:
                return DatagramDrop.DTLS_PLAINTEXT  # only encrypted records are legitimate now
            drop = _plaintext_record_ok(content_type, data[start:start + length])
            if drop is not None:
                return drop
        pos = start + length
    return None


# -- SRTP / SRTCP -------------------------------------------------------------------------------

RTP_HEADER = 12
RTCP_HEADER = 8


def check_srtp(data: bytes, keys_ready: bool) -> DatagramDrop | None:
    """None when ``data`` may go to libsrtp (which then checks its authentication tag)."""
    if not keys_ready:
        return DatagramDrop.SRTP_BEFORE_KEYS
    rtcp = len(data) >= 2 and 192 <= data[1] <= 223  # RFC 5761 section 4 (aiortc: 192-208)
    if len(data) < (RTCP_HEADER if rtcp else RTP_HEADER):
        return DatagramDrop.SRTP_MALFORMED
    return None


# -- STUN (RFC 8489, ICE's use of it in RFC 8445 section 7) --------------------------------------


@dataclass(frozen=True)
class IceCredentials:
    local_ufrag: str
    local_password: str
    remote_ufrag: str | None = None  # None until the remote description is applied
    remote_password: str | None = None


def parse_stun(data: bytes) -> stun.Message | DatagramDrop:
    """aioice's parser, with every exception it can raise on hostile input turned into a drop."""
    try:
        message = stun.parse_message(data)
    except (ValueError, struct.error):  # struct.error: an attribute of the wrong size
        return DatagramDrop.STUN_MALFORMED
    return message


def check_stun(
    message: stun.Message, credentials: IceCredentials, pending: Container[bytes]
) -> DatagramDrop | None:
    """None when aioice should see ``message``; ``pending`` holds our open transaction ids."""
    attributes = message.attributes
    if message.message_class == stun.Class.REQUEST:
        username = attributes.get("USERNAME")
        if message.message_method != stun.Method.BINDING or not isinstance(username, str):
            return DatagramDrop.STUN_UNAUTHENTICATED
        local, colon, remote = username.partition(":")
        if colon != ":" or local != credentials.local_ufrag or \
                credentials.remote_ufrag not in (None, remote):
            return DatagramDrop.STUN_UNAUTHENTICATED
        if not message.check_message_integrity(credentials.local_password.encode()):
            return DatagramDrop.STUN_UNAUTHENTICATED
        if not isinstance(attributes.get("PRIORITY"), int):  # aioice indexes it unguarded
            return DatagramDrop.STUN_MALFORMED
        return None
    if message.message_class == stun.Class.INDICATION:
        return DatagramDrop.STUN_UNSOLICITED
    if message.transaction_id not in pending:
        return DatagramDrop.STUN_UNSOLICITED
    return None  # aioice checks the response's MESSAGE-INTEGRITY against the request's key


def stun_authenticated(message: stun.Message, credentials: IceCredentials) -> bool:
    """Whether an accepted message proves its source: a request signed with our password (checked
    by ``check_stun``) or a response signed with the peer's."""
    if message.message_class == stun.Class.REQUEST:
        return True
    if message.message_class == stun.Class.RESPONSE and credentials.remote_password is not None:
        return message.check_message_integrity(credentials.remote_password.encode())
    return False


@dataclass
class MediaPortGuard:
    """The datagram rules of one ICE connection (all its local sockets). Pure: no sockets, no
    clock; the hook passes the connection's credentials (a function: only STUN needs them), our
    pending STUN transaction ids and whether the DTLS handshake is done."""

    trusted: set[Address] = field(default_factory=set)

    def passes_srtp(self, data: bytes, source: Address, keys_ready: bool) -> bool:
        """True when ``check`` would hand ``data`` on as SRTP/SRTCP: the media path's shortcut
        (one call per packet instead of four). False decides nothing: ``check`` then does."""
        return (keys_ready and RTP_HEADER <= len(data) <= MAX_DATAGRAM
                and 127 < data[0] < 192 and source in self.trusted)

    def check(
        self,
        data: bytes,
        source: Address,
        credentials: Callable[[], IceCredentials],
        pending: Container[bytes],
        handshake_done: bool,
    ) -> tuple[DatagramKind, stun.Message | None] | DatagramDrop:
        """(kind, the parsed STUN message) to hand on, or the reason to drop ``data``."""
        kind = classify(data)
        if isinstance(kind, DatagramDrop):
            return kind
        if kind is DatagramKind.STUN:
            message = parse_stun(data)
            if isinstance(message, DatagramDrop):
                return message
            ice = credentials()  # only STUN needs them: not built for every media packet
            drop = check_stun(message, ice, pending)
            if drop is not None:
                return drop
            if source not in self.trusted and stun_authenticated(message, ice) \
                    and len(self.trusted) < MAX_TRUSTED_SOURCES:
                self.trusted.add(source)
            return kind, message
        if source not in self.trusted:
            return DatagramDrop.UNKNOWN_SOURCE
        if kind is DatagramKind.DTLS:
            drop = check_dtls(data, handshake_done)
        else:
            drop = check_srtp(data, handshake_done)
        return drop if drop is not None else (kind, None)
