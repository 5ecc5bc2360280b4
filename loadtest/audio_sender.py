"""Pre-encoded Opus sent as a browser sends it, without aiortc's sender.

aiortc's ``RTCRtpSender`` runs two tasks per track and four coroutine layers per packet, turns
every frame into an ``av.Packet`` and its timestamp through ``Fraction`` arithmetic: for the load
generator (50 packets/s per participant, dozens of participants per process) that was as much
CPU as the three video layers. ``OpusSender`` builds each packet's header itself (MID and
RFC 6464 audio-level extensions, as Chrome and Firefox send on every audio packet) and hands it
to the connection's ``DatagramWriter``. It has no loop of its own: the publisher's beat
(``SimulcastPublisher._pace``, one ``loadtest.pacer.Pacer`` for the whole process) calls
``send_one`` every 20 ms, skipping ahead after a starved loop instead of bursting. Its sender
report goes out with the video layers' (``SimulcastPublisher._send_sender_reports``).
"""

from __future__ import annotations

import random
from typing import Any

from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

from loadtest.media import AUDIO_FRAME_SAMPLES, AUDIO_LEVEL_DBOV, AUDIO_RATE
from sfu import aiortc_hooks
from sfu.wire.rtp_packet import build_extension_block, pack_header

PERIOD_S = AUDIO_FRAME_SAMPLES / AUDIO_RATE  # 20 ms


def audio_level_element(ext_id: int, level_dbov: int = AUDIO_LEVEL_DBOV) -> tuple[int, bytes]:
    """RFC 6464: voice activity bit clear, the level in -dBov."""
    return ext_id, bytes([level_dbov & 0x7F])


class OpusSender:
    """One audio track: its SSRC, numbering and position in the pre-encoded loop."""

    def __init__(self, frames: tuple[bytes, ...], ssrc: int, payload_type: int,
                 extensions: list[tuple[int, bytes]], writer: aiortc_hooks.DatagramWriter,
                 ) -> None:
        self.frames = frames
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.writer = writer
        self.seq = random.randrange(32768)
        self.ts_base = random.getrandbits(32)
        self.index = 0
        self.packets = 0
        self.octets = 0
        self.send_failures = 0
        self.t0: float | None = None
        # the elements (MID, audio level) never change: the block is built once
        self._extensions = build_extension_block(extensions) if extensions else b""

    def timestamp(self, now: float) -> int:
        """The RTP timestamp of the sample captured at loop time ``now`` (for sender reports)."""
        start = self.t0 if self.t0 is not None else now
        return (self.ts_base + int((now - start) * AUDIO_RATE)) & 0xFFFFFFFF

    def send_one(self, now: float, batch: list[Any] | None = None) -> None:
        """The next frame, captured at ``now``: sent, or queued on the beat's ``batch``."""
        if self.t0 is None:
            self.t0 = now
        frame = self.frames[self.index % len(self.frames)]
        self.index += 1
        x_bit = 0x10 if self._extensions else 0
        head = pack_header(0x80 | x_bit, self.payload_type, self.seq, self.timestamp(now),
                           self.ssrc) + self._extensions
        self.seq = (self.seq + 1) & 0xFFFF
        sent = self.writer.queue_rtp(batch, head, frame, self.writer) if batch is not None \
            else self.writer.send_rtp(head + frame)
        if sent:
            self.packets += 1
            self.octets += len(frame)
        else:
            self.send_failures += 1

    def sender_report(self, ntp: int, now: float) -> bytes:
        if not self.packets:
            return b""
        return bytes(RtcpSrPacket(ssrc=self.ssrc, sender_info=RtcpSenderInfo(
            ntp_timestamp=ntp, rtp_timestamp=self.timestamp(now),
            packet_count=self.packets & 0xFFFFFFFF, octet_count=self.octets & 0xFFFFFFFF)))
