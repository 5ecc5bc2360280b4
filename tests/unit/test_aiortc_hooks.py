"""Fails loudly when aiortc/aioice change a private name that sfu/aiortc_hooks.py relies on."""

from __future__ import annotations

from importlib.metadata import version

import aioice.ice
from aiortc import RTCPeerConnection

from sfu import aiortc_hooks


def test_aiortc_is_the_pinned_version() -> None:
    assert version("aiortc") == "1.16.0", "sfu/aiortc_hooks.py was written against 1.16.0"


def test_no_private_name_is_missing() -> None:
    assert aiortc_hooks.missing_internals() == []


async def test_live_objects_have_the_instance_attributes() -> None:
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("video", direction="sendonly")
        sender = transceiver.sender
        for name in aiortc_hooks.SENDER_INSTANCE_ATTRS:
            assert hasattr(sender, name), f"RTCRtpSender.{name} is gone"
        dtls = sender.transport
        for name in aiortc_hooks.DTLS_INSTANCE_ATTRS:
            assert hasattr(dtls, name), f"RTCDtlsTransport.{name} is gone"
        connection = dtls.transport.iceGatherer._connection
        for name in (*aiortc_hooks.ICE_CONNECTION_ATTRS, "_protocols", "stun_server",
                     "turn_server", "get_component_candidates"):
            assert hasattr(connection, name), f"aioice Connection.{name} is gone"
        assert hasattr(aioice.ice, "StunProtocol") and hasattr(aioice.ice, "get_host_addresses")
        ssrc, rtx_ssrc = aiortc_hooks.sender_ssrcs(sender)
        assert ssrc != rtx_ssrc
    finally:
        await pc.close()


async def test_configure_ice_announces_only_given_address_and_port_range() -> None:
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio", direction="sendonly")
        ports = aiortc_hooks.PortAllocator(47100, 47109)
        aiortc_hooks.configure_ice(pc, ["127.0.0.1"], ports)
        await pc.setLocalDescription(await pc.createOffer())
        candidates = [line for line in pc.localDescription.sdp.splitlines()
                      if line.startswith("a=candidate:")]
        assert len(candidates) == 1, candidates
        fields = candidates[0].split()
        assert fields[4] == "127.0.0.1"
        assert 47100 <= int(fields[5]) <= 47109
    finally:
        await pc.close()


def test_port_allocator_cycles_through_the_range() -> None:
    ports = aiortc_hooks.PortAllocator(5000, 5002)
    assert ports.candidates() == [5000, 5001, 5002]
    assert ports.candidates() == [5001, 5002, 5000]
    assert ports.candidates()[0] == 5002


async def test_disable_remb_clears_the_video_receivers_estimator() -> None:
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        for name in aiortc_hooks.RECEIVER_INSTANCE_ATTRS:
            assert hasattr(receiver, name), f"RTCRtpReceiver.{name} is gone"
        name = aiortc_hooks.RECEIVER_INSTANCE_ATTRS[0]
        assert getattr(receiver, name) is not None
        assert aiortc_hooks.disable_remb(receiver)
        assert getattr(receiver, name) is None
    finally:
        await pc.close()
