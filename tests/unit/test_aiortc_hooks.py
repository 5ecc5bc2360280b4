"""Fails loudly when aiortc/aioice change a private name that sfu/aiortc_hooks.py relies on."""

from __future__ import annotations

import gc
import struct
import weakref
from importlib.metadata import version
from typing import Any

import aioice.ice
import pylibsrtp
import pytest
from aiortc import RTCPeerConnection

from sfu import aiortc_hooks, native, native_srtp
from sfu.wire.demux import DatagramDrop, DatagramDrops
from sfu.wire.rtp_packet import RtpView


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


async def test_slim_receiver_drops_what_an_unfed_receiver_holds() -> None:
    """``sfu/aiortc_memory_hooks.py``: the estimator (1,000 rate buckets), NACK generator,
    512-slot jitter buffer and, on a sendonly m-line, the decoder queue and error event."""
    pc = RTCPeerConnection()
    try:
        sendonly = pc.addTransceiver("video", direction="sendonly").receiver
        other = pc.addTransceiver("video", direction="sendonly").receiver
        for name in aiortc_hooks.MEMORY_RECEIVER_ATTRS:
            assert hasattr(sendonly, name), f"RTCRtpReceiver.{name} is gone"
        prefix = "_RTCRtpReceiver__"
        assert getattr(sendonly, prefix + "remote_bitrate_estimator") is not None
        assert getattr(sendonly, prefix + "jitter_buffer").capacity == 512
        assert aiortc_hooks.slim_receiver(sendonly, never_receives=True)
        assert aiortc_hooks.slim_receiver(other, never_receives=True)
        assert getattr(sendonly, prefix + "remote_bitrate_estimator") is None
        assert getattr(sendonly, prefix + "nack_generator") is None
        assert getattr(sendonly, prefix + "jitter_buffer").capacity == 16
        assert getattr(sendonly, prefix + "decoder_queue") is getattr(other,
                                                                    prefix + "decoder_queue")
        receiving = pc.addTransceiver("video", direction="recvonly").receiver
        queue = getattr(receiving, prefix + "decoder_queue")
        assert aiortc_hooks.slim_receiver(receiving)  # a publisher's: receive() still runs
        assert getattr(receiving, prefix + "decoder_queue") is queue
        assert getattr(receiving, prefix + "remote_bitrate_estimator") is None
        assert getattr(sendonly, prefix + "rtcp_started") is getattr(other, prefix + "rtcp_started")
        assert getattr(receiving, prefix + "rtcp_started") is not getattr(
            sendonly, prefix + "rtcp_started")
        assert not aiortc_hooks.slim_receiver(object())  # type: ignore[arg-type]
    finally:
        await pc.close()
    # closing stops every receiver: the shared stand-ins were never touched
    assert getattr(sendonly, prefix + "decoder_queue").empty()
    assert not getattr(sendonly, prefix + "rtcp_started").is_set()


async def test_slim_sender_shares_the_events_of_a_captured_sender_only() -> None:
    pc = RTCPeerConnection()
    try:
        captured = pc.addTransceiver("video", direction="sendonly").sender
        plain = pc.addTransceiver("video", direction="sendonly").sender
        for name in aiortc_hooks.MEMORY_SENDER_ATTRS:
            assert hasattr(captured, name), f"RTCRtpSender.{name} is gone"
        assert not aiortc_hooks.slim_sender(plain)  # its send() may still start tasks
        aiortc_hooks.capture_sender(captured, lambda parameters: None)
        event = "_RTCRtpSender__rtcp_exited"
        before = getattr(captured, event)
        assert aiortc_hooks.slim_sender(captured)
        assert getattr(captured, event) is not before
        assert getattr(plain, event) is not getattr(captured, event)
    finally:
        await pc.close()  # stops both senders: nothing waits on the shared events
    assert not getattr(captured, event).is_set()


# -- the media-port guard --------------------------------------------------------------------


async def hooked_sender(pc: RTCPeerConnection, drops: DatagramDrops) -> tuple[Any, Any, Any]:
    """A sending video transceiver on guarded host sockets (configure_ice on 127.0.0.1), its
    offer made: (its DTLS transport, the ICE connection, that connection's first protocol)."""
    pc.addTransceiver("video", direction="sendonly")
    aiortc_hooks.configure_ice(pc, ["127.0.0.1"], None, drops)
    await pc.setLocalDescription(await pc.createOffer())
    dtls = pc.getTransceivers()[0].sender.transport
    connection = dtls.transport.iceGatherer._connection
    return dtls, connection, connection._protocols[0]


