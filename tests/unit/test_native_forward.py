"""``native.forward`` (sfu/_fanout.c): the steady-state ``Consumer.send`` of a whole fan-out in
C must give exactly what the Python path gives: the same header and payload bytes per
subscriber, the same rewriter, history, counter and transport-cc state, whatever mix of
switches, pauses, reordering, padding, VP8 picture id offsets, extension ids, transport-cc and
non-native writers the stream brings (those take ``Consumer.send``, consumer by consumer).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from sfu import aiortc_hooks, native
from sfu import producer as producer_module
from sfu.consumer import RTP_OVERHEAD, Consumer
from sfu.producer import Producer
from sfu.types import Codec, Kind, PauseReason
from sfu.wire.rtp_packet import RtpView
from sfu.wire.twcc import TransportSequencer
from tests.unit.helpers import VP8_IN, ListWriter, rtp_view, vp8_payload

pytestmark = pytest.mark.skipif(not native.forward_ready(),
                                reason="sfu._fanout not built (pip install -e .)")


@pytest.fixture(autouse=True)
def _two_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """``forward`` + a stand-in ``send_batch`` here: the targets are no sockets or sessions, so
    ``forward_send`` (which sends itself) is compared in tests/unit/test_native_fanout.py."""
    monkeypatch.setattr(native, "_FUSED_READY", [False])

VP8_OUT = Codec("video/VP8", 90000, 100, 101)
OPUS_IN = Codec("audio/opus", 48000, 111)
OPUS_OUT = Codec("audio/opus", 48000, 109)


class Sent:
    """Stands in for ``native.send_batch``: keeps every queued copy per target."""

    def __init__(self) -> None:
        self.copies: dict[int, list[tuple[bytes, bytes]]] = {}

    def __call__(self, batch: list[Any]) -> None:
        for target, head, payload, _consumer in batch:
            self.copies.setdefault(target[1], []).append((head, payload))


def writer(index: int) -> aiortc_hooks.DatagramWriter:
    w = aiortc_hooks.DatagramWriter(object(), use_native=False)  # type: ignore[arg-type]
    w._native = (0, index, b"")  # a target the stand-in send_batch tells apart
    w._sendto = lambda data, addr: None
    return w


def build(video: bool) -> tuple[Producer, list[Consumer], list[Any], ListWriter]:
    random.seed(11)  # consumers draw their first sequence number and timestamp
    producer = Producer("p:1", "p", Kind.VIDEO if video else Kind.AUDIO, "1",
                        lambda p, layer: None, ["q", "h"] if video else None)
    producer.set_codec(VP8_IN if video else OPUS_IN)
    producer.audio_level_ext_id = None if video else 1
    python_writer = ListWriter()
    consumers, writers = [], []
    for i in range(6):
        w: Any = python_writer if i == 5 else writer(i)
        if i == 4:  # not connected natively: Consumer.send's Python path, per copy
            w._native = None
            w._srtp = type("Plain", (), {"protect": staticmethod(bytes)})()
            w._sendto = lambda data, addr: python_writer.rtp.append(data)
        consumer = Consumer(producer, f"s{i}", "0", 7000 + i, 8000 + i, w)
        # A ring of 16 that wraps and sequence numbers that pass 0xFFFF -> 0 early on.
        twcc = TransportSequencer(size=16, first_seq=0xFFF8 - 3 * i) if i % 2 else None
        consumer.configure(VP8_OUT if video else OPUS_OUT,
                           audio_level_id=0 if video else 1 + i % 2,
                           abs_send_time_id=3 if i != 2 else 0, twcc=twcc,
                           twcc_id=5 if twcc else 0)
        producer.attach(consumer)
        consumers.append(consumer)
        writers.append(w)
    return producer, consumers, writers, python_writer


def video_stream() -> Iterator[tuple[str, Any]]:
    """(action, argument): packets of two layers, a reordered one, padding, policy changes."""
    pid = {0: 100, 1: 9000}
    for i in range(120):
        for layer in (0, 1):
            key = i % 40 == 0
            seq = (65500 + i) if layer == 0 else (30000 + i)  # layer 0 wraps
            payload = vp8_payload(pid[layer], (i // 3) & 0xFF, key=key, start=True)
            payload += bytes([i & 0xFF]) * (50 + i % 7)
            yield "packet", (layer, rtp_view(seq & 0xFFFF, 3000 * (i // 3) + layer,
                                             payload, marker=i % 3 == 2,
                                             ssrc=0xA0 + layer))
            if i % 3 == 2:
                pid[layer] = (pid[layer] + 1) & 0x7FFF
        if i == 10:
            yield "target", 1  # every consumer moves up at the next keyframe of layer 1
        if i == 15:  # a late packet of layer 1 (reordered) and a padding-only one
            yield "packet", (1, rtp_view((30000 + 13) & 0xFFFF, 3000 * 4 + 1,
                                         vp8_payload(9004, 4, key=False), ssrc=0xA1))
            yield "packet", (1, rtp_view((30000 + 16), 3000 * 5 + 1, b"", ssrc=0xA1))
        if i == 50:
            yield "pause", None
        if i == 55:
            yield "target", 0  # resumes at layer 0's next keyframe: picture id offsets
        if i == 90:
            yield "target", 1


def drive(video: bool, use_forward: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(native, "_FORWARD_READY", [use_forward])
    sent = Sent()
    monkeypatch.setattr(producer_module, "send_batch", sent)
    producer, consumers, writers, python_writer = build(video)
    calls = [0]
    original = Consumer.send

    def counting_send(self: Consumer, *args: Any, **kwargs: Any) -> None:
        calls[0] += 1
        original(self, *args, **kwargs)

    monkeypatch.setattr(Consumer, "send", counting_send)
    next_calls = [0]
    original_next = TransportSequencer.next

    def counting_next(self: TransportSequencer, *args: Any) -> int:
        next_calls[0] += 1
        return original_next(self, *args)

    monkeypatch.setattr(TransportSequencer, "next", counting_next)
    if video:
        stream: Iterator[tuple[str, Any]] = video_stream()
    else:
        stream = iter([("packet", (0, rtp_view(
            (60000 + i) & 0xFFFF, 960 * i, bytes([i & 0xFF]) * (40 + i % 5), marker=0,
            extensions={1: bytes([0x80 | (i % 60)])}))) for i in range(200)])
    now = 1000.0
    for action, argument in stream:
        now += 0.005
        if action == "packet":
            layer, packet = argument
            producer.receive(packet, producer.layers[layer], now)
        elif action == "target":
            for consumer in consumers:
                consumer.set_target(argument)
        elif action == "pause":
            for consumer in consumers[::2]:
                consumer.set_target(None, PauseReason.BANDWIDTH)
    monkeypatch.setattr(Consumer, "send", original)
    monkeypatch.setattr(TransportSequencer, "next", original_next)
    state: dict[str, Any] = {"sent": sent.copies, "python": python_writer.rtp,
                             "errors": producer.consumer_errors, "send_calls": calls[0],
                             "next_calls": next_calls[0]}
    for i, (consumer, w) in enumerate(zip(consumers, writers, strict=True)):
        history = consumer._history
        state[f"c{i}"] = (
            consumer.packets_sent, consumer.octets_sent, dict(consumer.drops),
            consumer.current_layer, consumer.layer_switches,
            consumer._seq._highest, consumer._seq._offset, consumer._seq.last_output,
            consumer._ts.offset, consumer._ts.last_output, consumer._ts._last_time,
            consumer._vp8.last_picture_id, consumer._vp8.last_tl0picidx,
            consumer._vp8._pid_offset, consumer._vp8._tl0_offset,
            None if history is None else (
                history._payloads and list(history._payloads),
                history._info and list(history._info),
                history._prefixes and list(history._prefixes)),
            getattr(w, "sent_packets", None), getattr(w, "sent_bytes", None),
            sequencer_state(consumer.twcc),
        )
    return state


def sequencer_state(twcc: Any) -> tuple[Any, ...] | None:
    """Every slot of a TransportSequencer, its typed arrays item by item."""
    if not isinstance(twcc, TransportSequencer):
        return None
    return (twcc._seq, twcc._ext, twcc._first_ext, twcc._mask, twcc._capacity,
            list(twcc._times), list(twcc._sizes), list(twcc._clusters), twcc._tail,
            twcc._window_bytes, dict(twcc._cluster_sent), twcc.active_cluster,
            list(twcc._closed))


@pytest.mark.parametrize("video", [True, False], ids=["vp8-simulcast", "opus-levels"])
def test_native_forward_matches_the_python_path(video: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    python = drive(video, False, monkeypatch)
    with_c = drive(video, True, monkeypatch)
    assert python["errors"] == with_c["errors"] == 0
    assert sum(len(c) for c in python["sent"].values()) > 300  # the stream did flow
    for key in python:
        if key not in ("send_calls", "next_calls"):
            assert with_c[key] == python[key], key
    # Copies in the steady state took the C path (switches, pauses, the other layer, a
    # pending switch and the Python writers took Consumer.send).
    assert with_c["send_calls"] <= python["send_calls"] - 100
    # ... and so did their transport-cc numbers: the Python method only for Consumer.send's.
    assert with_c["next_calls"] <= python["next_calls"] - 50
    if video:  # the stream did reach the interesting cases
        state = python["c0"]
        assert state[4] >= 1 and state[13] != 0  # a layer switch; a picture id offset
    for i in (1, 3):  # transport-cc: the ring wrapped, the sequence number passed 0xFFFF
        twcc = python[f"c{i}"][-1]
        assert twcc[1] - twcc[2] > 2 * twcc[4] and twcc[8] == twcc[1] - twcc[4]
        assert twcc[0] < twcc[2] and twcc[9] == sum(twcc[6])
        heads = [RtpView.parse(h + p) for h, p in python["sent"][1]]
        assert any(v.extensions.get(5) for v in heads)  # transport-cc on consumer 1


def test_forward_counts_a_failing_consumer_and_serves_the_others(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception after a copy's state changed (here: its transport-cc sequencer) is
    counted like one from ``Consumer.send``; the other consumers still get the packet."""
    monkeypatch.setattr(native, "_FORWARD_READY", [True])
    sent = Sent()
    monkeypatch.setattr(producer_module, "send_batch", sent)
    producer, consumers, _writers, _python = build(False)

    class Broken(TransportSequencer):
        def next(self, size: int, now_s: float, probe_cluster: int = -1) -> int:
            raise RuntimeError("sequencer bug")

    consumers[1].twcc = Broken()
    for i in range(3):
        producer.receive(rtp_view(10 + i, 960 * i, b"voice", extensions={1: b"\x81"}),
                         producer.layers[0], 10.0 + i)
    assert producer.consumer_errors == 3
    assert 1 not in sent.copies and all(len(sent.copies[i]) == 3 for i in (0, 2, 3))


