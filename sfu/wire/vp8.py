"""VP8 RTP payload descriptor (RFC 7741, section 4.2) and picture id rewriting.

       0 1 2 3 4 5 6 7
      +-+-+-+-+-+-+-+-+
      |X|R|N|S|R| PID | (REQUIRED)
      +-+-+-+-+-+-+-+-+
 X:   |I|L|T|K| RSV   | (OPTIONAL)
      +-+-+-+-+-+-+-+-+
 I:   |M| PictureID   | (OPTIONAL)
      +-+-+-+-+-+-+-+-+
      |   PictureID   |  (present only when M = 1: 15-bit picture id)
      +-+-+-+-+-+-+-+-+
 L:   |   TL0PICIDX   | (OPTIONAL)
      +-+-+-+-+-+-+-+-+
 T/K: |TID|Y| KEYIDX  | (OPTIONAL: present when T or K is set)
      +-+-+-+-+-+-+-+-+

X: extension byte present; N: non-reference frame; S: start of a VP8 partition; PID: partition
index; I: picture id present; L: TL0PICIDX present; T: TID (and Y) present; K: KEYIDX present;
M: 15-bit picture id; Y: layer sync. R/RSV are reserved (ignored on parse, written as 0).

The VP8 payload header follows the descriptor in the first packet of a partition-0 frame
(RFC 7741 section 4.3); bit 0 of its first byte is P, the *inverse* key frame flag (0 = key frame).

The per-packet functions (`is_vp8_keyframe`, `Vp8PictureIdMunger.rewrite`) parse inline instead of
going through `Vp8Descriptor`, to avoid allocating an object per packet.
"""

from dataclasses import dataclass

from sfu.wire.seqmath import pid7_add, pid7_diff, pid_add, pid_diff, tl0_add, tl0_diff

__all__ = [
    "Vp8Descriptor", "Vp8Ids", "Vp8PictureIdMunger", "inspect_vp8", "is_vp8_keyframe",
    "picture_ids",
]

_TRUNCATED = "VP8 descriptor is truncated"

Vp8Ids = tuple[int, int, int, int]
"""(picture id or -1 when absent, 1 for a 15-bit id, offset of TL0PICIDX or 0, TL0PICIDX):
what ``Vp8PictureIdMunger`` reads, from ``picture_ids``."""


@dataclass(slots=True)
class Vp8Descriptor:
    start_of_partition: bool
    partition_id: int
    non_reference: bool
    picture_id: int | None
    picture_id_15bit: bool  # False when picture_id is None
    tl0picidx: int | None
    tid: int | None
    layer_sync: bool  # False when tid is None (Y is only meaningful with T)
    keyidx: int | None
    size: int  # descriptor length in bytes

    @classmethod
    def parse(cls, payload: bytes) -> "Vp8Descriptor":
        n = len(payload)
        if n == 0:
            raise ValueError(f"{_TRUNCATED}: empty payload")
        b0 = payload[0]
        picture_id: int | None = None
        wide = False
        tl0: int | None = None
        tid: int | None = None
        sync = False
        keyidx: int | None = None
        i = 1
        if b0 & 0x80:
            if n < 2:
                raise ValueError(f"{_TRUNCATED}: X bit set but the extension byte is missing")
            x = payload[1]
            i = 2
            if x & 0x80:
                if n <= i:
                    raise ValueError(f"{_TRUNCATED}: I bit set but the picture id is missing")
                m = payload[i]
                if m & 0x80:
                    if n <= i + 1:
                        raise ValueError(
                            f"{_TRUNCATED}: M bit set but the second picture id byte is missing"
                        )
                    picture_id = ((m & 0x7F) << 8) | payload[i + 1]
                    wide = True
                    i += 2
                else:
                    picture_id = m
                    i += 1
            if x & 0x40:
                if n <= i:
                    raise ValueError(f"{_TRUNCATED}: L bit set but TL0PICIDX is missing")
                tl0 = payload[i]
                i += 1
            if x & 0x30:
                if n <= i:
                    raise ValueError(
                        f"{_TRUNCATED}: T or K bit set but the TID/KEYIDX byte is missing"
                    )
                tk = payload[i]
                i += 1
                if x & 0x20:
                    tid = tk >> 6
                    sync = bool(tk & 0x20)
                if x & 0x10:
                    keyidx = tk & 0x1F
        return cls(
            start_of_partition=bool(b0 & 0x10),
            partition_id=b0 & 0x07,
            non_reference=bool(b0 & 0x20),
            picture_id=picture_id,
            picture_id_15bit=wide,
            tl0picidx=tl0,
            tid=tid,
            layer_sync=sync,
            keyidx=keyidx,
            size=i,
        )

    def __bytes__(self) -> bytes:
        # Canonical form: X is set only when an extension field is present and the reserved bits
        # are zero, so bytes(parse(raw)) == raw only for canonical input. `size` is not trusted:
        # the length follows from the fields.
        if not 0 <= self.partition_id <= 7:
            raise ValueError(f"VP8 partition_id {self.partition_id} out of range 0..7")
        if self.layer_sync and self.tid is None:
            raise ValueError("VP8 layer_sync requires tid")
        x = 0
        ext = bytearray()
        if self.picture_id is not None:
            x |= 0x80
            if self.picture_id_15bit:
                if not 0 <= self.picture_id <= 0x7FFF:
                    raise ValueError(f"VP8 15-bit picture_id {self.picture_id} out of range")
                ext += bytes((0x80 | (self.picture_id >> 8), self.picture_id & 0xFF))
            else:
                if not 0 <= self.picture_id <= 0x7F:
                    raise ValueError(f"VP8 7-bit picture_id {self.picture_id} out of range")
                ext.append(self.picture_id)
        if self.tl0picidx is not None:
            if not 0 <= self.tl0picidx <= 0xFF:
                raise ValueError(f"VP8 tl0picidx {self.tl0picidx} out of range 0..255")
            x |= 0x40
            ext.append(self.tl0picidx)
        if self.tid is not None or self.keyidx is not None:
            tk = 0
            if self.tid is not None:
                if not 0 <= self.tid <= 3:
                    raise ValueError(f"VP8 tid {self.tid} out of range 0..3")
                x |= 0x20
                tk |= (self.tid << 6) | (0x20 if self.layer_sync else 0)
            if self.keyidx is not None:
                if not 0 <= self.keyidx <= 0x1F:
                    raise ValueError(f"VP8 keyidx {self.keyidx} out of range 0..31")
                x |= 0x10
                tk |= self.keyidx
            ext.append(tk)
        b0 = (
            (0x80 if x else 0)
            | (0x20 if self.non_reference else 0)
            | (0x10 if self.start_of_partition else 0)
            | self.partition_id
        )
        if x:
            return bytes((b0, x)) + ext
        return bytes((b0,))