async def test_configure_ice_guards_every_host_socket() -> None:
    """Private names: aioice ``Connection._queue``/``_protocols``, StunProtocol's ``receiver``,
    ``transactions``, ``local_candidate``; aiortc ``RTCDtlsTransport._rx_srtp``/``_state``."""
    pc = RTCPeerConnection()
    drops = DatagramDrops()
    try:
        dtls, connection, _first = await hooked_sender(pc, drops)
        protocols = connection._protocols
        assert protocols and all(isinstance(p, aiortc_hooks.GuardedStunProtocol)
                                 for p in protocols)
        protocol = protocols[0]
        for name in aiortc_hooks.STUN_PROTOCOL_ATTRS:
            assert hasattr(protocol, name), f"aioice StunProtocol.{name} is gone"
        for name in ("local_username", "local_password", "remote_username", "remote_password"):
            assert hasattr(connection, name), f"aioice Connection.{name} is gone"
        stranger = ("127.0.0.1", 9)
        short_priority = struct.pack("!HHI", 0x0001, 8, 0x2112A442) + bytes(12) + \
            struct.pack("!HH", 0x0024, 2) + b"\x00\x01\x00\x00"
        for data in (b"", b"\x80" * 2000, short_priority, b"\x16\xfe\xfd" + bytes(20),
                     b"\x80" + bytes(40), b"\x50junk"):
            protocol.datagram_received(data, stranger)  # must not raise
        assert connection._queue.qsize() == 0  # nothing reached aiortc
        assert drops.get(DatagramDrop.EMPTY) == 1 and drops.get(DatagramDrop.OVERSIZED) == 1
        assert drops.get(DatagramDrop.STUN_MALFORMED) == 1
        assert drops.get(DatagramDrop.UNKNOWN_SOURCE) == 2
        assert drops.get(DatagramDrop.UNKNOWN_KIND) == 1
        assert dtls._state.name == "NEW" and hasattr(dtls, "_rx_srtp")
    finally:
        await pc.close()


async def _closed_hooked_connection(release: bool) -> tuple[weakref.ref[Any], ...]:
    """A connection hooked as the server hooks one (guarded sockets, transport handlers, a
    captured sender), closed (and released): weak references to it and its parts."""
    pc = RTCPeerConnection()
    dtls, connection, protocol = await hooked_sender(pc, DatagramDrops())
    sender = pc.getTransceivers()[0].sender
    aiortc_hooks.hook_transport(dtls, lambda data, arrival: None, lambda data: None)
    aiortc_hooks.capture_sender(sender, lambda parameters: None)
    await pc.close()
    if release:
        aiortc_hooks.release_connection(pc)
    return tuple(weakref.ref(part) for part in (pc, dtls, connection, protocol, sender))


async def test_a_released_connection_is_freed_by_reference_counting() -> None:
    """Private names: aioice ``Connection._check_list``/``_nominated`` (emptied), our hooks'
    instance attributes removed; aiortc's listeners through pyee's public API."""
    gc.collect()
    gc.disable()
    try:
        released = await _closed_hooked_connection(release=True)
        kept = await _closed_hooked_connection(release=False)
        assert [ref() for ref in released] == [None] * 5  # no cycle held any of it
        # unreleased, all but the protocol (which aioice drops at close) wait for the collector
        assert [ref() is not None for ref in kept] == [True, True, True, False, True]
    finally:
        gc.enable()
    gc.collect()
    assert all(ref() is None for ref in kept)


def _srtp_pair() -> tuple[pylibsrtp.Session, pylibsrtp.Session]:
    key = bytes(range(30))
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    rx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    return tx, rx


