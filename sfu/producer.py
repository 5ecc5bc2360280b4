"""Producer: one incoming track (with up to three simulcast layers), fanned out to consumers.

Pure with respect to I/O: the producer never touches sockets or asyncio. Its shell (the
``Publisher``) gives it parsed packets, the layer they belong to and the time, and a callback to
ask the publisher for a keyframe on one layer's SSRC.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from sfu import native
from sfu.native import BATCH_SEND_FAILED, BatchItem, send_batch
from sfu.ratelog import handler_errors
from sfu.types import Codec, DropReason, Kind
from sfu.wire.h264 import inspect_h264
from sfu.wire.rtp_packet import (
    RtpView,
    abs_send_time_element,
    finish_extension_block,
    one_byte_element,
)
from sfu.wire.vp8 import KEY, Vp8Ids, inspect_vp8, picture_ids

if TYPE_CHECKING:
    from sfu.consumer import Consumer

KEYFRAME_REQUEST_INTERVAL_S = 0.5
"""At most one PLI per layer this often, however many subscribers ask (LiveKit throttles too)."""
BITRATE_WINDOW_S = 1.0
LAYER_STALE_S = 2.0
"""A layer that sent nothing for this long counts as stopped (paused by the client, or gone)."""
VOICE_LEVEL = 55
"""RFC 6464 level (-dBov) at or below which a packet carries voice (or its V bit is set)."""
VOICE_HOLD_S = 2.0
"""After the last voiced packet, audio keeps flowing this long (trailing words, breaths)."""
VOICE_START_GRACE_S = 1.0
"""In a gated room, a voice that starts (after VOICE_HOLD_S of silence) flows this long before
the room's tick (every 0.5 s) has ranked it among the loudest (``audio_selected``)."""


def _any_packet(payload: bytes) -> int:
    return KEY  # audio (and codecs we do not parse): every packet is a valid starting point


INSPECTORS: dict[str, Callable[[bytes], int]] = {
    "vp8": inspect_vp8,
    "h264": inspect_h264,
}
"""Per codec: INVALID (-1), DELTA (0) or KEY (1) for one payload: validation and keyframe
detection in one pass over the payload header."""


class Layer:
    """One simulcast encoding (or the only one) of a producer, lowest quality = index 0."""

    __slots__ = (
        "index", "rid", "ssrc", "bitrate_bps", "last_packet_s", "last_keyframe_s",
        "sender_report", "_window_start", "_window_bytes", "_last_keyframe_request",
        "keyframes",
    )

    def __init__(self, index: int, rid: str | None) -> None:
        self.index = index
        self.rid = rid
        self.ssrc: int | None = None
        self.bitrate_bps = 0
        self.last_packet_s = float("-inf")
        self.last_keyframe_s = float("-inf")
        self.keyframes = 0
        # (ntp, rtp) of this SSRC's latest sender report: consumers translate it (lip sync).
        self.sender_report: tuple[int, int] | None = None
        self._window_start = float("-inf")
        self._window_bytes = 0
        self._last_keyframe_request = float("-inf")

    def count(self, size: int, now: float) -> None:
        self.last_packet_s = now
        self._window_bytes += size
        elapsed = now - self._window_start
        if elapsed >= BITRATE_WINDOW_S:
            if elapsed < 2 * BITRATE_WINDOW_S:
                self.bitrate_bps = int(self._window_bytes * 8 / elapsed)
            self._window_start = now
            self._window_bytes = 0

    def active(self, now: float) -> bool:
        return now - self.last_packet_s < LAYER_STALE_S


def _asks_nothing(producer: Producer, layer: Layer) -> None:
    pass


def _no_blocks(packet: RtpView, ids: tuple[int, int], now: float) -> tuple[bytes, bytes]:
    raise RuntimeError("the producer is closed")


