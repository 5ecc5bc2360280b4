"""Fuzz target: SDP through aiortc's ``SessionDescription.parse``, on seeded mutations of a
real Chrome simulcast offer. aiortc's parser may raise anything (AssertionError, IndexError,
KeyError...), which is why the signaling edge catches broadly (tests/integration/test_bad_input.py).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from aiortc.sdp import SessionDescription

from tests.unit.fuzz.helpers import FIXTURE, MUTATIONS


def sdp_mutants(count: int, seed: int) -> Iterator[str]:
    text = FIXTURE.read_text()
    lines = text.splitlines()
    rng = random.Random(seed)
    junk = ["", " ", "-1", "x", "72", "300", "99999999999999999999", ":", "0", "a=", "\x00", "é"]
    for _ in range(count):
        mutated = list(lines)
        for _ in range(rng.choice([1, 1, 2, 3])):
            j = rng.randrange(len(mutated))
            op = rng.randrange(7)
            if op == 0:
                del mutated[j]
            elif op == 1:
                mutated.insert(j, mutated[rng.randrange(len(mutated))])
            elif op == 2:
                tokens = mutated[j].split(" ")
                tokens[rng.randrange(len(tokens))] = rng.choice(junk)
                mutated[j] = " ".join(tokens)
            elif op == 3:
                mutated[j] = mutated[j][: rng.randrange(len(mutated[j]) + 1)]
            elif op == 4 and mutated[j]:
                chars = list(mutated[j])
                chars[rng.randrange(len(chars))] = chr(rng.randrange(32, 127))
                mutated[j] = "".join(chars)
            elif op == 5:
                key, _, _value = mutated[j].partition(":")
                mutated[j] = key + ":" + rng.choice(junk)
            else:
                k = rng.randrange(len(mutated))
                mutated[j], mutated[k] = mutated[k], mutated[j]
        yield "\r\n".join(mutated) + "\r\n"


def test_fixture_parses() -> None:
    description = SessionDescription.parse(FIXTURE.read_text())
    assert [m.kind for m in description.media] == ["video", "video"]
    assert [m.direction for m in description.media] == ["sendonly", "recvonly"]
    assert "VP8" in [c.name for c in description.media[0].rtp.codecs]


def test_sdp_parse_on_mutated_offer_raises_all_sorts() -> None:
    """aiortc's SDP parser raises more than ValueError: the signaling edge must catch broadly."""
    outcomes: Counter[str] = Counter()
    for text in sdp_mutants(MUTATIONS, seed=4):
        try:
            SessionDescription.parse(text)
            outcomes["ok"] += 1
        except Exception as exc:  # recording is the point
            outcomes[type(exc).__name__] += 1
    assert outcomes["ok"] > 0 and outcomes["ValueError"] > 0, outcomes
    # aiortc's SDP parser: "one of them raises AssertionError, not ValueError" - and more than that
    assert outcomes["AssertionError"] > 0, outcomes
    assert set(outcomes) - {"ok", "ValueError"}, outcomes


@pytest.mark.parametrize(("mutation", "error"), [
    (lambda s: s.replace(" UDP/TLS/RTP/SAVPF 96 ", " UDP/TLS/RTP/SAVPF 72 ", 1), AssertionError),
    (lambda s: s.replace("m=video 58976", "m=video port", 1), AssertionError),
    (lambda s: s.replace("a=rtpmap:96 VP8/90000", "a=rtpmap:96 VP8", 1), IndexError),
    (lambda s: s.replace("a=setup:actpass", "a=setup:sideways", 1), KeyError),
    (lambda s: s.replace("a=rtcp:9 IN IP4 0.0.0.0", "a=rtcp", 1), AttributeError),
    (lambda s: s.replace("a=extmap:9 ", "a=extmap:nine ", 1), ValueError),
], ids=["forbidden payload type", "port not a number", "rtpmap without clock rate",
        "unknown setup role", "empty a=rtcp", "extmap id not a number"])
def test_sdp_parse_exception_types(mutation: Callable[[str], str], error: type) -> None:
    text = mutation(FIXTURE.read_text())
    assert text != FIXTURE.read_text()
    with pytest.raises(error):
        SessionDescription.parse(text)
