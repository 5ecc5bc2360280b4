"""Fuzz target: what a far server sends a relay (RTP into ``UpstreamTracks.on_rtp``, its SSRCs
and RTX included, and the SR path), on random bytes and on seeded mutations of valid packets.

Property: nothing raises; every packet is either relayed into a real ``Producer`` (with a real
consumer behind it) or counted as a drop.
"""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from sfu.consumer import Consumer
from sfu.producer import Producer
from sfu.relay import LocalPublication, UpstreamTracks
from tests.unit.fuzz.helpers import FUZZ, MUTATIONS, _rtp_length_fields, mutants
from tests.unit.test_relay import OFFER, OWNERS, rtp

VALID = [rtp(1, 1000, 111), rtp(2, 2000, 96, payload=b"\x90\x80\x01\x10\x02\x00\x9d\x01\x2a"),
         struct.pack("!BBHII", 0x80, 97, 7, 0, 2001) + b"\x00\x03\x10\x00\x00",
         rtp(3, 2000, 96, payload=b"\x10")]


class Sink:
    def send_rtp(self, packet: bytes) -> bool:
        return True


def upstream() -> UpstreamTracks:
    producers: dict[str, Producer] = {}
    publication = LocalPublication("room", "relay-1", producers, lambda _p: None, lambda: 1.0)

    def publish(track):  # type: ignore[no-untyped-def]
        relayed = publication.add_track(f"{track.participant_id}.{track.mid}", track.kind,
                                        track.codec, lambda _layer: None)
        consumer = Consumer(relayed.producer, "near", track.mid, 0xAA, 0xAB, Sink())
        consumer.configure(track.codec, 0, 0)
        consumer.set_target(0)
        relayed.producer.attach(consumer)
        return relayed

    tracks = UpstreamTracks(publish, lambda _ssrc, _lost: None)
    tracks.describe(OFFER, OWNERS)
    return tracks


def accounted(tracks: UpstreamTracks, fed: int) -> bool:
    return tracks.packets + sum(tracks.drops.values()) == fed


@FUZZ
@given(st.lists(st.binary(max_size=1500), max_size=8))
def test_random_bytes(datagrams: list[bytes]) -> None:
    tracks = upstream()
    for data in datagrams:
        tracks.on_rtp(data)
    assert accounted(tracks, len(datagrams))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from([1000, 2000, 2001, 5]), st.binary(max_size=200)),
                max_size=8))
def test_known_ssrcs_with_random_payloads(packets: list[tuple[int, bytes]]) -> None:
    tracks = upstream()
    for ssrc, payload in packets:
        tracks.on_rtp(struct.pack("!BBHII", 0x80, 96, 1, 0, ssrc) + payload)
        tracks.on_sender_report(ssrc, 1 << 32, 0)
    assert accounted(tracks, len(packets))


def test_mutated_packets() -> None:
    tracks = upstream()
    fed = 0
    for data in mutants(VALID, _rtp_length_fields, MUTATIONS, seed=14):
        tracks.on_rtp(data)
        fed += 1
    assert accounted(tracks, fed) and tracks.drops and tracks.packets
