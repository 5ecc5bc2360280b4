"""H.264 key frame detection on RTP payloads (RFC 6184).

Every RTP payload starts with a one-byte NAL unit header (RFC 6184 section 5.3):

     +---------------+
     |0|1|2|3|4|5|6|7|
     +-+-+-+-+-+-+-+-+
     |F|NRI|  Type   |
     +---------------+

Type 1-23: single NAL unit packet, the payload is the NAL unit itself (section 5.6).

Type 24, STAP-A (section 5.7.1): the header is followed by aggregation units, each a 16-bit
NAL unit size (network order) and that many bytes of NAL unit (with its own header):

     | STAP-A hdr | NALU 1 size (16) | NALU 1 hdr | NALU 1 data | NALU 2 size | NALU 2 hdr | ...

Type 28, FU-A (section 5.8): one NAL unit split across packets. The FU indicator (the header
above, type 28) is followed by the FU header, which carries the fragmented unit's real type:

     +---------------+
     |0|1|2|3|4|5|6|7|
     +-+-+-+-+-+-+-+-+
     |S|E|R|  Type   |
     +---------------+

S marks the first fragment: only that one starts the NAL unit, so only it counts here.

A key frame is announced by an IDR slice (type 5) or by the SPS (type 7) that precedes it;
browsers send SPS/PPS/IDR together (often in one STAP-A), so either starts a decodable point.
"""

__all__ = ["inspect_h264", "is_h264_keyframe"]

INVALID, DELTA, KEY = -1, 0, 1
"""What ``inspect_h264`` says of one packet (as ``sfu.wire.vp8.inspect_vp8``)."""

_IDR = 5
_SPS = 7
_STAP_A = 24
_FU_A = 28


def is_h264_keyframe(payload: bytes) -> bool:
    """True if the payload starts (part of) an IDR picture or carries an SPS; never raises."""
    n = len(payload)
    if n == 0:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type == _IDR or nal_type == _SPS:
        return True
    if nal_type == _FU_A:
        if n < 2:
            return False
        fu = payload[1]
        return bool(fu & 0x80) and (fu & 0x1F) in (_IDR, _SPS)
    if nal_type == _STAP_A:
        # Walk all units: a malformed aggregation (bad sizes) is rejected as a whole, since
        # the packet cannot be depacketized anyway.
        found = False
        i = 1
        while i < n:
            if i + 2 > n:
                return False
            size = (payload[i] << 8) | payload[i + 1]
            i += 2
            if size == 0 or i + size > n:
                return False
            if (payload[i] & 0x1F) in (_IDR, _SPS):
                found = True
            i += size
        return found
    return False


def inspect_h264(payload: bytes) -> int:
    """INVALID, DELTA or KEY (as ``is_h264_keyframe``), in one pass; never raises.

    Valid is what a packetization-mode 1 sender (every browser) produces: a NAL unit header with
    F = 0 and a single NAL unit (types 1-23, at least 2 bytes), a STAP-A whose units exactly fill
    the payload (each non-empty, F = 0, type 1-23) or an FU-A fragment of a type 1-23 unit with
    at least one byte and not both S and E set (RFC 6184 5.8). The rest (types 0 and 25-31, bad
    sizes) cannot be depacketized and is dropped rather than handed to receivers.
    """
    n = len(payload)
    if n < 2:
        return INVALID
    header = payload[0]
    if header & 0x80:
        return INVALID
    nal_type = header & 0x1F
    if 0 < nal_type < 24:
        return KEY if nal_type == _IDR or nal_type == _SPS else DELTA
    if nal_type == _FU_A:
        fu = payload[1]
        inner = fu & 0x1F
        if n < 3 or not 0 < inner < 24 or fu & 0xC0 == 0xC0:
            return INVALID
        return KEY if fu & 0x80 and (inner == _IDR or inner == _SPS) else DELTA
    if nal_type == _STAP_A:
        found = DELTA
        i = 1
        while i < n:
            if i + 3 > n:
                return INVALID
            size = (payload[i] << 8) | payload[i + 1]
            i += 2
            unit = payload[i]
            if size == 0 or i + size > n or unit & 0x80 or not 0 < unit & 0x1F < 24:
                return INVALID
            if unit & 0x1F == _IDR or unit & 0x1F == _SPS:
                found = KEY
            i += size
        return found
    return INVALID