class Producer:
    """An incoming audio or video track of one participant."""

    def __init__(
        self,
        producer_id: str,
        participant_id: str,
        kind: Kind,
        mid: str,
        request_keyframe: Callable[[Producer, Layer], None],
        rids: list[str] | None = None,
    ) -> None:
        self.id = producer_id
        self.participant_id = participant_id
        self.kind = kind
        # A plain attribute, not a property: read per packet and per tick, and kind never changes.
        self.is_video = kind is Kind.VIDEO
        self.mid = mid
        self.source = "camera"  # or "screen" (Publisher.answer): subscribers show it large
        self.codec: Codec | None = None
        self.layers = [Layer(i, rid) for i, rid in enumerate(rids)] if rids else [Layer(0, None)]
        self.muted = False
        self.closed = False
        # The fan-out list, in forwarding order. Changed only through attach/detach (and
        # close), so one place decides who receives this track.
        self.consumers: list[Consumer] = []
        self.audio_level_ext_id: int | None = None  # the publisher's id, set on negotiation
        self.packets_received = 0
        self.bytes_received = 0
        self.keyframe_requests_sent = 0
        self.consumer_errors = 0
        # Packets refused before any consumer saw them (invalid extensions or payload headers).
        self.drops: Counter[DropReason] = Counter()
        # RFC 6464 audio levels (0 = loudest, 127 = silence), summed for speaker detection.
        self.level_sum = 0
        self.level_count = 0
        # Big rooms forward only voices: set by the room (silence from 50 people would be
        # 122k packets/s for nothing). Needs the audio-level extension; without it, all flows.
        self.silence_gating = False
        self.last_voice_s = float("-inf")
        # Big rooms also forward only the loudest few voices (sfu/policy/last_n.py): the room
        # sets this every tick; a voice that just started flows regardless for a grace period.
        self.audio_selected = True
        self.voice_started_s = float("-inf")
        self._request_keyframe = request_keyframe
        self._inspect: Callable[[bytes], int] = _any_packet
        self._vp8 = False
        # What native.forward asks for each packet's shared extension block: ``_blocks`` in one
        # C call (sfu/_fanout_blocks.c; four Python frames less per packet) where built.
        self._forward_blocks: Callable[[RtpView, tuple[int, int], float], tuple[bytes, bytes]] = (
            functools.partial(native.extension_blocks, self) if native.blocks_ready()
            else self._blocks)

    def attach(self, consumer: Consumer) -> None:
        """Start forwarding to ``consumer`` (once; a closed producer takes no one)."""
        if not self.closed and consumer not in self.consumers:
            self.consumers.append(consumer)

    def detach(self, consumer: Consumer) -> None:
        """Stop forwarding to ``consumer``; unknown consumers are ignored."""
        if consumer in self.consumers:
            self.consumers.remove(consumer)

    def set_codec(self, codec: Codec) -> None:
        self.codec = codec
        self._inspect = INSPECTORS.get(codec.name, _any_packet)
        self._vp8 = codec.name == "vp8"

    @property
    def simulcast(self) -> bool:
        return len(self.layers) > 1

    def layer_by_rid(self, rid: str) -> Layer | None:
        return next((layer for layer in self.layers if layer.rid == rid), None)

    def request_keyframe(self, now: float, layer_index: int = 0) -> None:
        """Ask the publisher for a keyframe on one layer, rate-limited across all consumers."""
        if not self.is_video or self.closed or not 0 <= layer_index < len(self.layers):
            return
        layer = self.layers[layer_index]
        if now - layer._last_keyframe_request < KEYFRAME_REQUEST_INTERVAL_S:
            return
        layer._last_keyframe_request = now
        self.keyframe_requests_sent += 1
        self._request_keyframe(self, layer)

    def receive(self, packet: RtpView, layer: Layer, now: float) -> None:
        """Forward one packet (demultiplexed, RTX-unwrapped) of ``layer`` to every consumer."""
        self.packets_received += 1
        size = len(packet.payload)
        self.bytes_received += size
        layer.count(size + packet.padding_size, now)
        consumers = self.consumers
        index = layer.index
        if not size:
            # Padding-only (the publisher's bandwidth probes): nothing to forward.
            for consumer in consumers:
                consumer.skip(packet.sequence_number, index)
            return
        if self.audio_level_ext_id is not None:
            level = packet.extensions.get(self.audio_level_ext_id)
            if level is not None:
                if len(level) != 1:
                    # RFC 6464: exactly one byte. Forwarded as it came, a wrong size makes
                    # strict receivers (aiortc) drop their whole connection.
                    self.refuse(packet, index, DropReason.BAD_EXTENSION)
                    return
                value = level[0] & 0x7F
                self.level_sum += value
                self.level_count += 1
                voiced = value <= VOICE_LEVEL or level[0] & 0x80
                if voiced:
                    if now - self.last_voice_s > VOICE_HOLD_S:
                        self.voice_started_s = now  # starts speaking: through before any tick
                    self.last_voice_s = now
                if self.silence_gating:
                    drop: DropReason | None = None
                    if not voiced and now - self.last_voice_s > VOICE_HOLD_S:
                        # Silent for a while: nobody needs it. Consumers close the gap, so
                        # the receiver sees a timestamp jump (like DTX), not loss.
                        drop = DropReason.SILENCE
                    elif (not self.audio_selected
                            and now - self.voice_started_s > VOICE_START_GRACE_S):
                        drop = DropReason.NOT_SPEAKER  # not among the loudest voices
                    if drop is not None:
                        for consumer in consumers:
                            consumer.skip(packet.sequence_number, index, drop)
                        return
        verdict = self._inspect(packet.payload)
        if verdict < 0:
            self.refuse(packet, index, DropReason.BAD_PAYLOAD)
            return
        keyframe = verdict > 0
        if keyframe and self.kind is Kind.VIDEO:
            layer.last_keyframe_s = now
            layer.keyframes += 1
        if not consumers:
            return
        # Subscribers normally share extension ids (the server writes every offer), so the
        # extension elements are built once per packet and reused by all of them.
        last_key: tuple[int, int] | None = None
        elements = block = b""
        # Copies for native writers are collected here and protected and sent in one call.
        batch: list[BatchItem] = []
        # VP8 picture ids, read once here rather than by every consumer's munger.
        vp8_ids: Vp8Ids | None | Literal[False] = (picture_ids(packet.payload) if self._vp8
                                                   else False)
        if native.forward_ready():
            # The steady-state copies in C (sfu/_fanout.c forward); the rest below.
            consumers = self._forward_native(packet, index, vp8_ids, now, batch)
        for consumer in consumers:
            key = consumer.ext_key
            if key != last_key:
                elements, block = self._blocks(packet, key, now)
                last_key = key
            try:
                consumer.send(packet, index, keyframe, elements, now, batch, block, vp8_ids)
            except Exception as exc:  # one broken consumer must not starve the others
                self.consumer_errors += 1
                handler_errors.exception("consumer", exc)
        if batch:
            self._send_batch(batch)

    def _forward_native(self, packet: RtpView, index: int, vp8_ids: Vp8Ids | None | Literal[False],
                        now: float, batch: list[BatchItem]) -> list[Consumer]:
        """``Consumer.send`` of every consumer in the steady state, in one C call; returns the
        consumers it left to ``Consumer.send`` (in order)."""
        slow: list[Consumer] = []
        errors: list[tuple[Consumer, BaseException]] = []
        failures: list[tuple[Consumer, int, int, int]] | None = None
        try:
            if native.fused_ready():  # its copies protected and sent in the same call
                failures = native.forward_send(
                    self.consumers, index, packet.sequence_number, packet.timestamp,
                    packet.marker, packet.payload, vp8_ids, now, self._forward_blocks, packet,
                    slow, errors)
            else:  # its copies queued in ``batch`` for ``_send_batch``
                native.forward(self.consumers, index, packet.sequence_number, packet.timestamp,
                               packet.marker, packet.payload, vp8_ids, now, batch,
                               self._forward_blocks, packet, slow, errors)
        except TypeError:  # an argument it cannot take (checked before any copy): all in Python
            return self.consumers
        for _consumer, exc in errors:  # as the loop's except in ``receive``
            self.consumer_errors += 1
            handler_errors.exception("consumer", exc)
        if failures:
            for consumer, reason, head_size, payload_size in failures:
                consumer.batch_failed(reason, head_size, payload_size)
        return slow

    def _blocks(self, packet: RtpView, key: tuple[int, int], now: float) -> tuple[bytes, bytes]:
        elements = self._extension_elements(packet, key, now)
        return elements, finish_extension_block(elements)

    def _send_batch(self, batch: list[BatchItem]) -> None:
        try:
            failures = send_batch(batch)
        except Exception as exc:  # noqa: BLE001 - only a malformed item (a bug of ours) raises
            handler_errors.exception("native fan-out", exc)
            failures = [(i, BATCH_SEND_FAILED) for i in range(len(batch))]
        if failures:
            for index, reason in failures:
                _target, head, payload, consumer = batch[index]
                consumer.batch_failed(reason, len(head), len(payload))

    def refuse(self, packet: RtpView, index: int, reason: DropReason) -> None:
        """Count an invalid packet once; consumers close its sequence gap (no NACK for it)."""
        self.drops[reason] += 1
        for consumer in self.consumers:
            consumer.skip(packet.sequence_number, index, reason, count=False)

    def _extension_elements(self, packet: RtpView, key: tuple[int, int], now: float) -> bytes:
        audio_level_id, abs_send_time_id = key
        elements = b""
        if audio_level_id and self.audio_level_ext_id is not None:
            level = packet.extensions.get(self.audio_level_ext_id)
            if level is not None:
                elements = one_byte_element(audio_level_id, level)
        if abs_send_time_id:
            elements += abs_send_time_element(abs_send_time_id, now)
        return elements

    def take_level(self) -> float | None:
        """Mean audio level (-dBov) since the last call, None without level data."""
        if not self.level_count:
            return None
        mean = self.level_sum / self.level_count
        self.level_sum = self.level_count = 0
        return mean

    def close(self) -> None:
        self.closed = True
        for consumer in list(self.consumers):
            consumer.close()
        self.consumers.clear()
        # Subscribers' closed consumers may hold a closed producer a while (a slot's previous
        # stream): it no longer holds its publisher, nor itself (sfu/gctune.py).
        self._request_keyframe = _asks_nothing
        self._forward_blocks = _no_blocks

