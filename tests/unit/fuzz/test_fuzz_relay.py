"""Fuzz target: what a far server sends a relay (RTP into ``UpstreamTracks.on_rtp``, its SSRCs
and RTX included, and the SR path), on random bytes and on seeded mutations of valid packets.

Property: nothing raises; every packet is either relayed into a real ``Producer`` (with a real
consumer behind it) or counted as a drop.
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sfu.consumer import Consumer
from sfu.producer import Producer
from sfu.relay import LocalPublication, UpstreamTracks
from tests.unit.fuzz.helpers import FUZZ, MUTATIONS, _rtp_length_fields, mutants
from tests.unit.test_relay import OFFER, OWNERS, rtp
from tests.unit.test_relay_layers import OWNERS as LAYERED_OWNERS

VALID = [rtp(1, 1000, 111), rtp(2, 2000, 96, payload=b"\x90\x80\x01\x10\x02\x00\x9d\x01\x2a"),
         struct.pack("!BBHII", 0x80, 97, 7, 0, 2001) + b"\x00\x03\x10\x00\x00",
         rtp(3, 2000, 96, payload=b"\x10")]


class Sink:
    def send_rtp(self, packet: bytes) -> bool:
        return True


def upstream(owners: dict[str, Any] = OWNERS) -> UpstreamTracks:
    producers: dict[str, Producer] = {}
    publication = LocalPublication("room", "relay-1", producers, lambda _p: None, lambda: 1.0)

    def publish(track):  # type: ignore[no-untyped-def]
        relayed = publication.add_track(f"{track.participant_id}.{track.mid}", track.kind,
                                        track.codec, lambda _layer: None, None, track.rids)
        consumer = Consumer(relayed.producer, "near", track.mid, 0xAA, 0xAB, Sink())
        consumer.configure(track.codec, 0, 0)
        consumer.set_target(0)
        relayed.producer.attach(consumer)
        return relayed

    tracks = UpstreamTracks(publish, lambda _ssrc, _lost: None)
    tracks.describe(OFFER, owners)
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


@FUZZ
@given(st.lists(st.tuples(st.sampled_from([1000, 2000, 2001, 3000, 3001, 3002, 3003, 5]),
                          st.binary(max_size=200)), max_size=8))
def test_layer_ssrcs_with_random_payloads(packets: list[tuple[int, bytes]]) -> None:
    """A far track with its three layers (each its own SSRC and RTX SSRC)."""
    tracks = upstream(LAYERED_OWNERS)
    for ssrc, payload in packets:
        tracks.on_rtp(struct.pack("!BBHII", 0x80, 96, 1, 0, ssrc) + payload)
        tracks.on_sender_report(ssrc, 1 << 32, 0)
    assert accounted(tracks, len(packets))


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-1, max_value=1 << 33) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["rid", "ssrc", "rtx_ssrc", "x"]), inner, max_size=4),
    max_leaves=16)


@FUZZ
@given(JSONISH)
def test_any_layer_list_in_the_far_track_map(layers: object) -> None:
    """The far server's ``tracks[mid].layers`` is input like any other: whatever it holds, the
    offer is described (one layer when the list is unusable) and packets are accounted for."""
    tracks = upstream({**OWNERS, "1": {"participant_id": "chair", "kind": "video",
                                       "layers": layers}})
    for data in [*VALID, rtp(4, 3000), rtp(5, 3002, 96, payload=b"\x10")]:
        tracks.on_rtp(data)
    assert accounted(tracks, len(VALID) + 2)
    assert all(1 <= len(track.layers) <= 3 for track in tracks.tracks())
