"""Last-N video slots: which producer each of a subscriber's pooled video m-lines carries.

Pure policy (no I/O, time passed in). A subscriber in a room with last-N receives camera videos
on a fixed pool of at most N video m-lines ("slots"). While the room has no more cameras than
slots, every camera gets its own slot as it arrives (the pool grows by renegotiation, as one
m-line per track did). Beyond that, no m-line is added: last-N's choice is mapped onto the
slots sticky-first, and the shell (``sfu/video_slots.py``) switches a slot's outgoing stream
to its new producer without renegotiation (the consumer's rewriters keep one continuous stream).

Sticky-first: a source that stays wanted keeps its slot; a wanted source without one takes a free
slot first, then a new one while the pool is under its capacity, then the slot whose source has
been unwanted the longest (so a speaker who just left last-N and comes back soon usually still
has its slot). Sources are opaque strings (the shell uses producer ids).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

__all__ = ["SlotMove", "VideoSlotAssignment"]


@dataclass(frozen=True, slots=True)
class SlotMove:
    """Slot ``index`` carries ``new`` from now on (``old`` before, None: the slot was free);
    ``grow``: the slot is new (its m-line must be added, which renegotiates)."""

    index: int
    old: str | None
    new: str
    grow: bool = False


@dataclass
class VideoSlotAssignment:
    capacity: int
    """At most this many slots (N); a smaller capacity later keeps the slots already made."""
    slots: list[str | None] = field(default_factory=list)
    _unwanted_since: list[float] = field(default_factory=list)

    def index_of(self, source: str) -> int | None:
        try:
            return self.slots.index(source)
        except ValueError:
            return None

    def resize(self, capacity: int) -> None:
        """N changed: a larger pool may grow; a smaller one keeps its m-lines (removing one
        would renegotiate), only fewer of them are wanted."""
        self.capacity = max(0, capacity)

    def admit(self, source: str, now: float) -> SlotMove | None:
        """A new source (a camera came): its own slot while there is room (a free slot, or a
        new one under the capacity), else None (it waits until last-N wants it)."""
        if source in self.slots:
            return None
        move = self._free_or_new(source, now)
        if move is not None:
            self._unwanted_since[move.index] = now
        return move

    def leave(self, source: str) -> int | None:
        """The source left (its producer is gone): its slot is free; its index, or None."""
        index = self.index_of(source)
        if index is not None:
            self.slots[index] = None
        return index

    def place(self, wanted: Sequence[str], available: Collection[str],
              now: float) -> list[SlotMove]:
        """Map ``wanted`` (last-N's choice, highest priority first) onto the slots.

        Only sources in ``available`` (present and able to take a slot) count; at most
        ``capacity`` of them, by priority. Returns the slots that change hands."""
        want: list[str] = []
        for source in wanted:
            if source in available and source not in want:
                want.append(source)
        del want[max(self.capacity, 0):]
        wanted_set = set(want)
        for index, held in enumerate(self.slots):
            if held is not None and held in wanted_set:
                self._unwanted_since[index] = float("inf")  # wanted now: never evicted first
            elif self._unwanted_since[index] == float("inf"):
                self._unwanted_since[index] = now  # unwanted from now on
        moves: list[SlotMove] = []
        for source in want:
            if source in self.slots:
                continue
            move = self._free_or_new(source, now)
            if move is None:
                move = self._evict(source, wanted_set)
            if move is None:
                break  # every slot carries a wanted source (capacity shrank below the pool)
            self._unwanted_since[move.index] = float("inf")
            moves.append(move)
        return moves

    def _free_or_new(self, source: str, now: float) -> SlotMove | None:
        for index, held in enumerate(self.slots):
            if held is None:
                self.slots[index] = source
                return SlotMove(index, None, source)
        if len(self.slots) < self.capacity:
            self.slots.append(source)
            self._unwanted_since.append(now)
            return SlotMove(len(self.slots) - 1, None, source, grow=True)
        return None

    def _evict(self, source: str, wanted: set[str]) -> SlotMove | None:
        candidates = [(since, index) for index, (held, since)
                      in enumerate(zip(self.slots, self._unwanted_since, strict=True))
                      if held is not None and held not in wanted]
        if not candidates:
            return None
        _since, index = min(candidates)
        old = self.slots[index]
        self.slots[index] = source
        return SlotMove(index, old, source)
