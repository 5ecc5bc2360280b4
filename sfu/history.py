"""Ring buffer of sent RTP packets, for answering NACKs with retransmissions.

A consumer keeps, per packet it sent, what it needs to send it again and nothing it can
rebuild: the payload object (the very bytes every consumer of that packet shares), the output
timestamp and marker in a typed array, and, when the consumer rewrote the payload (the VP8
picture id and TL0PICIDX, in the descriptor's first ``REWRITTEN_PREFIX`` bytes), those bytes
packed into a second typed array. The header is rebuilt by the consumer for a retransmission
(its own SSRC and payload type, a fresh transport-cc number). A slot costs 24 bytes and no
object of its own: a stored header and tuple per packet were ~110 bytes, and a rewritten copy
of the payload ~1.1 KB (5 MB per participant in a room of 50).

Slots are indexed by ``seq & (size - 1)``; the size is a power of two so that the index sequence
stays regular across the 65535 -> 0 wrap (2**16 is a multiple of it). A slot may since have been
reused by a later packet, so ``get`` checks the sequence number stored with it.
The ring is allocated by the first ``put`` and dropped by ``clear``: a consumer outside last-N
(most of them in a big room) never sends, so it holds none.
"""

from __future__ import annotations

from array import array

__all__ = ["REWRITTEN_PREFIX", "RtpHistory"]

REWRITTEN_PREFIX = 6
"""Payload bytes a consumer may rewrite: the VP8 payload descriptor is at most 6 bytes."""

_STORED = 1 << 49  # in an info word: the slot holds a packet
_PREFIX_SET = 1 << 51  # in a prefix word: the payload was rewritten


class RtpHistory:
    __slots__ = ("_size", "_mask", "_payloads", "_info", "_prefixes")

    def __init__(self, size: int = 512) -> None:
        if size < 1 or size > 0x8000 or size & (size - 1):
            raise ValueError(f"RtpHistory size must be a power of two in 1..32768, got {size}")
        self._size = size
        self._mask = size - 1
        self._payloads: list[bytes | None] | None = None
        # seq (16 bits) | marker << 16 | timestamp (32 bits) << 17 | _STORED
        self._info: array[int] | None = None
        # rewritten prefix (up to 48 bits) | its length << 48 | _PREFIX_SET; 0: not rewritten
        self._prefixes: array[int] | None = None

    @property
    def allocated(self) -> bool:
        """Whether the ring exists (a packet was stored since creation or ``clear``)."""
        return self._payloads is not None

    def put(self, seq: int, timestamp: int, marker: int, payload: bytes,
            original: bytes | None = None) -> None:
        """Store the packet sent with ``seq``. ``original``: the shared payload ``payload`` was
        rewritten from (same length, only its first ``REWRITTEN_PREFIX`` bytes changed); kept
        instead of the rewritten copy."""
        payloads, info, prefixes = self._payloads, self._info, self._prefixes
        if payloads is None or info is None or prefixes is None:
            payloads = self._payloads = [None] * self._size
            info = self._info = array("Q", bytes(8 * self._size))
            prefixes = self._prefixes = array("Q", bytes(8 * self._size))
        slot = seq & self._mask
        info[slot] = seq | (marker & 1) << 16 | (timestamp & 0xFFFFFFFF) << 17 | _STORED
        if original is None or original is payload:
            payloads[slot] = payload
            prefixes[slot] = 0
        else:
            prefix = payload[:REWRITTEN_PREFIX]
            payloads[slot] = original
            prefixes[slot] = int.from_bytes(prefix, "big") | len(prefix) << 48 | _PREFIX_SET

    def get(self, seq: int) -> tuple[int, int, bytes] | None:
        """(timestamp, marker, payload as sent) of the packet sent with ``seq``, or None if
        never stored or already overwritten."""
        payloads, info, prefixes = self._payloads, self._info, self._prefixes
        if payloads is None or info is None or prefixes is None:
            return None
        slot = seq & self._mask
        word = info[slot]
        payload = payloads[slot]
        if not word & _STORED or word & 0xFFFF != seq or payload is None:
            return None
        rewritten = prefixes[slot]
        if rewritten:
            length = (rewritten >> 48) & 0x7
            prefix = (rewritten & 0xFFFFFFFFFFFF).to_bytes(length, "big")
            payload = prefix + payload[length:]
        return (word >> 17) & 0xFFFFFFFF, (word >> 16) & 1, payload

    def clear(self) -> None:
        """Forget every packet and release the ring (a paused consumer answers no NACK)."""
        self._payloads = self._info = self._prefixes = None
