"""Last-N: whose video and whose audio one subscriber receives in a big room.

Pure policy (no I/O, time passed in): the room's shell (``LastN`` in ``sfu/last_n.py``, at
each room tick) feeds it who publishes video, who is pinned, who speaks and what the client
shows, and hands the result to each subscriber's ``DownlinkPolicy`` (videos left out are paused with
``PauseReason.NOT_IN_LAST_N``) and to the audio producers (``Producer.audio_selected``).

Video, in order until N are chosen: the pinned participant (the chair's choice), the current
speakers (loudest first), the recent speakers (most recent first), then the tiles the client
says it shows (its gallery page). A client that never said what it shows (an endpoint, the load
generator) is filled up with what it already received, then in join order, so its set changes
only when a speaker comes in.

Audio: the three loudest voices; anyone who starts speaking is let through by the producer at
once (``sfu/producer.py``), before the next tick can rank them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

DEFAULT_LAST_N = 9
"""Videos one participant receives: a 3x3 gallery page."""
MAX_LAST_N = 49  # a 7x7 page: the most the web client pages
RECENT_SPEAKER_S = 20.0
"""A participant who spoke within this long still counts as a recent speaker."""
MAX_RECENT_SPEAKERS = 3
"""Recent (no longer current) speakers kept ahead of the client's page: enough to follow a
discussion, few enough that a paged gallery still shows its own tiles."""
MAX_AUDIO_SPEAKERS = 3


@dataclass
class SpeakerHistory:
    """When each participant last was among the room's speakers."""

    recent_s: float = RECENT_SPEAKER_S
    _last: dict[str, float] = field(default_factory=dict)

    def update(self, speakers: Iterable[str], now: float) -> None:
        for participant_id in speakers:
            self._last[participant_id] = now
        for participant_id in [p for p, at in self._last.items() if now - at > self.recent_s]:
            del self._last[participant_id]

    def forget(self, participant_id: str) -> None:
        self._last.pop(participant_id, None)

    def recent(self, now: float) -> list[str]:
        """Recent speakers, most recent first (ties by id, so the order is stable)."""
        alive = [(at, p) for p, at in self._last.items() if now - at <= self.recent_s]
        return [p for _at, p in sorted(alive, key=lambda item: (-item[0], item[1]))]

    def heard_since(self, recent: Sequence[str], since: float) -> list[str]:
        """Those of ``recent`` who spoke at or after ``since`` (order kept). A subscriber who
        joined later never heard the others speak: its client does not rank them first, so
        ranking them ahead of its page would forward videos off its page."""
        return [p for p in recent if self._last.get(p, float("-inf")) >= since]


def select_videos(
    n: int,
    publishers: Sequence[str],
    *,
    pinned: str | None = None,
    speakers: Sequence[str] = (),
    recent: Sequence[str] = (),
    shown: Sequence[str] | None = None,
    previous: Sequence[str] = (),
) -> tuple[str, ...]:
    """The (at most ``n``) participants whose video one subscriber receives, in priority order.

    ``publishers``: everyone else whose camera is on, in join order (only they can be chosen).
    ``speakers``: the current speakers, loudest first. ``recent``: recent speakers, most recent
    first (current ones may repeat: each id counts once). ``shown``: the client's page, or None
    when it never said; then ``previous`` (what it received) and join order fill the rest.
    """
    if n <= 0:
        return ()
    candidates = set(publishers)
    chosen: list[str] = []
    seen: set[str] = set()

    def take(ids: Iterable[str], limit: int | None = None) -> None:
        taken = 0
        for participant_id in ids:
            if len(chosen) >= n or (limit is not None and taken >= limit):
                return
            if participant_id in candidates and participant_id not in seen:
                seen.add(participant_id)
                chosen.append(participant_id)
                taken += 1

    if pinned is not None:
        take((pinned,))
    take(speakers)
    take((p for p in recent if p not in speakers), MAX_RECENT_SPEAKERS)
    if shown is not None:
        take(shown)
    else:
        take(previous)
        take(publishers)
    return tuple(chosen)


def select_audio(levels: Mapping[str, float], k: int = MAX_AUDIO_SPEAKERS) -> frozenset[str]:
    """The ``k`` loudest participants by mean RFC 6464 level (-dBov: lower is louder)."""
    ranked = sorted(levels.items(), key=lambda item: (item[1], item[0]))
    return frozenset(participant_id for participant_id, _level in ranked[:k])