def test_counting_srtp_session_turns_every_failure_into_pylibsrtp_error() -> None:
    """pylibsrtp raises ValueError over its 1,500-byte buffer: aiortc's ``_recv_next`` catches
    only pylibsrtp.Error, so that ValueError closed the whole DTLS transport."""
    tx, rx = _srtp_pair()
    drops = DatagramDrops()
    session = aiortc_hooks._CountingSrtpSession(rx, drops)
    rtp = b"\x80\x60\x00\x01" + bytes(8) + b"payload"
    assert session.unprotect(tx.protect(rtp)) == rtp
    with pytest.raises(ValueError):
        rx.unprotect(b"\x80" * 2000)
    for data in (b"\x80" * 2000, b"\x80" + bytes(40), b"\x80\xc8" + bytes(30)):
        with pytest.raises(pylibsrtp.Error):
            session.unprotect(data)
    with pytest.raises(pylibsrtp.Error):
        session.unprotect_rtcp(b"\x80\xc8" * 1000)
    assert drops.get(DatagramDrop.SRTP_UNAUTHENTICATED) == 4


async def test_datagram_writer_drops_a_packet_too_long_to_protect() -> None:
    pc = RTCPeerConnection()
    try:
        dtls = pc.addTransceiver("video", direction="sendonly").sender.transport
        writer = aiortc_hooks.DatagramWriter(dtls)
        sent: list[bytes] = []
        writer._srtp, _rx = _srtp_pair()
        writer._sendto = lambda data, _addr: sent.append(data)
        # pylibsrtp protects at most 1,500 - 144 bytes and raises ValueError beyond: a publisher
        # may send (authenticated) RTP that large, which then escaped into the forwarding loop
        assert writer.send_rtp(b"\x80\x60\x00\x01" + bytes(8) + bytes(1300))
        assert not writer.send_rtp(b"\x80\x60\x00\x02" + bytes(8) + bytes(1400))
        assert writer.protect_errors == 1 and len(sent) == 1
    finally:
        await pc.close()


# -- the load generator's and the tests' names -----------------------------------------------


def test_no_private_name_of_the_load_generator_is_missing() -> None:
    """``RTCRtpSender._next_encoded_frame`` (send_audio_level), ``Vp8Encoder._packetize``
    (vp8_packetize); ``RTCIceTransport._connection`` and ``RTCDtlsTransport._rx_srtp``
    (take_srtp_early) are instance attributes, checked on live objects below."""
    assert aiortc_hooks.missing_loadgen_internals() == []


async def test_take_srtp_early_takes_only_rtp_once_keyed() -> None:
    pc = RTCPeerConnection()
    try:
        dtls = pc.addTransceiver("video", direction="recvonly").receiver.transport
        for name in aiortc_hooks.LOADGEN_INSTANCE_ATTRS:
            assert hasattr(dtls.transport, name), f"RTCIceTransport.{name} is gone"
        taken: list[tuple[bytes, object]] = []
        assert aiortc_hooks.take_srtp_early(dtls, lambda data, srtp: taken.append((data, srtp)))
        connection = dtls.transport._connection
        rtp = b"\x80\x60\x00\x01" + bytes(20)
        rtcp = b"\x80\xc8\x00\x06" + bytes(24)
        connection.data_received(rtp, 1)  # before the DTLS handshake: aiortc's path
        assert taken == [] and connection._queue.qsize() == 1
        session = object()
        dtls._rx_srtp = session
        connection.data_received(rtp, 1)
        connection.data_received(rtcp, 1)  # SRTCP: aiortc's path
        connection.data_received(b"\x16\xfe\xfd" + bytes(20), 1)  # DTLS: aiortc's path
        assert taken == [(rtp, session)] and connection._queue.qsize() == 3
    finally:
        await pc.close()


async def test_send_audio_level_wraps_the_senders_next_frame() -> None:
    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver("audio", direction="sendonly").sender
        before = sender._next_encoded_frame
        assert aiortc_hooks.send_audio_level(sender, 18)
        assert sender._next_encoded_frame is not before
        assert not aiortc_hooks.send_audio_level(object(), 18)  # type: ignore[arg-type]
    finally:
        await pc.close()


def test_vp8_packetize_gives_descriptors_with_the_picture_id() -> None:
    payloads = aiortc_hooks.vp8_packetize(bytes(3000), 5)
    assert len(payloads) >= 3
    assert payloads[0][0] & 0x10 and not payloads[1][0] & 0x10  # start of partition only first
    assert all(p[2:4] == b"\x80\x05" for p in payloads)  # 15-bit picture id 5


