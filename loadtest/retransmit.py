"""The synthetic publisher answers NACKs as a browser does: RFC 4588 RTX on the layer's own RTX
stream, tagged with the repaired-RID extension (which is how an SFU learns a simulcast layer's
RTX SSRC: Chrome never lists them in its SDP).

A ring of the last ``HISTORY`` packets per layer, kept as (timestamp, marker, payload) so the
retransmission is built with the RTX header and extensions, not the original's RID (an RTX
packet carrying a RID would read as a new media layer).
"""

from __future__ import annotations

import random
import re
from typing import Any

from sfu.wire.rtp_packet import build_extension_block, pack_header
from sfu.wire.sdp_munging import split_sections

HISTORY = 512  # packets per layer: ~2 s of a 1.3 Mbit/s layer
RESEND_INTERVAL_S = 0.1
"""A packet is sent again at most this often: an SFU re-lists every packet still missing in each
NACK it sends (aiortc's NackGenerator does), and answering each list in full would multiply a
loss burst; browsers likewise wait about a round trip before resending the same packet."""
_RTX_MAP = re.compile(r"^a=rtpmap:(\d+)\s+rtx/", re.IGNORECASE)


def rtx_payload_type(sdp: str, mid: str, apt: int) -> int | None:
    """The RTX payload type that repairs payload type ``apt`` in the section with ``mid``."""
    _session, sections = split_sections(sdp)
    for section in sections:
        if f"a=mid:{mid}" not in (line.strip() for line in section):
            continue
        rtx = {int(m.group(1)) for line in section if (m := _RTX_MAP.match(line))}
        for line in section:
            fields = line[7:].split(maxsplit=1)
            if line.startswith("a=fmtp:") and len(fields) == 2 and int(fields[0]) in rtx \
                    and f"apt={apt}" in fields[1].replace(" ", "").split(";"):
                return int(fields[0])
    return None


class LayerHistory:
    """What one simulcast layer sent lately, and its RTX stream."""

    __slots__ = ("rid", "rtx_ssrc", "rtx_seq", "_ring", "retransmitted", "missed")

    def __init__(self, rid: str) -> None:
        self.rid = rid
        self.rtx_ssrc = random.randrange(1, 1 << 32)
        self.rtx_seq = random.randrange(32768)
        # [seq, ts, marker, payload, resent at, payload prefix]
        self._ring: list[list[Any] | None] = [None] * HISTORY
        self.retransmitted = 0
        self.missed = 0  # asked for packets no longer (or never) here

    def put(self, seq: int, timestamp: int, marker: int, payload: bytes,
            prefix: bytes = b"") -> None:
        """A sent packet; its payload is ``prefix + payload`` (kept apart: no copy per packet)."""
        self._ring[seq % HISTORY] = [seq, timestamp, marker, payload, -1e9, prefix]

    def rtx_packets(self, seqs: list[int], rtx_pt: int, extensions: list[tuple[int, bytes]],
                    now: float) -> list[bytes]:
        """The RTX packets answering a NACK for ``seqs`` (those still in the ring and not sent
        again within ``RESEND_INTERVAL_S``)."""
        block = build_extension_block(extensions)
        out = []
        for seq in seqs:
            entry = self._ring[seq % HISTORY]
            if entry is None or entry[0] != seq:
                self.missed += 1
                continue
            _seq, timestamp, marker, payload, last, prefix = entry
            if now - last < RESEND_INTERVAL_S:
                continue
            entry[4] = now
            out.append(pack_header(0x90, marker | rtx_pt, self.rtx_seq, timestamp,
                                   self.rtx_ssrc) + block + seq.to_bytes(2, "big") + prefix
                       + payload)
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
            self.retransmitted += 1
        return out
