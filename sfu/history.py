"""Ring buffer of sent RTP packets, for answering NACKs with retransmissions.

Packets are stored as sent to the subscriber (already rewritten, not yet encrypted), keyed by
their output sequence number, as two parts: the subscriber's own header (with extensions) and the
payload, which is the very bytes object every consumer of that packet shares. A consumer then
keeps ~60 bytes per packet instead of a 1.1 KB copy: a room of 50 seeing 9 videos each holds
~450 histories, 250 MB as copies. A payload the consumer rewrote (the VP8 picture id and
TL0PICIDX, in the descriptor's first bytes) is stored the same way: the shared original payload,
plus the rewritten first ``REWRITTEN_PREFIX`` bytes, put back together only for a
retransmission (the rewritten copies were 5 MB per participant in a room of 50).
Slots are indexed by `seq & (size - 1)`; the size is a power of two so that the index sequence
stays regular across the 65535 -> 0 wrap (2**16 is a multiple of it).
A slot may since have been reused by a later packet, so `get` checks the sequence number stored
in the packet itself (RTP header bytes 2-3) rather than keeping a parallel key array.
The slots are allocated by the first `put` and dropped by `clear`: a consumer outside last-N
(most of them in a big room) never sends, so it holds no ring.
"""

__all__ = ["REWRITTEN_PREFIX", "RtpHistory"]

REWRITTEN_PREFIX = 6
"""Payload bytes a consumer may rewrite: the VP8 payload descriptor is at most 6 bytes."""

_Entry = tuple[bytes, bytes] | tuple[bytes, bytes, bytes]


class RtpHistory:
    __slots__ = ("_size", "_mask", "_slots")

    def __init__(self, size: int = 512) -> None:
        if size < 1 or size > 0x8000 or size & (size - 1):
            raise ValueError(f"RtpHistory size must be a power of two in 1..32768, got {size}")
        self._size = size
        self._mask = size - 1
        self._slots: list[_Entry | None] | None = None

    @property
    def allocated(self) -> bool:
        """Whether the ring exists (a packet was stored since creation or ``clear``)."""
        return self._slots is not None

    def put(self, seq: int, header: bytes, payload: bytes = b"",
            original: bytes | None = None) -> None:
        """Store a packet as (header, payload); `seq` must equal the header's sequence number.
        ``original``: the shared payload ``payload`` was rewritten from (same length, only its
        first ``REWRITTEN_PREFIX`` bytes changed); kept instead of the rewritten copy."""
        slots = self._slots
        if slots is None:
            slots = self._slots = [None] * self._size
        if original is None or original is payload:
            slots[seq & self._mask] = (header, payload)
        else:
            slots[seq & self._mask] = (header, original, payload[:REWRITTEN_PREFIX])

    def get(self, seq: int) -> bytes | None:
        """The packet sent with `seq`, or None if never stored or already overwritten."""
        if self._slots is None:
            return None
        entry = self._slots[seq & self._mask]
        if entry is None:
            return None
        header = entry[0]
        if len(header) < 4 or ((header[2] << 8) | header[3]) != seq:
            return None
        if len(entry) == 3:
            prefix = entry[2]
            return header + prefix + entry[1][len(prefix):]
        return header + entry[1]

    def clear(self) -> None:
        """Forget every packet and release the ring (a paused consumer answers no NACK)."""
        self._slots = None