def test_pylibsrtp_names_of_the_native_fan_out() -> None:
    """``Session._srtp`` (the libsrtp context) and the binding's ``srtp_protect`` prototype,
    which sfu/_fanout.c calls: when they change, the writers fall back to pure Python."""
    tx, _rx = _srtp_pair()
    assert hasattr(tx, "_srtp"), "pylibsrtp Session._srtp is gone"
    from pylibsrtp._binding import ffi, lib

    assert ffi.typeof(lib.srtp_protect).cname == native_srtp.SRTP_PROTECT_PROTOTYPE
    if native.native_available():
        address = native_srtp.srtp_context_address(tx)
        assert isinstance(address, int) and address != 0


@pytest.mark.parametrize("use_native", [
    pytest.param(True, id="native", marks=pytest.mark.skipif(
        not native_srtp.NATIVE_UNPROTECT, reason="sfu._fanout not built")),
    pytest.param(False, id="python"),
])
async def test_direct_srtp_path_delivers_counts_and_keeps_order(use_native: bool) -> None:
    """GuardedStunProtocol hands SRTP of a hooked transport to the SFU without aiortc's queue
    (through ``native.receive`` or pylibsrtp); forged packets are counted and dropped, a raising
    handler drops one packet, and while a datagram is queued the next one queues behind it."""
    pc = RTCPeerConnection()
    try:
        drops = DatagramDrops()
        dtls, connection, protocol = await hooked_sender(pc, drops)
        protocol._use_native = use_native
        rtp_in: list[bytes] = []
        rtcp_in: list[bytes] = []

        def on_rtp(data: bytes, _arrival: int) -> None:
            if data.endswith(b"boom"):
                raise RuntimeError("handler bug")
            rtp_in.append(data)

        aiortc_hooks.hook_transport(dtls, on_rtp, rtcp_in.append)
        tx, rx = _srtp_pair()
        assert not protocol._direct(tx.protect(b"\x80\x60\x00\x01" + bytes(8)), connection)
        dtls._rx_srtp = aiortc_hooks._CountingSrtpSession(rx, drops)
        rtp = b"\x80\x60\x00\x02" + bytes(8) + b"payload"
        assert protocol._direct(tx.protect(rtp), connection) and rtp_in == [rtp]
        assert protocol._direct(b"\x80\x60\x00\x03" + bytes(40), connection)  # forged
        assert drops.get(DatagramDrop.SRTP_UNAUTHENTICATED) == 1 and len(rtp_in) == 1
        assert protocol._direct(tx.protect(b"\x80\x60\x00\x04" + bytes(8) + b"boom"), connection)
        for forged in (b"", b"\x80", b"\x80\x60" + bytes(9), b"\x80" * 2000):  # short, long
            assert protocol._direct(forged, connection)
        assert drops.get(DatagramDrop.SRTP_UNAUTHENTICATED) == 5 and len(rtp_in) == 1
        assert (protocol._native_rx is not None) == use_native
        rr = b"\x80\xc9\x00\x01" + bytes(4)
        assert protocol._direct(tx.protect_rtcp(rr), connection) and rtcp_in == [rr]
        connection._queue.put_nowait((b"queued", 1))
        assert not protocol._direct(tx.protect(b"\x80\x60\x00\x05" + bytes(8)), connection)
        assert len(rtp_in) == 1
    finally:
        await pc.close()


