"""Public fuzz corpora replayed through our parsers (parser level; the inputs are files, not a
live room): Janus' RTP, RTCP and SDP corpora and mediasoup's crash reports, each input through
every parser it can reach (a datagram reaches the guard first, then RTP and RTCP alike, since
they share the bundled transport). Each test also runs on the same classes of input made here
(valid material and its seeded mutations), so CI without the corpora tests the same attacks.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from aiortc.sdp import SessionDescription

from sfu.negotiation import URI_TWCC
from sfu.publisher import check_offer_shape
from sfu.wire.demux import DatagramDrop, IceCredentials, MediaPortGuard
from sfu.wire.sdp_munging import offered_extension_ids, parse_simulcast_offer
from sfu.wire.twcc import TransportFeedback
from tests.unit.fuzz.helpers import (
    FIXTURE,
    _rtcp_length_fields,
    _rtp_length_fields,
    feed,
    harness,
    mutants,
    valid_rtcp_packets,
    valid_rtp_packets,
)
from tests.unit.fuzz.test_fuzz_sdp import sdp_mutants

GENERATED = 300  # mutants per class when no public corpus is given
PEER = ("127.0.0.1", 40000)
CREDENTIALS = IceCredentials("srvU", "server-password-0123456789", "cliU", "client-password")


def files(root: Path, *parts: str) -> list[bytes]:
    folder = root.joinpath(*parts)
    found = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert found, f"no corpus files under {folder}"
    return [p.read_bytes() for p in found]


async def replay_datagrams(inputs: list[bytes]) -> Counter[str]:
    """Guard (as if spoofed from the participant, handshake done), then every media handler."""
    outcomes: Counter[str] = Counter()
    guard = MediaPortGuard(trusted={PEER})
    async with harness() as h:
        for data in inputs:
            verdict = guard.check(data, PEER, lambda: CREDENTIALS, set(), True)
            outcomes[verdict.value if isinstance(verdict, DatagramDrop) else verdict[0].value] += 1
            feed(h, data, Counter())
            try:
                TransportFeedback.parse(data)
                outcomes["twcc"] += 1
            except ValueError:
                pass
    return outcomes


def replay_sdp(texts: list[str]) -> Counter[str]:
    """Our SDP readers raise only ValueError; aiortc's parser may raise anything (the signaling
    edge catches broadly), which is recorded, not asserted."""
    outcomes: Counter[str] = Counter()
    for text in texts:
        try:
            check_offer_shape(text)
            outcomes["shape ok"] += 1
        except ValueError:
            outcomes["shape ValueError"] += 1
        parse_simulcast_offer(text)
        offered_extension_ids(text, URI_TWCC)
        try:
            SessionDescription.parse(text)
            outcomes["aiortc ok"] += 1
        except Exception as exc:  # recording is the point
            outcomes[f"aiortc {type(exc).__name__}"] += 1
    return outcomes


async def test_generated_rtp_and_rtcp() -> None:
    inputs = valid_rtp_packets() + valid_rtcp_packets()
    inputs += list(mutants(valid_rtp_packets(), _rtp_length_fields, GENERATED, seed=20))
    inputs += list(mutants(valid_rtcp_packets(), _rtcp_length_fields, GENERATED, seed=21))
    outcomes = await replay_datagrams(inputs)
    assert outcomes["srtp"] > GENERATED, outcomes  # well-formed enough to reach libsrtp


def test_generated_sdp() -> None:
    outcomes = replay_sdp([FIXTURE.read_text(), *sdp_mutants(GENERATED, seed=22)])
    assert outcomes["aiortc ok"] and outcomes["shape ok"], outcomes


async def test_public_rtp_and_rtcp(public_corpora: Path) -> None:
    inputs = files(public_corpora, "fuzzers", "corpora", "rtp_fuzzer")
    inputs += files(public_corpora, "fuzzers", "corpora", "rtcp_fuzzer")
    inputs += files(public_corpora, "worker", "fuzzer", "reports")
    outcomes = await replay_datagrams(inputs)
    print(f"{len(inputs)} public RTP/RTCP inputs: {dict(outcomes)}")
    assert sum(outcomes.values()) >= len(inputs)


def test_public_sdp(public_corpora: Path) -> None:
    texts = [data.decode("utf-8", "replace")
             for data in files(public_corpora, "fuzzers", "corpora", "sdp_fuzzer")]
    outcomes = replay_sdp(texts)
    print(f"{len(texts)} public SDP inputs: {dict(outcomes)}")
    assert sum(v for k, v in outcomes.items() if k.startswith("aiortc")) == len(texts)
