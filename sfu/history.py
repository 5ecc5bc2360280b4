"""Ring buffer of sent RTP packets, for answering NACKs with retransmissions.

Packets are stored as sent to the subscriber (already rewritten, not yet encrypted), keyed by
their output sequence number. Slots are indexed by `seq & (size - 1)`; the size is a power of two
so that the index sequence stays regular across the 65535 -> 0 wrap (2**16 is a multiple of it).
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
        self._slots: list[bytes | None] = [None] * size

    def put(self, seq: int, packet: bytes) -> None:
        """Store a packet; `seq` must equal the packet's own sequence number."""
        self._slots[seq & self._mask] = packet

    def get(self, seq: int) -> bytes | None:
        """The packet sent with `seq`, or None if never stored or already overwritten."""
        packet = self._slots[seq & self._mask]
        if packet is None or len(packet) < 4 or ((packet[2] << 8) | packet[3]) != seq:
            return None
        return packet
