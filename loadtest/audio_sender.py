"""Pre-encoded Opus sent as a browser sends it, without aiortc's sender.

aiortc's ``RTCRtpSender`` runs two tasks per track and four coroutine layers per packet, turns
every frame into an ``av.Packet`` and its timestamp through ``Fraction`` arithmetic: for the load
generator (50 packets/s per participant, dozens of participants per process) that was as much
CPU as the three video layers. ``OpusSender`` builds each packet's header itself (MID and
RFC 6464 audio-level extensions, as Chrome and Firefox send on every audio packet) and hands it
to the connection's ``DatagramWriter``; one task per participant, paced on the loop's clock,
skipping ahead after a starved loop instead of bursting. Its sender report goes out with the
video layers' (``SimulcastPublisher._send_sender_reports``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

from loadtest.media import AUDIO_FRAME_SAMPLES, AUDIO_LEVEL_DBOV, AUDIO_RATE
from sfu import aiortc_hooks
from sfu.wire.rtp_packet import build_extension_block, pack_header

logger = logging.getLogger(__name__)

PERIOD_S = AUDIO_FRAME_SAMPLES / AUDIO_RATE  # 20 ms


def audio_level_element(ext_id: int, level_dbov: int = AUDIO_LEVEL_DBOV) -> tuple[int, bytes]:
    """RFC 6464: voice activity bit clear, the level in -dBov."""
    return ext_id, bytes([level_dbov & 0x7F])
MAX_LAG_S = 0.2


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

    def send_one(self, now: float) -> None:
        if self.t0 is None:
            self.t0 = now
        frame = self.frames[self.index % len(self.frames)]
        self.index += 1
        x_bit = 0x10 if self._extensions else 0
        data = pack_header(0x80 | x_bit, self.payload_type, self.seq, self.timestamp(now),
                           self.ssrc) + self._extensions + frame
        self.seq = (self.seq + 1) & 0xFFFF
        if self.writer.send_rtp(data):
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

    async def run(self, connected: Callable[[], bool]) -> None:
        """Send a frame every 20 ms while ``connected()``, forever (cancel to stop)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = 0
        try:
            while True:
                due = start + tick * PERIOD_S
                now = loop.time()
                if now - due > MAX_LAG_S:
                    start, tick = now, 0  # a starved loop: carry on from now, no burst
                elif due > now:
                    await asyncio.sleep(due - now)
                tick += 1
                if connected():
                    self.send_one(loop.time())
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("audio sender failed")
