"""A subscriber's pool of last-N video slots: the shell around ``VideoSlotAssignment``.

Camera videos of a participant subscriber in a room with last-N travel on at most N video
m-lines. While the room has no more cameras than that, each camera gets its own m-line as it
comes (renegotiated, as before). Beyond N no m-line is added: a camera without a slot waits,
and when last-N's choice changes a slot is switched to it without renegotiation. The slot's
consumer is replaced by one of the new producer that continues the old one's stream (same SSRC
and RTX SSRC; the same sequence, timestamp and VP8 picture-id rewriters and NACK history,
``Consumer(continue_from=...)``), so the client sees one continuous stream on that m-line.

The new consumer starts as any consumer does: paused until negotiated, then waiting for a
keyframe of its target layer (it asks the publisher through the rate-limited PLI path) and
re-syncing every rewriter on it. The old producer is not forwarded meanwhile: it has left
last-N, which pauses it anyway (as Jitsi does when an endpoint leaves last-N); the client keeps
the slot's last frame until the new keyframe. At that keyframe the client is told which
participant the slot shows now (``SlotShown``, the ``slot`` message), so it moves the track to
that participant's tile when the new picture starts, not before.

Screen shares, audio, relays (every layer, per producer) and local subscribers (the recorder)
keep one m-line or consumer per producer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sfu.consumer import Consumer
from sfu.events import EventSink, SlotShown
from sfu.policy.video_slots import SlotMove, VideoSlotAssignment
from sfu.producer import Producer

if TYPE_CHECKING:
    from sfu.subscriber_negotiator import Slot

__all__ = ["VideoSlots", "pooled"]


POOLED_CODEC = "vp8"
"""The codec of every pooled m-line: a slot negotiated for one codec cannot carry another
without renegotiating, so only VP8 cameras (the web client's and the load generator's) share the
pool; a camera in another codec (an H.264 endpoint) keeps its own m-line, paused by last-N."""


def pooled(producer: Producer) -> bool:
    """Whether a producer travels on the pool: a VP8 camera (screens keep their own m-line)."""
    return (producer.is_video and producer.source == "camera" and producer.codec is not None
            and producer.codec.name == POOLED_CODEC)


def _consumes_nothing(producer: Producer, line: Slot | None) -> Slot:
    raise RuntimeError("the subscriber of these video slots is closed")


@dataclass
class VideoSlots:
    """The pool of one subscriber. ``consume(producer, line)`` makes and registers the consumer
    of a producer on an m-line (None: a new m-line; the consumer continues ``line.previous``)
    and returns the m-line; ``drop(consumer)`` unregisters and closes one without touching its
    m-line (the subscriber's two halves of add/remove_producer)."""

    assignment: VideoSlotAssignment
    consume: Callable[[Producer, Slot | None], Slot]
    drop: Callable[[Consumer], None]
    notify: EventSink
    time: Callable[[], float]
    producers: dict[str, Producer] = field(default_factory=dict)  # every pooled one, by id
    lines: list[Slot] = field(default_factory=list)  # the m-line of each slot
    wanted: tuple[str, ...] = ()  # last-N's latest choice (participant ids, by priority)
    switches: int = 0

    @property
    def waiting(self) -> list[str]:
        """Producers without a slot (their owner is not in last-N, or no slot was free)."""
        return [p for p in self.producers if p not in self.assignment.slots]

    def dismantle(self) -> None:
        """Closed with its subscriber: drop the lines, producers and callbacks into it (cycles
        through its bound methods), so reference counting frees them (sfu/gctune.py)."""
        self.lines.clear()
        self.producers.clear()
        self.consume = _consumes_nothing
        self.drop = self.notify = lambda _item: None  # type: ignore[assignment]

    def resize(self, n: int) -> None:
        self.assignment.resize(n)
        self.follow(self.wanted)

    def add(self, producer: Producer) -> None:
        if producer.id in self.producers:
            return
        self.producers[producer.id] = producer
        move = self.assignment.admit(producer.id, self.time())
        if move is not None:
            self._apply(move)
        else:
            self.follow(self.wanted)

    def remove(self, producer_id: str) -> None:
        """The producer is gone: its slot (if any) is free and kept for the next one without
        renegotiation."""
        if self.producers.pop(producer_id, None) is None:
            return
        index = self.assignment.leave(producer_id)
        if index is not None:
            self._vacate(self.lines[index])
        self.follow(self.wanted)

    def _vacate(self, line: Slot) -> Consumer | None:
        """Drop the line's consumer (kept as ``previous``: the next one continues its stream)."""
        old = line.consumer
        if old is not None:
            self.drop(old)
            line.previous = old
            line.consumer = None
        return old

    def follow(self, wanted: Sequence[str]) -> None:
        """Last-N chose ``wanted`` (participant ids, highest priority first): map it onto the
        slots, switching those that change hands."""
        self.wanted = tuple(wanted)
        by_owner: dict[str, str] = {}
        for producer in self.producers.values():
            if not producer.closed:
                by_owner.setdefault(producer.participant_id, producer.id)
        sources = [by_owner[owner] for owner in self.wanted if owner in by_owner]
        for move in self.assignment.place(sources, set(by_owner.values()), self.time()):
            self._apply(move)

    def _apply(self, move: SlotMove) -> None:
        producer = self.producers[move.new]
        if move.grow:
            line = self.consume(producer, None)
            line.pooled = True
            self.lines.append(line)
            return
        line = self.lines[move.index]
        old = self._vacate(line)
        shown_before = old is not None and old.packets_sent > 0
        self.consume(producer, line)
        consumer = line.consumer
        assert consumer is not None
        if move.old is not None or line.previous is not None:
            self.switches += 1
        if not shown_before:
            # Nothing of the old producer reached the client: the next offer's track map may
            # name the new one at once.
            line.stream_id = producer.participant_id
        consumer.on_first_frame = lambda c, line=line: self._shown(line, c)

    def _shown(self, line: Slot, consumer: Consumer) -> None:
        """The new producer's first keyframe goes out on this slot: the client moves it."""
        if line.consumer is not consumer:
            return
        line.stream_id = consumer.producer.participant_id
        mid = line.transceiver.mid
        if mid is not None:
            self.notify(SlotShown(mid, consumer.producer.participant_id,
                                  consumer.producer.source))
