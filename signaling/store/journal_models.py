"""Records of the event record (what the daily report counts) and of the audit trail (who did
what, when, from where). Frozen msgspec Structs, like the other records of the store."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec

Detail = dict[str, str | int | float | bool | None]
GENESIS = "0" * 64
"""The ``prev`` of the first audit row ever written (the archive manifest uses the same)."""


class MeetingEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One thing that happened in a meeting. ``kind`` is one of ``EVENT_KINDS``."""

    at: float
    kind: str
    room: str
    participant: str = ""
    identity: str = ""
    detail: Detail = msgspec.field(default_factory=dict)


EVENT_KINDS = (
    "room-started",       # detail: scheduled (bool), meeting_id, title
    "room-finished",      # detail: minutes
    "participant-joined",  # detail: name, role, address, reconnect (bool)
    "participant-left",   # detail: minutes, reason
    "join-refused",       # detail: code, address (first of a merged run; counts in `joins`)
    "reconnected",        # detail: gap_s (left and came back, or took over its own seat)
    "audio-only-started",  # detail: reason (bandwidth | own choice), direction (down | up)
    "audio-only-ended",   # detail: minutes, direction
    "poor-quality",       # detail: loss (0..1), rtt_ms: one sample (taken every 30 s)
    "recording-started",  # detail: recording id, by
    "recording-finished",  # detail: recording id, state
)


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One security-relevant act: ``actor`` (who) did ``action`` (what) on ``room``/``target``
    at ``at`` (when) from ``address`` (where); ``outcome`` is ``ok`` or why it was refused."""

    at: float
    actor: str
    action: str
    room: str = ""
    target: str = ""
    address: str = ""
    outcome: str = "ok"
    detail: Detail = msgspec.field(default_factory=dict)


class AuditRow(msgspec.Struct, frozen=True, kw_only=True):
    """A stored audit entry: its place in the chain (``seq``), the hash of the row before it
    (``prev``) and its own (``hash``). ``detail`` is the stored canonical JSON text."""

    seq: int
    at: float
    actor: str
    action: str
    room: str
    target: str
    address: str
    outcome: str
    detail: str
    prev: str
    hash: str

    def entry(self) -> AuditEntry:
        return AuditEntry(at=self.at, actor=self.actor, action=self.action, room=self.room,
                          target=self.target, address=self.address, outcome=self.outcome,
                          detail=msgspec.json.decode(self.detail, type=Detail))


def canonical_detail(detail: Detail) -> str:
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def audit_hash(seq: int, entry: AuditEntry | AuditRow, detail: str, prev: str) -> str:
    """sha256 of the canonical JSON of every field but the hash (as ``recorder/manifest.py``
    hashes its entries): editing any field, or moving a row, changes it."""
    body: dict[str, Any] = {
        "seq": seq, "at": entry.at, "actor": entry.actor, "action": entry.action,
        "room": entry.room, "target": entry.target, "address": entry.address,
        "outcome": entry.outcome, "detail": detail, "prev": prev,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


MAX_PROBLEMS = 1000


class ChainWalk:
    """Walks audit rows in ascending ``seq`` from ``anchor`` (the last pruned row's seq and
    hash, or None: the chain starts at GENESIS), a page at a time, collecting problems.

    An edited row fails its own hash; a deleted or inserted row breaks the ``prev`` link or the
    run of sequence numbers. (Cutting rows off the end cannot be seen from inside the table,
    as with the manifest: compare with a head hash kept elsewhere, e.g. a printed report.)"""

    def __init__(self, anchor: tuple[int, str] | None) -> None:
        self.seq, self.head = anchor if anchor is not None else (0, GENESIS)
        self.rows = 0
        self.first_seq = 0
        self.problems: list[str] = []

    def feed(self, row: AuditRow) -> None:
        found: list[str] = []
        if row.seq != self.seq + 1:
            found.append(f"row {row.seq}: rows {self.seq + 1}..{row.seq - 1} are missing")
        if row.prev != self.head:
            found.append(f"row {row.seq}: does not follow row {self.seq} (chain broken)")
        if row.hash != audit_hash(row.seq, row, row.detail, row.prev):
            found.append(f"row {row.seq}: hash mismatch (row edited)")
        self.problems.extend(found[:MAX_PROBLEMS - len(self.problems)])
        self.first_seq = self.first_seq or row.seq
        self.rows += 1
        self.seq, self.head = row.seq, row.hash


def verify_chain(rows: list[AuditRow], anchor: tuple[int, str] | None) -> list[str]:
    """Problems found walking ``rows`` (see ``ChainWalk``). Empty: the chain holds."""
    walk = ChainWalk(anchor)
    for row in rows:
        walk.feed(row)
    return walk.problems
