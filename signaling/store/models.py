"""The control plane's records, errors and the ``Store`` interface.

Records are frozen msgspec Structs: cheap to build from a row and safe to hand between the store's
thread and the event loop. Secrets (passwords, invitation tokens, device secrets, API session
tokens) only ever appear here as hashes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import msgspec

from signaling.store.journal_models import AuditEntry, AuditRow, MeetingEvent

Role = Literal["operator", "host", "member", "support"]
RoomKind = Literal["multipoint", "endpoint-phone"]
ROLES: tuple[Role, ...] = ("operator", "host", "member", "support")
ROOM_KINDS: tuple[RoomKind, ...] = ("multipoint", "endpoint-phone")
DEFAULT_CAPACITY = 26
"""The old MCU's limit (the Polycom served 26 sites): what a room holds unless told otherwise."""


class Organisation(msgspec.Struct, frozen=True):
    id: int
    name: str
    created_at: float


class Account(msgspec.Struct, frozen=True):
    id: int
    username: str
    display_name: str
    role: Role
    org_id: int | None
    password_hash: str
    disabled: bool
    created_at: float
    tokens_void_before: float = 0.0
    """Join tokens naming this account (``account:<id>``) issued before this are void."""


class Room(msgspec.Struct, frozen=True):
    id: int
    name: str
    org_id: int
    capacity: int
    kind: RoomKind
    locked: bool
    lobby: bool
    auto_record: bool
    password_hash: str | None
    created_at: float
    instance: str = ""
    """Random, fixed at creation: join tokens carry it, so a token for a deleted room never
    opens a later room of the same name (SQLite may even reuse the id)."""
    tokens_void_before: float = 0.0
    """Join tokens for this room issued before this are void."""
    guest_password_join: bool = False
    """The AIC eMeeting way in: anyone with the room's name, its (case-sensitive) password and
    a display name joins as a guest. Off unless the host turns it on (and the room has one)."""


class Invitation(msgspec.Struct, frozen=True):
    id: int
    room_id: int
    token_hash: str
    label: str
    max_uses: int
    uses_left: int
    expires_at: float
    revoked: bool
    created_by: int | None
    created_at: float


class Meeting(msgspec.Struct, frozen=True):
    """A scheduled meeting: on ``first_date`` (and, if weekly, the same weekday after it, up to
    ``until``) from ``start`` to ``end`` local time, local being UTC + ``utc_offset_min``."""

    id: int
    room_id: int
    title: str
    first_date: str
    start: str
    end: str
    weekly: bool
    until: str | None
    utc_offset_min: int
    account_ids: tuple[int, ...] = ()
    endpoint_ids: tuple[int, ...] = ()


class Endpoint(msgspec.Struct, frozen=True):
    """A meeting room's computer: joins its scheduled meetings with long-lived credentials."""

    id: int
    name: str
    org_id: int
    secret_hash: str
    created_at: float
    last_seen_at: float | None


class JoinRecord(msgspec.Struct, frozen=True):
    at: float
    room: str
    identity: str
    role: str
    address: str
    outcome: str
    count: int = 1
    """Repeats of the same attempt merged into this record (the last at ``last_at``)."""
    last_at: float | None = None


class RecordingFile(msgspec.Struct, frozen=True):
    path: str  # relative to the data directory
    kind: str  # "audio" | "video"
    participant: str
    codec: str
    duration_s: float
    bytes: int
    sha256: str


class RecordingRow(msgspec.Struct, frozen=True):
    """One recording in the archive's catalogue."""

    id: str
    room: str
    org_id: int | None
    meeting_id: int | None
    started_at: float
    ended_at: float | None
    state: str  # recording | complete | recovered | failed | deleted
    started_by: str
    stopped_by: str | None = None
    participants: tuple[str, ...] = ()
    files: tuple[RecordingFile, ...] = ()
    error: str | None = None


class ChatMessage(msgspec.Struct, frozen=True):
    """One chat line of a meeting (``meeting``: the id of one sitting of the room)."""

    id: int
    room: str
    meeting: str
    at: float
    identity: str
    name: str
    text: str
    deleted_by: str | None = None