def frame_start_offset(payload: bytes) -> int | None:
    """Where the VP8 payload header starts, if this packet starts partition 0 of a frame.

    None for any other packet (the payload header, and so the key frame bit, is only present at
    the start of partition 0) and for a descriptor that overruns the payload; never raises.
    """
    if not payload or payload[0] & 0x17 != 0x10:  # S set, partition 0
        return None
    return vp8_data_offset(payload)


def vp8_data_offset(payload: bytes) -> int | None:
    """Where the VP8 data starts after the payload descriptor (RFC 7741 4.2); None when the
    descriptor overruns the payload or nothing follows it. Byte checks only (per packet)."""
    n = len(payload)
    if n == 0:
        return None
    i = 1
    if payload[0] & 0x80:
        if n < 2:
            return None
        x = payload[1]
        i = 2
        if x & 0x80:
            if n <= i:
                return None
            i += 2 if payload[i] & 0x80 else 1
        if x & 0x40:
            i += 1
        if x & 0x30:
            i += 1
    return i if i < n else None


def is_vp8_keyframe(payload: bytes) -> bool:
    """True for the first packet of a VP8 key frame; never raises (malformed -> False)."""
    i = frame_start_offset(payload)
    return i is not None and not payload[i] & 0x01


INVALID, DELTA, KEY = -1, 0, 1
"""What ``inspect_vp8`` (and ``sfu.wire.h264.inspect_h264``) say of one packet."""


def inspect_vp8(payload: bytes) -> int:
    """INVALID, DELTA or KEY (the first packet of a key frame), in one pass; never raises.

    INVALID: the descriptor overruns the payload, nothing follows it, or a frame's first packet
    is shorter than its payload header (3 bytes, 10 for a key frame: RFC 6386 9.1). Such a
    packet cannot be depacketized; receivers differ in how gracefully they refuse it, so the
    SFU drops it instead of forwarding it. Byte checks only: this runs for every video packet.
    """
    i = vp8_data_offset(payload)
    if i is None:
        return INVALID  # the descriptor overruns, or no VP8 data follows it
    n = len(payload)
    if payload[0] & 0x17 != 0x10:
        return DELTA  # not the start of partition 0: no payload header here
    if payload[i] & 0x01:
        return DELTA if n >= i + 3 else INVALID
    return KEY if n >= i + 10 else INVALID


def vp8_keyframe_size(payload: bytes) -> tuple[int, int] | None:
    """(width, height) from a key frame's first packet (RFC 6386 9.1), else None."""
    i = frame_start_offset(payload)
    if i is None:
        return None
    header = payload[i:i + 10]
    if len(header) < 10 or header[0] & 0x01 or header[3:6] != b"\x9d\x01\x2a":
        return None
    return (int.from_bytes(header[6:8], "little") & 0x3FFF,
            int.from_bytes(header[8:10], "little") & 0x3FFF)


