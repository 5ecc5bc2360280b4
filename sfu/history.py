"""Ring buffer of sent RTP packets, for answering NACKs with retransmissions.

Packets are stored as sent to the subscriber (already rewritten, not yet encrypted), keyed by
their output sequence number, as two parts: the subscriber's own header (with extensions) and the
payload, which is the very bytes object every consumer of that packet shares. A consumer then
keeps ~60 bytes per packet instead of a 1.1 KB copy: a room of 50 seeing 9 videos each holds
~450 histories, 250 MB as copies. Slots are indexed by `seq & (size - 1)`; the size is a power
of two so that the index sequence stays regular across the 65535 -> 0 wrap (2**16 is a multiple
of it).
A slot may since have been reused by a later packet, so `get` checks the sequence number stored
in the packet itself (RTP header bytes 2-3) rather than keeping a parallel key array.
"""

__all__ = ["RtpHistory"]


class RtpHistory:
    __slots__ = ("_mask", "_slots")

    def __init__(self, size: int = 512) -> None:
        if size < 1 or size > 0x8000 or size & (size - 1):
            raise ValueError(f"RtpHistory size must be a power of two in 1..32768, got {size}")
        self._mask = size - 1
        self._slots: list[tuple[bytes, bytes] | None] = [None] * size

    def put(self, seq: int, header: bytes, payload: bytes = b"") -> None:
        """Store a packet as (header, payload); `seq` must equal the header's sequence number."""
        self._slots[seq & self._mask] = (header, payload)

    def get(self, seq: int) -> bytes | None:
        """The packet sent with `seq`, or None if never stored or already overwritten."""
        entry = self._slots[seq & self._mask]
        if entry is None:
            return None
        header, payload = entry
        if len(header) < 4 or ((header[2] << 8) | header[3]) != seq:
            return None
        return header + payload
