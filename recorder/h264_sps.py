"""The picture size from an H.264 sequence parameter set (ITU-T H.264 7.3.2.1.1).

Matroska stores PixelWidth/PixelHeight for a video track and players take the display aspect
from it, so the recorder needs the real size without a decoder. Only the fields before the
size (and the cropping after it) are read. Written by hand: no maintained pure-Python SPS
parser exists, and PyAV would need a decoder (which the recording path must never open).
"""

from __future__ import annotations

__all__ = ["sps_size"]

# profile_idc values whose SPS carries chroma format, bit depths and scaling matrices
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def _rbsp(nal: bytes) -> bytes:
    """Remove emulation prevention bytes (00 00 03 -> 00 00)."""
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            index = self.pos >> 3
            if index >= len(self.data):
                raise ValueError("H.264 SPS is truncated")
            value = (value << 1) | ((self.data[index] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("H.264 SPS has an Exp-Golomb code over 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale:
            next_scale = (last + bits.se() + 256) % 256
        last = next_scale or last


def sps_size(sps: bytes) -> tuple[int, int]:
    """(width, height) after cropping, from an SPS NAL unit (with its header byte)."""
    if not sps or sps[0] & 0x1F != 7:
        raise ValueError("not an H.264 SPS NAL unit")
    bits = _Bits(_rbsp(sps[1:]))
    profile_idc = bits.u(8)
    bits.u(16)  # constraint flags, level_idc
    bits.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_planes = 0
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = bits.ue()
        if chroma_format_idc > 3:
            raise ValueError(f"H.264 SPS chroma_format_idc {chroma_format_idc} is invalid")
        if chroma_format_idc == 3:
            separate_planes = bits.u(1)
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format_idc != 3 else 12):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if index < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.u(1)
        bits.se()
        bits.se()
        cycle = bits.ue()
        if cycle > 255:
            raise ValueError("H.264 SPS has too many reference frames in a POC cycle")
        for _ in range(cycle):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    width = (bits.ue() + 1) * 16
    map_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    height = (2 - frame_mbs_only) * map_units * 16
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field_flag
    bits.u(1)  # direct_8x8_inference_flag
    if bits.u(1):  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        chroma_array_type = 0 if separate_planes else chroma_format_idc
        crop_x = 1 if chroma_array_type in (0, 3) else 2
        crop_y = (2 if chroma_array_type == 1 else 1) * (2 - frame_mbs_only)
        width -= crop_x * (left + right)
        height -= crop_y * (top + bottom)
    if width <= 0 or height <= 0:
        raise ValueError(f"H.264 SPS gives an empty picture {width}x{height}")
    return width, height