class Vp8PictureIdMunger:
    """Keeps one subscriber's picture id and TL0PICIDX continuous across source switches.

    A receiver's VP8 reference finder uses picture ids to detect lost frames; a jump when the SFU
    starts forwarding another source (a new publisher on a reused m-line, a simulcast layer
    switch) would look like massive loss, so every output id is `input + offset` with the offset
    chosen at the switch point (`sync`) to make the new source follow on from the old one.

    One offset modulo 2**15 serves both widths: the output keeps the width of the input, and a
    7-bit input gets `(input + offset) mod 128`, i.e. the low 7 bits of what the 15-bit id would
    have been. So a 7-bit stream stays continuous modulo 128, which is all a 7-bit field can say;
    widening it instead would grow the payload and change the descriptor size mid-stream.
    """

    __slots__ = ("_pid_offset", "_tl0_offset", "last_picture_id", "last_tl0picidx")

    def __init__(self) -> None:
        self._pid_offset = 0
        self._tl0_offset = 0
        # Newest output values (None until a packet carrying the field was rewritten).
        self.last_picture_id: int | None = None
        self.last_tl0picidx: int | None = None

    def sync(self, in_picture_id: int | None, in_tl0picidx: int | None) -> None:
        """Call with the values of the key frame that starts the new source."""
        # A None field means the new source does not send it: nothing to rewrite then.
        if in_picture_id is None or self.last_picture_id is None:
            self._pid_offset = 0
        else:
            self._pid_offset = pid_add(self.last_picture_id, 1 - in_picture_id)
        if in_tl0picidx is None or self.last_tl0picidx is None:
            self._tl0_offset = 0
        else:
            self._tl0_offset = tl0_add(self.last_tl0picidx, 1 - in_tl0picidx)

    def rewrite(self, payload: bytes) -> bytes:
        """Return the payload with picture id / TL0PICIDX rewritten.

        Returns the same object when there is nothing to change (zero offsets) or when the
        descriptor is malformed.
        """
        return self.apply(payload, picture_ids(payload))

    def apply(self, payload: bytes, ids: Vp8Ids | None) -> bytes:
        """``rewrite`` with the ids already read by ``picture_ids(payload)``: the producer reads
        them once per packet for all its consumers."""
        if ids is None:
            return payload
        # The *_add calls are skipped on zero offsets: this is the per-packet fast path.
        pid, wide, pos_tl0, tl0 = ids
        pid_off = self._pid_offset
        if pid >= 0:
            last = self.last_picture_id
            if wide:
                if pid_off:
                    pid = pid_add(pid, pid_off)
                # Picture ids repeat for every packet of a frame: skip the compare then.
                if pid != last and (last is None or pid_diff(pid, last) > 0):
                    self.last_picture_id = pid
            else:
                if pid_off:
                    pid = pid7_add(pid, pid_off)  # see the class docstring
                if pid != last and (last is None or pid7_diff(pid, last) > 0):
                    self.last_picture_id = pid
        tl0_off = self._tl0_offset
        if pos_tl0:
            if tl0_off:
                tl0 = tl0_add(tl0, tl0_off)
            last = self.last_tl0picidx
            if tl0 != last and (last is None or tl0_diff(tl0, last) > 0):
                self.last_tl0picidx = tl0

        if not (pid_off | tl0_off):
            return payload
        buf = bytearray(payload)
        if pid >= 0:
            if wide:
                buf[2] = 0x80 | (pid >> 8)
                buf[3] = pid & 0xFF
            else:
                buf[2] = pid
        if pos_tl0:
            buf[pos_tl0] = tl0
        return bytes(buf)



def picture_ids(payload: bytes) -> Vp8Ids | None:
    """What ``Vp8PictureIdMunger`` reads and writes in one payload descriptor; None when the
    descriptor carries neither id or is truncated (nothing to rewrite). Never raises."""
    n = len(payload)
    if n < 3 or not payload[0] & 0x80:
        return None  # no extension byte: no picture id, no TL0PICIDX
    x = payload[1]
    if not x & 0xC0:
        return None
    m = wide = 0
    i = 2
    if x & 0x80:
        m = payload[2]
        wide = m & 0x80
        i = 4 if wide else 3
    pos_tl0 = 0
    if x & 0x40:
        pos_tl0 = i
        i += 1
    if x & 0x30:
        i += 1
    if i > n:
        return None  # truncated descriptor
    pid = -1
    if x & 0x80:
        pid = ((m & 0x7F) << 8) | payload[3] if wide else m
    return (pid, 1 if wide else 0, pos_tl0, payload[pos_tl0] if pos_tl0 else 0)