class Document(msgspec.Struct, frozen=True):
    """A file the host attached to a room; its bytes are ``documents/<stored_as>`` in the
    data directory (a name of our own: the uploader's name is only shown)."""

    id: int
    room_id: int
    name: str
    kind: str  # pdf | docx
    bytes: int
    sha256: str
    stored_as: str
    uploaded_by: str
    uploaded_at: float


# -- errors --------------------------------------------------------------------------------------


class StoreError(Exception):
    pass


class NotFound(StoreError):
    def __init__(self, entity: str, key: object) -> None:
        super().__init__(f"no {entity} {key!r}")
        self.entity = entity
        self.key = key


class Conflict(StoreError):
    """A uniqueness rule would be broken (a room or user name taken, a duplicate membership)."""


class InvitationUnusable(StoreError):
    """``reason`` is one of ``unknown``, ``wrong-room``, ``revoked``, ``expired``, ``used-up``."""

    def __init__(self, reason: str, invitation: Invitation | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.invitation = invitation


# -- the interface -------------------------------------------------------------------------------

ROOM_FIELDS = frozenset({"capacity", "kind", "locked", "lobby", "auto_record", "password_hash",
                         "guest_password_join"})
"""What ``update_room`` may change (the name and owner are fixed: links and tokens name them)."""


class Store(Protocol):
    """Everything the control plane keeps. Every write is one transaction; every method is safe
    to call from many tasks at once. Two implementations: ``SqliteStore`` (the default, one
    file) and ``PgStore`` (``--store``: PostgreSQL, shared by several nodes)."""

    async def close(self) -> None: ...

    async def schema_version(self) -> int: ...

    async def is_empty(self) -> bool: ...

    # organisations
    async def create_organisation(self, name: str) -> Organisation: ...
    async def get_organisation(self, org_id: int) -> Organisation: ...
    async def list_organisations(self) -> list[Organisation]: ...

    # accounts
    async def create_account(self, username: str, display_name: str, role: Role,
                             org_id: int | None, password_hash: str) -> Account: ...
    async def get_account(self, account_id: int) -> Account: ...
    async def find_account(self, username: str) -> Account | None: ...
    async def list_accounts(self, org_id: int | None = None) -> list[Account]: ...
    async def set_account_password(self, account_id: int, password_hash: str) -> None: ...
    async def delete_account(self, account_id: int) -> None: ...
    async def void_account_tokens(self, account_id: int, before: float) -> float: ...

    # rooms and memberships
    async def create_room(self, name: str, org_id: int, *, capacity: int = DEFAULT_CAPACITY,
                          kind: RoomKind = "multipoint", password_hash: str | None = None,
                          locked: bool = False, lobby: bool = False,
                          auto_record: bool = False,
                          guest_password_join: bool = False) -> Room: ...
    async def get_room(self, name: str) -> Room: ...
    async def find_room(self, name: str) -> Room | None: ...
    async def list_rooms(self, org_id: int | None = None,
                         member_id: int | None = None) -> list[Room]: ...
    async def update_room(self, name: str, /, **changes: object) -> Room: ...
    async def delete_room(self, name: str) -> None: ...
    async def void_room_tokens(self, room_id: int, before: float) -> float: ...
    async def add_removal(self, room_id: int, identity: str, until: float) -> None: ...
    async def is_removed(self, room_id: int, identity: str, now: float) -> bool: ...
    async def add_member(self, room_id: int, account_id: int) -> None: ...
    async def remove_member(self, room_id: int, account_id: int) -> None: ...
    async def list_members(self, room_id: int) -> list[Account]: ...
    async def is_member(self, room_id: int, account_id: int) -> bool: ...

    # invitations
    async def create_invitation(self, room_id: int, token_hash: str, *, max_uses: int,
                                expires_at: float, label: str = "",
                                created_by: int | None = None) -> Invitation: ...
    async def list_invitations(self, room_id: int) -> list[Invitation]: ...
    async def get_invitation(self, invitation_id: int) -> Invitation: ...
    async def revoke_invitation(self, room_id: int, invitation_id: int) -> None: ...
    async def consume_invitation(self, token_hash: str, room_id: int,
                                 now: float) -> Invitation: ...

    # scheduled meetings
    async def create_meeting(self, room_id: int, title: str, first_date: str, start: str,
                             end: str, *, weekly: bool = True, until: str | None = None,
                             utc_offset_min: int = 420, account_ids: tuple[int, ...] = (),
                             endpoint_ids: tuple[int, ...] = ()) -> Meeting: ...
    async def list_meetings(self, room_id: int | None = None,
                            endpoint_id: int | None = None) -> list[Meeting]: ...
    async def delete_meeting(self, room_id: int, meeting_id: int) -> None: ...

    # endpoint devices
    async def create_endpoint(self, name: str, org_id: int, secret_hash: str) -> Endpoint: ...
    async def get_endpoint(self, endpoint_id: int) -> Endpoint: ...
    async def list_endpoints(self, org_id: int | None = None) -> list[Endpoint]: ...
    async def touch_endpoint(self, endpoint_id: int, now: float) -> None: ...
    async def delete_endpoint(self, endpoint_id: int) -> None: ...

    # REST API sessions (opaque bearer tokens, stored hashed)
    async def create_api_session(self, token_hash: str, account_id: int,
                                 expires_at: float) -> None: ...
    async def api_session_account(self, token_hash: str, now: float) -> Account | None: ...
    async def delete_api_session(self, token_hash: str) -> None: ...

    # audit
    async def record_join(self, record: JoinRecord) -> int: ...
    async def merge_join(self, record_id: int, count: int, last_at: float) -> None: ...
    async def prune_joins(self, before: float, keep_max: int) -> int: ...
    async def list_joins(self, room: str | None = None, limit: int = 100) -> list[JoinRecord]: ...

    # the archive's catalogue
    async def add_recording(self, row: RecordingRow) -> None: ...
    async def finish_recording(self, recording_id: str, *, ended_at: float, state: str,
                               stopped_by: str | None, participants: tuple[str, ...],
                               files: tuple[RecordingFile, ...],
                               error: str | None = None) -> None: ...
    async def get_recording(self, recording_id: str) -> RecordingRow: ...
    async def list_recordings(self, room: str | None = None, org_id: int | None = None,
                              since: float | None = None, until: float | None = None,
                              limit: int = 1000) -> list[RecordingRow]: ...

    # the event record and the audit trail (issue 13; signaling/store/sqlite_journal.py)
    async def append_events(self, events: Sequence[MeetingEvent]) -> None: ...
    async def list_events(self, since: float, until: float,
                          room: str | None = None) -> list[MeetingEvent]: ...
    async def prune_events(self, before: float) -> int: ...
    async def refusal_counts(self, since: float,
                             until: float) -> list[tuple[str, str, int]]: ...
    async def append_audit(self, entries: Sequence[AuditEntry]) -> str: ...
    async def list_audit(self, since: float | None = None, until: float | None = None,
                         room: str | None = None, actor: str | None = None,
                         limit: int = 1000) -> list[AuditRow]: ...
    async def audit_chain(self) -> tuple[tuple[int, str] | None, list[AuditRow]]: ...
    async def audit_page(self, after_seq: int, limit: int) -> tuple[tuple[int, str] | None,
                                                                     list[AuditRow]]: ...
    async def prune_audit(self, before: float, keep_max: int) -> int: ...
    # meeting extras: chat and documents (signaling/store/sqlite_meeting.py)
    async def add_chat(self, room_id: int | None, message: ChatMessage) -> ChatMessage: ...
    async def list_chat(self, room: str, meeting: str, limit: int) -> list[ChatMessage]: ...
    async def delete_chat(self, room: str, meeting: str, message_id: int,
                          deleted_by: str) -> ChatMessage | None: ...
    async def add_document(self, room_id: int, name: str, kind: str, size: int, sha256: str,
                           stored_as: str, uploaded_by: str, now: float) -> Document: ...
    async def list_documents(self, room_id: int) -> list[Document]: ...
    async def get_document(self, room_id: int, document_id: int) -> Document: ...
    async def delete_document(self, room_id: int, document_id: int) -> Document: ...
