"""B's hosts moderate the people a relay brings into their room (issue 14).

A relayed person (``relay-<id>-<n>`` in B's room, one per far participant) has no session on
B, so the moderator's usual way (find the session, act through it) finds nobody. Here instead,
within B only (A's meeting is not touched):

- **remove**: the relay stops relaying that far participant: ``Relay.chosen`` refuses them, so
  their tracks are withdrawn from B's room and they leave B's list (B's clients get
  ``participant_left``); their packets that still come are dropped at the relay, and A is sent
  an invisible tile for them, so it stops sending their video to the relay (``LayerStreams``
  pauses every layer ``NOT_VISIBLE``).
- **mute**: B stops forwarding that relayed track (server-side, as for a local publisher's
  mute), and B's clients see it muted (``track_muted``, and the REST participant list). The far
  side unmuting does not lift it (``Relay._far_muted``).

Both are kept by far participant id for the relay's life, across its reconnects to A, and are
bounded. The REST calls are audited like every changing call (``signaling/api_audit.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from sfu.types import Kind
from signaling.relay_spec import RELAY_ID_PREFIX

if TYPE_CHECKING:
    from sfu.relay import Publication
    from signaling.relay import Relay

logger = logging.getLogger(__name__)

MAX_DECISIONS = 1024
"""Far participants a relay remembers removing or muting, each. Those who left A are forgotten
first (far ids are not reused), so this is only reached beyond a room's capacity (1,000);
then the oldest decision goes."""


class RelayModeration:
    """What B's hosts decided about one relay's far participants (insertion-ordered)."""

    def __init__(self) -> None:
        self.removed: dict[str, None] = {}  # far participant ids
        self.muted: dict[str, set[Kind]] = {}  # far participant id -> kinds B muted

    def is_muted(self, far_id: str, kind: Kind) -> bool:
        return kind in self.muted.get(far_id, ())

    def remove(self, far_id: str, gone: Collection[str]) -> None:
        self.removed[far_id] = None
        _bound(self.removed, gone)

    def mute(self, far_id: str, kind: Kind, gone: Collection[str]) -> None:
        self.muted.setdefault(far_id, set()).add(kind)
        _bound(self.muted, gone)

    def summary(self) -> dict[str, object]:
        return {"removed": list(self.removed),
                "muted": {far: sorted(k.value for k in kinds)
                          for far, kinds in self.muted.items()}}


class RelayedPerson:
    """One relayed person of B's room, found by their near participant id."""

    def __init__(self, relay: Relay, far_id: str, publication: Publication) -> None:
        self.relay = relay
        self.far_id = far_id
        self.publication = publication

    def mute(self, kind: Kind) -> None:
        self.relay.moderation.mute(self.far_id, kind, self.relay.gone)
        apply_mutes(self.relay, self.far_id, self.publication)
        logger.info("relay %s: far participant %s muted (%s) in %r", self.relay.id,
                    self.far_id, kind.value, self.relay.room)

    def remove(self) -> None:
        self.relay.moderation.remove(self.far_id, self.relay.gone)
        self.relay.stop_relaying(self.far_id)
        logger.info("relay %s: far participant %s removed from %r", self.relay.id,
                    self.far_id, self.relay.room)


def _bound(decisions: dict[str, Any], gone: Collection[str]) -> None:
    if len(decisions) > MAX_DECISIONS:
        for far_id in [f for f in decisions if f in gone]:
            del decisions[far_id]
    while len(decisions) > MAX_DECISIONS:
        del decisions[next(iter(decisions))]


def find_relayed(relays: Iterable[Relay], room: str,
                 participant_id: str) -> RelayedPerson | None:
    """The relayed person ``participant_id`` of ``room``, or None (not a relay's)."""
    if not participant_id.startswith(RELAY_ID_PREFIX):
        return None
    for relay in relays:
        if relay.room != room:
            continue
        for far_id, publication in relay.near_people().items():
            if publication.participant_id == participant_id:
                return RelayedPerson(relay, far_id, publication)
    return None


def apply_mutes(relay: Relay, far_id: str, publication: Publication) -> None:
    """B's mutes of ``far_id`` on their near participant: its tracks stop, everyone is told.
    Called on a mute, and again when the relay publishes them anew (a new track, a reconnect)."""
    kinds = relay.moderation.muted.get(far_id)
    if not kinds:
        return
    for track_id, feed in publication.tracks.items():
        if any(track_id == f"{far_id}.{t.mid}" and t.kind in kinds
               for t in relay.upstream.tracks()):
            feed.set_muted(True)
    for kind in kinds:
        try:
            relay.plane.set_muted(relay.room, publication.participant_id, kind, True)
        except Exception as exc:  # gone meanwhile (UnknownParticipant): nothing to show
            logger.debug("relay %s: mute of %s not shown: %r", relay.id, far_id, exc)