async def test_receive_srtp_directly_takes_only_keyed_rtp_from_the_nominated_peer() -> None:
    """Private names: aioice ``Connection._protocols``/``_nominated``, aiortc
    ``RTCDtlsTransport._rx_srtp``; the hook falls back to the socket's own path otherwise."""
    from types import SimpleNamespace

    pc = RTCPeerConnection()
    drops = DatagramDrops()
    try:
        dtls = pc.addTransceiver("video", direction="recvonly").receiver.transport
        aiortc_hooks.configure_ice(pc, ["127.0.0.1"], None, drops)
        await pc.setLocalDescription(await pc.createOffer())
        taken: list[tuple[bytes, object]] = []
        assert aiortc_hooks.receive_srtp_directly(
            dtls, lambda data, srtp: taken.append((data, srtp))) == 1
        assert aiortc_hooks.receive_srtp_directly(dtls, lambda data, srtp: None) == 0  # once
        connection = dtls.transport._connection
        protocol = connection._protocols[0]
        peer = ("127.0.0.1", 5000)
        rtp = b"\x80\x60\x00\x01" + bytes(20)
        protocol.datagram_received(rtp, peer)  # no keys yet: the guard's path (unknown source)
        assert taken == [] and drops.get(DatagramDrop.UNKNOWN_SOURCE) == 1
        session = object()
        dtls._rx_srtp = session
        connection._nominated[1] = SimpleNamespace(remote_addr=peer)
        protocol.datagram_received(rtp, peer)
        protocol.datagram_received(b"\x80\xc8\x00\x06" + bytes(24), peer)  # SRTCP: not taken
        protocol.datagram_received(rtp, ("127.0.0.1", 5001))  # another source: not taken
        assert taken == [(rtp, session)]
        assert drops.get(DatagramDrop.UNKNOWN_SOURCE) == 3
        connection._nominated.clear()
    finally:
        dtls._rx_srtp = None
        await pc.close()


async def test_idle_receiver_never_starts_a_decoder_or_rtcp_task() -> None:
    from aiortc.rtcrtpparameters import RTCRtpReceiveParameters

    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        names = ("_RTCRtpReceiver__decoder_thread", "_RTCRtpReceiver__rtcp_task")
        assert all(hasattr(receiver, name) for name in names)  # what receive() would start
        aiortc_hooks.idle_receiver(receiver)
        await receiver.receive(RTCRtpReceiveParameters())
        assert all(getattr(receiver, name) is None for name in names)
    finally:
        await pc.close()


PC_PREFIX = "_RTCPeerConnection__"


async def _answer(server: RTCPeerConnection, client: RTCPeerConnection) -> str:
    """One offer from ``server`` answered by ``client``; the answer's text."""
    await server.setLocalDescription(await server.createOffer())
    await client.setRemoteDescription(server.localDescription)
    await client.setLocalDescription(await client.createAnswer())
    answer = client.localDescription
    await server.setRemoteDescription(answer)
    return answer.sdp


async def test_slim_descriptions_keeps_a_skeleton_and_renegotiation_works() -> None:
    """``slim_descriptions``: after an answer, aiortc's parsed offer and answer keep only kinds
    and mids (no codecs, SSRCs, candidates), the per-m-line remote DTLS/ICE parameters are one
    shared object, so are equal codec lists of transceivers, and the next offer/answer (a
    subscriber's every join) still works."""
    server, client = RTCPeerConnection(), RTCPeerConnection()
    prefix = "_RTCPeerConnection__"
    try:
        for name in aiortc_hooks.MEMORY_PC_ATTRS:
            assert hasattr(server, name), f"RTCPeerConnection.{name} is gone"
        server.addTransceiver("audio", direction="sendonly")
        server.addTransceiver("video", direction="sendonly")
        await _answer(server, client)
        offer = getattr(server, prefix + "pendingLocalDescription")  # aiortc keeps it pending
        answer = getattr(server, prefix + "currentRemoteDescription")
        assert offer.media[1].rtp.codecs and answer.media[1].rtp.codecs and answer.media[1].ssrc
        assert aiortc_hooks.slim_descriptions(server) == 2
        for name in ("pendingLocalDescription", "currentRemoteDescription"):
            slim = getattr(server, prefix + name)
            assert [(m.kind, m.rtp.muxId) for m in slim.media] == [("audio", "0"), ("video", "1")]
            assert all(not m.rtp.codecs and not m.ssrc and not m.ice_candidates
                       for m in slim.media)
            assert slim.media[0].ice is slim.media[1].ice
        local = getattr(server, prefix + "pendingLocalDescription")
        assert local.media is getattr(server, prefix + "currentRemoteDescription").media
        for name in ("remoteDtls", "remoteIce"):
            values = list(getattr(server, prefix + name).values())
            assert len(values) == 2 and values[0] is values[1]
        assert server.remoteDescription is not None  # printable (the session checks it)
        await server.addIceCandidate(None)  # trickle's end after the skeleton
        # renegotiation: a third m-line; the old ones keep their mids, kinds and codecs
        server.addTransceiver("video", direction="sendonly")
        answer_sdp = await _answer(server, client)
        assert answer_sdp.count("a=rtpmap:") > 3
        media = getattr(server, prefix + "currentRemoteDescription").media
        assert [(m.kind, m.rtp.muxId) for m in media] == [
            ("audio", "0"), ("video", "1"), ("video", "2")]
        assert all(m.rtp.codecs for m in getattr(server, prefix + "pendingLocalDescription").media)
        assert server.signalingState == "stable"
        _, video1, video2 = server.getTransceivers()
        for name in aiortc_hooks.MEMORY_TRANSCEIVER_ATTRS:
            assert hasattr(video1, name), f"RTCRtpTransceiver.{name} is gone"
        assert video1._codecs == video2._codecs and video1._codecs is not video2._codecs
        assert aiortc_hooks.slim_descriptions(server) == 3
        assert video1._codecs is video2._codecs  # one list for equal codecs agreed
        assert video1._headerExtensions is video2._headerExtensions
        assert [t.mid for t in server.getTransceivers()] == ["0", "1", "2"]
        server.addTransceiver("audio", direction="sendonly")  # and once more after sharing
        await _answer(server, client)
        assert [t.currentDirection for t in server.getTransceivers()] == ["sendonly"] * 4
        assert video1._codecs is not video2._codecs  # aiortc assigned fresh ones
    finally:
        await server.close()
        await client.close()


