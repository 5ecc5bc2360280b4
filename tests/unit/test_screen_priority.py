"""A shared screen (Producer.source == "screen") outranks cameras in the allocator and asks for
its top layer whatever the sharer's camera tile measures (issue 12)."""

from __future__ import annotations

from sfu.consumer import Consumer
from sfu.policy.allocator import Priority
from sfu.policy.downlink import DownlinkPolicy, Tile
from sfu.producer import Producer
from sfu.types import Codec, Kind

VP8_OUT = Codec("video/VP8", 90000, 100, 101)


class NullWriter:
    def send_rtp(self, packet: bytes) -> bool:
        return True


def video(owner: str, mid: str, rates: tuple[int, ...], source: str = "camera") -> Consumer:
    producer = Producer(f"{owner}:{mid}", owner, Kind.VIDEO, mid, lambda p, layer: None,
                        rids=["q", "h", "f"][:len(rates)] if len(rates) > 1 else None)
    producer.source = source
    for layer, rate in zip(producer.layers, rates, strict=True):
        layer.bitrate_bps = rate
        layer.last_packet_s = 1e9
    consumer = Consumer(producer, "sub", mid, 1000 + int(mid), 2000 + int(mid), NullWriter())
    consumer.configure(VP8_OUT, audio_level_id=0, abs_send_time_id=3)
    producer.consumers.append(consumer)
    return consumer


def test_screen_demand_is_top_priority_and_top_layer() -> None:
    policy = DownlinkPolicy()
    policy.pinned = {"bob"}
    policy.tiles = {"ann": Tile(160, 90, True), "bob": Tile(1280, 720, True)}
    screen = video("ann", "2", (1_200_000,), source="screen")
    camera = video("ann", "1", (150_000, 500_000, 1_500_000))
    pinned = video("bob", "1", (150_000, 500_000, 1_500_000))
    assert policy._demand(screen).priority is Priority.SCREEN
    assert policy._demand(screen).max_layer == 0  # its only (single high) layer
    assert policy._demand(camera).priority is Priority.NORMAL
    assert policy._demand(camera).max_layer == 0  # the small camera tile stays small
    assert policy._demand(pinned).priority is Priority.PINNED


def test_screen_gets_the_budget_before_a_pinned_camera() -> None:
    policy = DownlinkPolicy()
    policy.pinned = {"bob"}
    policy.tiles = {"ann": Tile(320, 180, True), "bob": Tile(1280, 720, True)}
    screen = video("ann", "2", (1_200_000,), source="screen")
    pinned = video("bob", "1", (150_000, 500_000, 1_500_000))
    # 1.3 Mbit/s holds the screen (1.2) or the pinned camera's lowest layer
    # first, not both: the screen wins (ranked by pinned first, the screen would be paused).
    decision = policy.decide(1_300_000, [pinned, screen], now=10.0, congested=True)
    grants = {c.producer.id: target for c, (target, _) in decision.targets.items()}
    assert grants["ann:2"] == 0
    assert grants["bob:1"] is None


def test_hidden_screen_gets_nothing() -> None:
    policy = DownlinkPolicy()
    policy.tiles = {"ann": Tile(0, 0, False)}
    screen = video("ann", "2", (1_200_000,), source="screen")
    assert policy._demand(screen).max_layer is None


def test_silent_mids_finds_stopped_and_inactive_sections() -> None:
    from sfu.wire.sdp_directions import silent_mids

    sdp = ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
           "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\n"
           "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\n"
           "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=inactive\r\n"
           "m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\n"
           "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n")  # no mid: ignored
    assert silent_mids(sdp) == {"2", "3"}
    assert silent_mids("garbage") == set()
    assert silent_mids("v=0\nm=video 0\na=mid:" + "x" * 40) == {"x" * 40}


async def test_one_screen_per_publisher_whatever_the_offer_claims() -> None:
    """A client cannot give its cameras the screen's priority by listing every video m-line in
    screen_mids: one live screen per participant; audio is never a screen."""
    from aiortc import RTCPeerConnection

    from sfu.publisher import Publisher

    client = RTCPeerConnection()
    for kind in ("audio", "video", "video", "video"):
        client.addTransceiver(kind, direction="sendonly")
    await client.setLocalDescription(await client.createOffer())
    publisher = Publisher("pub", RTCPeerConnection(), lambda producer: None, lambda: 0.0)
    try:
        await publisher.answer(client.localDescription.sdp, frozenset({"0", "1", "2", "3"}))
        sources = {mid: p.source for mid, p in publisher.producers.items()}
        assert sources["0"] == "camera"  # audio
        assert sorted(sources.values()).count("screen") == 1, sources
    finally:
        await publisher.close()
        await client.close()
