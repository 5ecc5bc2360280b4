"""The room's last-N shell: runs the pure selection (``sfu/policy/last_n.py``) at the room's
tick and applies it.

Video: each subscriber's ``DownlinkPolicy.forwarded`` (consumers of the others are paused,
``PauseReason.NOT_IN_LAST_N``; the uplink control switches off a simulcast layer nobody
wants, as for hidden tiles) and a ``VideosForwarded`` event when the set changes. Audio: in
gated rooms each audio producer's ``audio_selected``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sfu.events import VideosForwarded
from sfu.policy.last_n import SpeakerHistory, select_audio, select_videos
from sfu.types import Kind

if TYPE_CHECKING:
    from sfu.room import Participant


@dataclass
class LastN:
    n: int  # 0: off (every video is forwarded)
    history: SpeakerHistory = field(default_factory=SpeakerHistory)
    shown: dict[str, tuple[str, ...]] = field(default_factory=dict)  # by subscriber id
    forwarded: dict[str, tuple[str, ...]] = field(default_factory=dict)  # by subscriber id
    now: float = 0.0  # the latest tick's time (a join between ticks uses it)
    # What the last choice for everyone was made from: a tick with the same inputs changes
    # nobody's set (each set is a fixed point of the selection fed with itself), so it is
    # skipped (50 selections of 49 candidates every 0.5 s in a room of 50). A single
    # participant's change (a join, its page) chooses for it at once, through ``select``.
    _inputs: tuple[object, ...] | None = None

    def forget(self, participant_id: str) -> None:
        self._inputs = None
        self.history.forget(participant_id)
        self.shown.pop(participant_id, None)
        self.forwarded.pop(participant_id, None)

    def tick(self, participants: Iterable[Participant], speakers: Sequence[str],
             pinned: str | None, now: float) -> None:
        self.now = now
        self.history.update(speakers, now)
        self.select_all(participants, speakers, pinned)

    def select_all(self, participants: Iterable[Participant], speakers: Sequence[str],
                   pinned: str | None) -> None:
        """Choose again for everyone (a tick, a new pin)."""
        everyone = list(participants)
        if self.n <= 0:
            return
        publishers = [p.id for p in everyone if _sends_video(p)]
        recent = self.history.recent(self.now)
        inputs = (tuple(p.id for p in everyone), tuple(publishers), tuple(speakers), pinned,
                  tuple(recent))
        if inputs == self._inputs:
            return
        self._inputs = inputs
        for participant in everyone:
            self._select(participant, publishers, speakers, pinned, recent)

    def select(self, participant: Participant, everyone: Iterable[Participant],
               speakers: Sequence[str], pinned: str | None) -> None:
        """Choose again for one participant (it joined, or its page changed)."""
        if self.n <= 0:
            return
        publishers = [p.id for p in everyone if _sends_video(p)]
        self._select(participant, publishers, speakers, pinned, self.history.recent(self.now))

    def _select(self, participant: Participant, publishers: Sequence[str],
                speakers: Sequence[str], pinned: str | None, recent: Sequence[str]) -> None:
        subscriber = participant.subscriber
        if subscriber is None:
            return
        previous = self.forwarded.get(participant.id)
        if recent:  # only those it heard speak (a newcomer's gallery knows no earlier ones)
            recent = self.history.heard_since(recent, participant.joined_at)
        chosen = select_videos(
            self.n, [p for p in publishers if p != participant.id], pinned=pinned,
            speakers=speakers, recent=recent, shown=self.shown.get(participant.id),
            previous=previous or (),
        )
        self.forwarded[participant.id] = chosen  # the order too: it ranks the next fill
        if previous is not None and set(chosen) == set(previous):
            return
        subscriber.downlink.policy.forwarded = frozenset(chosen)
        subscriber.follow_last_n(chosen)  # its pooled video slots (sfu/video_slots.py)
        participant.notify(VideosForwarded(chosen, self.n))

    def select_audio(self, participants: Iterable[Participant],
                     levels: Mapping[str, float]) -> None:
        selected = select_audio(levels)
        for participant in participants:
            for producer in participant.producers:
                if producer.kind is Kind.AUDIO:
                    producer.audio_selected = participant.id in selected


def _sends_video(participant: Participant) -> bool:
    return any(p.is_video and not p.muted and p.codec is not None
               for p in participant.producers)