async def test_slim_descriptions_leaves_a_receiving_or_unanswered_connection_alone() -> None:
    """aiortc reads a receiving m-line's remote SSRCs when it starts the receiver; an offer
    not yet answered is read when the answer comes."""
    server, client = RTCPeerConnection(), RTCPeerConnection()
    try:
        server.addTransceiver("video", direction="sendrecv")
        client.addTransceiver("video", direction="sendrecv")  # answers sendonly: we receive
        await _answer(server, client)
        assert server.getTransceivers()[0].currentDirection == "sendrecv"
        assert aiortc_hooks.slim_descriptions(server) == 0
        assert getattr(server, PC_PREFIX + "currentRemoteDescription").media[0].rtp.codecs
        await server.setLocalDescription(await server.createOffer())
        assert aiortc_hooks.slim_descriptions(server) == 0  # have-local-offer
    finally:
        await server.close()
        await client.close()


@pytest.mark.skipif(not native.view_ready(), reason="sfu._fanout not built")
async def test_direct_srtp_path_hands_parsed_views_to_a_view_handler() -> None:
    """With ``on_rtp_view``, the native path parses the header in C (``receive_view``): a packet
    of a common shape arrives as the RtpView Python would parse, any other as bytes for
    ``on_rtp``; forged ones are counted and a raising view handler drops one packet only."""
    pc = RTCPeerConnection()
    try:
        drops = DatagramDrops()
        dtls, connection, protocol = await hooked_sender(pc, drops)
        protocol._use_native = True
        as_bytes: list[bytes] = []
        as_views: list[RtpView] = []

        def on_view(view: RtpView, _arrival: int) -> None:
            if view.payload.endswith(b"boom"):
                raise RuntimeError("handler bug")
            as_views.append(view)

        aiortc_hooks.hook_transport(dtls, lambda data, _a: as_bytes.append(data), lambda _d: None,
                                    on_view)
        tx, rx = _srtp_pair()
        dtls._rx_srtp = aiortc_hooks._CountingSrtpSession(rx, drops)
        plain = b"\x90\x60\x00\x02" + bytes(8) + b"\xbe\xde\x00\x01\x10\x7f\x00\x00" + b"media"
        two_byte = b"\x90\x60\x00\x03" + bytes(8) + b"\x10\x00\x00\x01\x01\x01\x7f\x00" + b"x"
        assert protocol._direct(tx.protect(plain), connection)
        assert protocol._direct(tx.protect(two_byte), connection)
        assert protocol._direct(tx.protect(b"\x80\x60\x00\x04" + bytes(8) + b"boom"), connection)
        assert protocol._direct(b"\x80\x60\x00\x05" + bytes(40), connection)  # forged
        assert [(v.sequence_number, v.extensions, v.payload) for v in as_views] \
            == [(2, {1: b"\x7f"}, b"media")]
        assert as_views[0].data == plain and as_bytes == [two_byte]
        assert drops.get(DatagramDrop.SRTP_UNAUTHENTICATED) == 1
    finally:
        await pc.close()
