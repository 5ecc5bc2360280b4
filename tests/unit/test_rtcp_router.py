"""A subscriber's RTCP that does not parse is dropped and counted (sfu/rtcp_router.py)."""

import asyncio
import struct

from aiortc import RTCPeerConnection

from sfu.subscriber import Subscriber
from sfu.types import DropReason


async def _no_offer(sdp: str, tracks: object) -> None:
    pass


async def test_malformed_rtcp_is_counted() -> None:
    subscriber = Subscriber("sub", RTCPeerConnection(), _no_offer,
                            asyncio.get_running_loop().time)
    try:
        short_twcc = struct.pack("!BBH", 0x8F, 205, 2) + bytes(8)  # header needs 20 bytes
        short_sr = struct.pack("!BBH", 0x80, 200, 1) + bytes(4)  # no sender info
        subscriber.on_rtcp(short_twcc + short_sr)
        assert subscriber.rtcp.drops[DropReason.MALFORMED] == 2
        assert subscriber.downlink.estimate_bps is None  # nothing reached the estimate
    finally:
        await subscriber.close()
