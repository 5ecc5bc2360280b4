"""Room and Participant: who is in a meeting, and who consumes whose producers.

A participant has a Publisher (its own tracks in) and a Subscriber (everybody else's tracks
out). The room wires them: a producer that becomes ready is consumed by every other participant,
and a participant who joins consumes every ready producer already there. What happens is told as
typed events (``sfu/events.py``) through the participant's ``notify`` sink, so this module knows
nothing of WebSockets or JSON.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import InitVar, dataclass, field

from sfu.events import (
    EventSink,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantState,
    Pinned,
    Speakers,
    TrackMuted,
)
from sfu.last_n import LastN
from sfu.local_subscriber import LocalConsumers, LocalSubscriber
from sfu.policy.last_n import DEFAULT_LAST_N
from sfu.policy.uplink import UplinkPolicy
from sfu.producer import Producer
from sfu.publisher import Publisher
from sfu.subscriber import Subscriber
from sfu.types import Kind
from sfu.uplink_control import UplinkControl

logger = logging.getLogger(__name__)

SPEAKING_LEVEL = 50.0
"""Mean level at or above -50 dBov over the last half second counts as speaking."""
MAX_SPEAKERS = 3
GATE_SILENCE_ABOVE = 8
"""From this many participants on, silent audio is not forwarded (Jitsi and LiveKit do alike)."""


@dataclass(eq=False)
class Participant:
    id: str
    name: str
    notify: EventSink
    publisher: Publisher | None = None
    subscriber: Subscriber | None = None
    muted: dict[str, bool] = field(default_factory=lambda: {"audio": False, "video": False})
    joined_at: float = 0.0
    uplink_policy: InitVar[UplinkPolicy | None] = None
    uplink: UplinkControl = field(init=False)
    # Tracks published from inside the process (a relay, ``sfu/relay.py``), by producer id.
    relayed: dict[str, Producer] = field(default_factory=dict)

    def __post_init__(self, uplink_policy: UplinkPolicy | None) -> None:
        self.uplink = UplinkControl(self.notify, uplink_policy)

    def state(self) -> ParticipantState:
        return ParticipantState(self.id, self.name, audio_muted=self.muted["audio"],
                                video_muted=self.muted["video"])

    @property
    def producers(self) -> list[Producer]:
        own = list(self.publisher.producers.values()) if self.publisher else []
        return own + list(self.relayed.values()) if self.relayed else own


def retire_counters(participant: Participant, now: float, into: Counter[str]) -> None:
    """Fold a leaving participant's counters into the worker's totals (metrics stay monotonic)."""
    subscriber = participant.subscriber
    if subscriber is not None:
        # Counter is int-valued to mypy; this one total is float seconds (exported as is).
        into["audio_only_seconds"] += subscriber.downlink.seconds_audio_only(now)  # type: ignore[assignment]
        into["probe_packets"] += subscriber.downlink.probes_sent
        into.update(subscriber.retired)  # consumers it dropped (producers gone, slots switched)
        layered = subscriber.layered.extras() if subscriber.layered is not None else ()
        for consumer in (*subscriber.consumers.values(), *layered):  # a relay's lower layers
            consumer.add_counters_to(into)
        for reason, count in subscriber.rtcp.drops.items():  # its RTCP that did not parse
            into[f"drop:{reason.value}"] += count
    for producer in participant.producers:
        into["received_packets"] += producer.packets_received
        into["keyframe_requests"] += producer.keyframe_requests_sent
        for reason, count in producer.drops.items():
            into[f"drop:{reason.value}"] += count
    if participant.publisher is not None:
        for reason, count in participant.publisher.drops.items():
            into[f"drop:{reason.value}"] += count


class Room:
    def __init__(self, name: str, retired: Counter[str] | None = None,
                 last_n: int = DEFAULT_LAST_N) -> None:
        self.name = name
        self.participants: dict[str, Participant] = {}
        self.closed = False
        self.retired: Counter[str] = retired if retired is not None else Counter()
        self.speakers: list[str] = []
        self.pinned: str | None = None  # the chair's video, first for everyone
        self.local: dict[str, LocalConsumers] = {}  # in-process subscribers (the recorder)
        self.last_n = LastN(last_n)  # whose video (and voice) each participant receives

    def __len__(self) -> int:
        return len(self.participants)

    def others(self, participant_id: str) -> list[Participant]:
        return [p for pid, p in self.participants.items() if pid != participant_id]

    def add(self, participant: Participant) -> None:
        """Admit a participant: tell the others, and subscribe it to every ready producer."""
        others = self.others(participant.id)
        self.participants[participant.id] = participant
        self._gate_silence()
        if participant.subscriber is not None:
            # Camera videos on at most N m-lines, switched by last-N (sfu/video_slots.py).
            participant.subscriber.use_video_slots(self.last_n.n)
        if participant.subscriber is not None and self.pinned:
            participant.subscriber.downlink.policy.pinned = {self.pinned}
        for other in others:
            other.notify(ParticipantJoined(participant.state()))
            for producer in other.producers:
                if producer.codec is not None and participant.subscriber is not None:
                    participant.subscriber.add_producer(producer)
        if self.speakers:
            # `speakers` goes out when the set changes: a newcomer learns the current one now,
            # or its gallery (speakers first) pages past the videos last-N forwards first.
            participant.notify(Speakers(tuple(self.speakers)))
        self.last_n.select(participant, list(self.participants.values()), self.speakers,
                           self.pinned)

    def set_shown(self, participant: Participant, shown: tuple[str, ...]) -> None:
        """The participant's client shows these tiles now (its gallery page): choose again."""
        self.last_n.shown[participant.id] = shown
        self.last_n.select(participant, list(self.participants.values()), self.speakers,
                           self.pinned)

    def pin(self, participant_id: str | None) -> None:
        """Pin (or unpin) one participant's video for everyone (the chair, multipoint model)."""
        self.pinned = participant_id
        for participant in self.participants.values():
            if participant.subscriber is not None:
                participant.subscriber.downlink.policy.pinned = (
                    {participant_id} if participant_id else set())
            participant.notify(Pinned(participant_id))
        self.last_n.select_all(self.participants.values(), self.speakers, self.pinned)

    def _gate_silence(self) -> None:
        gating = len(self.participants) > GATE_SILENCE_ABOVE
        for participant in self.participants.values():
            for producer in participant.producers:
                producer.silence_gating = gating and producer.kind is Kind.AUDIO

    def producer_ready(self, producer: Producer) -> None:
        """A publisher's track negotiated its codec: every other participant consumes it."""
        producer.silence_gating = (producer.kind is Kind.AUDIO
                                   and len(self.participants) > GATE_SILENCE_ABOVE)
        for other in self.others(producer.participant_id):
            if other.subscriber is not None:
                other.subscriber.add_producer(producer)
        for local in self.local.values():
            local.add_producer(producer, self._name_of(producer.participant_id))
        if producer.is_video:  # a new camera: chosen now where there is room (not at the tick)
            self.last_n.select_all(self.participants.values(), self.speakers, self.pinned)

    def withdraw(self, producer: Producer) -> None:
        """One track goes while its participant stays (a relayed track whose far owner left)."""
        for other in self.participants.values():
            if other.subscriber is not None:
                other.subscriber.remove_producer(producer.id)
        for local in self.local.values():
            local.remove_producer(producer.id)

    def _name_of(self, participant_id: str) -> str:
        participant = self.participants.get(participant_id)
        return participant.name if participant is not None else ""

    def add_local(self, subscriber_id: str, subscriber: LocalSubscriber) -> None:
        """An in-process subscriber consumes every ready producer, now and as they come."""
        if subscriber_id in self.local:
            raise ValueError(f"local subscriber {subscriber_id!r} is already in {self.name!r}")
        local = self.local[subscriber_id] = LocalConsumers(subscriber, subscriber_id)
        for participant in self.participants.values():
            for producer in participant.producers:
                local.add_producer(producer, participant.name)

    def remove_local(self, subscriber_id: str) -> None:
        local = self.local.pop(subscriber_id, None)
        if local is not None:
            local.close()

    def set_muted(self, participant: Participant, kind: Kind, muted: bool) -> None:
        participant.muted[kind.value] = muted
        if participant.publisher is not None:
            participant.publisher.set_muted(kind, muted)
        event = TrackMuted(participant.id, kind, muted)
        for p in self.participants.values():
            p.notify(event)
        if kind is Kind.VIDEO:  # a camera off frees its slot in last-N, one on may take one
            for other in self.participants.values():
                if other.subscriber is not None:
                    other.subscriber.review(participant.id)
            self.last_n.select_all(self.participants.values(), self.speakers, self.pinned)

    def update_speakers(self) -> None:
        """The loudest few participants speak: they get allocator priority and the UI shows it."""
        levels: dict[str, float] = {}
        heard: dict[str, float] = {}  # every level, for the audio selection of gated rooms
        for participant in self.participants.values():
            for producer in participant.producers:
                if producer.kind is Kind.AUDIO and not producer.muted:
                    level = producer.take_level()
                    if level is not None:
                        heard[participant.id] = level
                    if level is not None and level <= SPEAKING_LEVEL:
                        levels[participant.id] = level
        self.last_n.select_audio(self.participants.values(), heard)
        speakers = sorted(levels, key=levels.__getitem__)[:MAX_SPEAKERS]
        if speakers == self.speakers:
            return
        self.speakers = speakers
        for participant in self.participants.values():
            if participant.subscriber is not None:
                participant.subscriber.downlink.policy.speakers = set(speakers)
            participant.notify(Speakers(tuple(speakers)))

    def maintain(self, now: float) -> None:
        """Periodic: speakers, local subscribers, and each publisher's uplink control."""
        self.update_speakers()
        self.last_n.tick(self.participants.values(), self.speakers, self.pinned, now)
        for local in self.local.values():
            local.tick(now)
        for participant in self.participants.values():
            if participant.publisher is not None:
                participant.uplink.tick(participant.publisher, now)
            elif participant.relayed:  # which layers the relay should bring (signaling/relay.py)
                participant.uplink.tick_relayed(participant.relayed.values(), now)

    def drop_producer(self, participant: Participant, producer: Producer) -> None:
        """One track of a participant ends (a stopped screen share); the participant stays."""
        for other in self.participants.values():
            if other.subscriber is not None:
                other.subscriber.remove_producer(producer.id)
        for local in self.local.values():
            local.remove_producer(producer.id)
        if participant.publisher is not None:
            participant.publisher.producers.pop(producer.mid, None)
        producer.close()

    async def remove(self, participant_id: str) -> Participant | None:
        participant = self.participants.pop(participant_id, None)
        if participant is None:
            return None
        retire_counters(participant, asyncio.get_running_loop().time(), self.retired)
        self.last_n.forget(participant_id)
        self._gate_silence()
        for producer in participant.producers:
            for other in self.participants.values():
                if other.subscriber is not None:
                    other.subscriber.remove_producer(producer.id)
            for local in self.local.values():
                local.remove_producer(producer.id)
        for other in self.participants.values():
            other.notify(ParticipantLeft(participant_id))
        closing = []
        if participant.publisher is not None:
            closing.append(participant.publisher.close())
        if participant.subscriber is not None:
            closing.append(participant.subscriber.close())
        results = await asyncio.gather(*closing, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                logger.warning("closing %s: %r", participant_id, result)
        return participant