def probe_run(use_forward: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Audio through consumers 1 and 3 (transport-cc, ring of 16) with a probe running for
    packets 20-39: those packets belong to its cluster, counted by the Python method."""
    monkeypatch.setattr(native, "_FORWARD_READY", [use_forward])
    sent = Sent()
    monkeypatch.setattr(producer_module, "send_batch", sent)
    producer, consumers, _writers, _python = build(False)
    calls: dict[int, list[int]] = {1: [], 3: []}
    original_next = TransportSequencer.next

    def counting_next(self: TransportSequencer, *args: Any) -> int:
        for i in calls:
            if consumers[i].twcc is self:
                calls[i].append(packet_index[0])
        return original_next(self, *args)

    monkeypatch.setattr(TransportSequencer, "next", counting_next)
    packet_index = [0]
    for n in range(45):
        packet_index[0] = n
        if n in (20, 40):
            for i in calls:
                twcc = consumers[i].twcc
                assert isinstance(twcc, TransportSequencer)
                twcc.open_cluster(7 + i) if n == 20 else twcc.close_cluster(7 + i)
        producer.receive(rtp_view((60000 + n) & 0xFFFF, 960 * n, bytes(40 + n % 5),
                                  extensions={1: b"\x85"}), producer.layers[0], 50.0 + n * 0.02)
    monkeypatch.setattr(TransportSequencer, "next", original_next)
    return {"sent": sent.copies, "errors": producer.consumer_errors, "calls": calls,
            "twcc": [sequencer_state(consumers[i].twcc) for i in calls]}


def test_a_running_probe_takes_the_python_method(monkeypatch: pytest.MonkeyPatch) -> None:
    python = probe_run(False, monkeypatch)
    with_c = probe_run(True, monkeypatch)
    assert python["errors"] == with_c["errors"] == 0
    assert with_c["sent"] == python["sent"] and with_c["twcc"] == python["twcc"]
    for state, cluster in zip(python["twcc"], (8, 10), strict=True):
        assert state is not None
        assert state[10] == {cluster: 20}  # _cluster_sent: every packet of the probe
        assert state[7].count(cluster) == 11 and state[7].count(-1) == 5  # ring of 16
    for i, indices in python["calls"].items():
        assert indices == list(range(45)), i  # the Python path: every copy
    for i, indices in with_c["calls"].items():
        # The C path: the first copy (Consumer.send allocates the NACK ring) and the probe's.
        assert indices == [0, *range(20, 40)], i


class Stamper:
    """A transport-cc stamper that is no TransportSequencer (Consumer's TransportStamper
    protocol): the C path calls its ``next``."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float]] = []

    def next(self, size: int, now_s: float, probe_cluster: int = -1) -> int:
        self.calls.append((size, now_s))
        return (0xFFFD + len(self.calls)) & 0xFFFF


@pytest.mark.parametrize("use_forward", [False, True], ids=["python", "native"])
def test_a_stamper_of_another_class_is_called(use_forward: bool,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "_FORWARD_READY", [use_forward])
    sent = Sent()
    monkeypatch.setattr(producer_module, "send_batch", sent)
    producer, consumers, _writers, _python = build(False)
    stamper = Stamper()
    consumers[1].twcc = stamper
    for n in range(5):
        producer.receive(rtp_view(10 + n, 960 * n, bytes(30), extensions={1: b"\x81"}),
                         producer.layers[0], 10.0 + n)
    assert producer.consumer_errors == 0
    assert [size for size, _now in stamper.calls] == [30 + RTP_OVERHEAD] * 5
    numbers = [RtpView.parse(head + payload).extensions[5] for head, payload in sent.copies[1]]
    assert numbers == [((0xFFFE + n) & 0xFFFF).to_bytes(2, "big") for n in range(5)]


class WideStamper(Stamper):
    """A stamper that hands out a number past 16 bits: ``transport_cc_element`` refuses it."""

    def next(self, size: int, now_s: float, probe_cluster: int = -1) -> int:
        self.calls.append((size, now_s))
        return 0x10000 + len(self.calls)


@pytest.mark.parametrize("use_forward", [False, True], ids=["python", "native"])
def test_a_transport_number_past_16_bits_is_refused_on_both_paths(
        use_forward: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The C path wrote such a number masked to 16 bits where the Python path raised: both now
    count the consumer's error and send it nothing; the others get every packet."""
    monkeypatch.setattr(native, "_FORWARD_READY", [use_forward])
    sent = Sent()
    monkeypatch.setattr(producer_module, "send_batch", sent)
    producer, consumers, _writers, _python = build(False)
    consumers[1].twcc = WideStamper()
    for n in range(3):
        producer.receive(rtp_view(10 + n, 960 * n, bytes(30), extensions={1: b"\x81"}),
                         producer.layers[0], 10.0 + n)
    assert producer.consumer_errors == 3
    assert 1 not in sent.copies and all(len(sent.copies[i]) == 3 for i in (0, 2, 3))


def test_an_int_someone_else_holds_is_never_changed_in_place(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The C path changes a counter's int in place only while its slot is the one reference
    (sfu/_fanout.h fanout_int_reusable): values read out by anyone keep their values."""
    monkeypatch.setattr(native, "_FORWARD_READY", [True])
    monkeypatch.setattr(producer_module, "send_batch", Sent())
    producer, consumers, writers, _python = build(False)

    def voice(n: int) -> RtpView:
        return rtp_view(1000 + n, 960 * n, bytes(300 + n), extensions={1: b"\x81"})

    def watched() -> list[Any]:
        c, w, twcc = consumers[1], writers[1], consumers[1].twcc
        assert isinstance(twcc, TransportSequencer)
        return [c.packets_sent, c.octets_sent, w.sent_packets, w.sent_bytes, c._seq._highest,
                c._seq.last_output, twcc._ext, twcc._window_bytes, twcc._tail]

    for n in range(40):  # past the small ints, the ring of 16 wrapped
        producer.receive(voice(n), producer.layers[0], 10.0 + n * 0.02)
    held = watched()
    snapshot = [str(v) for v in held]
    for n in range(40, 45):
        producer.receive(voice(n), producer.layers[0], 10.0 + n * 0.02)
    assert [str(v) for v in held] == snapshot
    now = watched()
    assert now[0] == held[0] + 5 and now[1] > held[1] and now[6] == held[6] + 5
    assert consumers[1].packets_sent == 45 and producer.consumer_errors == 0
