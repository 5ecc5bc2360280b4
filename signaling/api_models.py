"""The REST API's request and response bodies, as msgspec Structs.

One declaration gives decoding, validation with errors that name the field, and the JSON Schema
in the OpenAPI document (``signaling/openapi.py``), so the three cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from signaling.auth import DEFAULT_TOKEN_TTL_S, JoinRole
from signaling.store import DEFAULT_CAPACITY, Role, RoomKind

# No control characters; no "/" in names that appear in URL paths.
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f/]+$",
                                   description="1-64 characters, case-sensitive, no '/'")]
Username = Annotated[str, msgspec.Meta(min_length=1, max_length=64,
                                       pattern=r"^[^\s\x00-\x1f\x7f/]+$",
                                       description="1-64 characters, no spaces, case-sensitive")]
Text = Annotated[str, msgspec.Meta(max_length=200)]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=256,
                                       description="8-256 characters, case-sensitive")]
RoomPassword = Annotated[str, msgspec.Meta(min_length=4, max_length=128,
                                           description="4-128 characters, case-sensitive")]
Capacity = Annotated[int, msgspec.Meta(ge=1, le=1000)]
Id = Annotated[int, msgspec.Meta(ge=1)]
Date = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD")]
Clock = Annotated[str, msgspec.Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM")]
ParticipantId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class _In(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Request bodies refuse unknown fields: a misspelt ``capacty`` must not be ignored."""


class LoginIn(_In):
    username: Username
    password: Annotated[str, msgspec.Meta(max_length=256)]


class AccountOut(msgspec.Struct, kw_only=True):
    id: int
    username: str
    display_name: str
    role: Role
    org_id: int | None
    disabled: bool


class LoginOut(msgspec.Struct, kw_only=True):
    token: str
    expires_at: float
    account: AccountOut


class OrganisationIn(_In):
    name: Name


class OrganisationOut(msgspec.Struct, kw_only=True):
    id: int
    name: str


class AccountIn(_In):
    username: Username
    password: Password
    display_name: Text = ""
    role: Role = "member"
    org_id: Id | None = None


class PasswordIn(_In):
    password: Password
    current_password: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    """Required to change your own password (a stolen API session must not be enough)."""


class RoomIn(_In):
    name: Name
    org_id: Id | None = None
    capacity: Capacity = DEFAULT_CAPACITY
    kind: RoomKind = "multipoint"
    password: RoomPassword | None = None
    locked: bool = False
    lobby: bool = False
    auto_record: bool = False
    guest_password_join: bool = False
    """Guests join with the room's name, its password and a display name (AIC eMeeting)."""


class RoomPatch(_In):
    capacity: Capacity | msgspec.UnsetType = msgspec.UNSET
    kind: RoomKind | msgspec.UnsetType = msgspec.UNSET
    password: RoomPassword | None | msgspec.UnsetType = msgspec.UNSET
    locked: bool | msgspec.UnsetType = msgspec.UNSET
    lobby: bool | msgspec.UnsetType = msgspec.UNSET
    auto_record: bool | msgspec.UnsetType = msgspec.UNSET
    guest_password_join: bool | msgspec.UnsetType = msgspec.UNSET


class RoomOut(msgspec.Struct, kw_only=True):
    name: str
    org_id: int
    capacity: int
    kind: RoomKind
    locked: bool
    lobby: bool
    auto_record: bool
    has_password: bool
    guest_password_join: bool = False


class RecordingFileOut(msgspec.Struct, kw_only=True):
    path: str  # relative to the data dir
    kind: str  # audio | video
    participant: str
    codec: str
    duration_s: float
    bytes: int
    sha256: str
    url: str  # where to download it (with this API's bearer token)


class RecordingOut(msgspec.Struct, kw_only=True):
    id: str
    room: str
    org_id: int | None
    started_at: float
    ended_at: float | None
    state: str  # recording | complete | recovered | failed
    started_by: str
    stopped_by: str | None
    participants: list[str]
    files: list[RecordingFileOut]
    error: str | None = None


class MemberIn(_In):
    account_id: Id


class InvitationIn(_In):
    max_uses: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    ttl_s: Annotated[int, msgspec.Meta(ge=60, le=90 * 86400)] = 7 * 86400
    label: Text = ""


class InvitationOut(msgspec.Struct, kw_only=True):
    id: int
    label: str
    max_uses: int
    uses_left: int
    expires_at: float
    revoked: bool
    link: str | None = None
    """Only in the answer to its creation: the link's secret is stored hashed."""


class MeetingIn(_In):
    title: Text
    first_date: Date
    start: Clock
    end: Clock
    weekly: bool = True
    until: Date | None = None
    utc_offset_min: Annotated[int, msgspec.Meta(ge=-720, le=840)] = 420
    account_ids: Annotated[list[Id], msgspec.Meta(max_length=1000)] = []
    endpoint_ids: Annotated[list[Id], msgspec.Meta(max_length=1000)] = []


class MeetingOut(msgspec.Struct, kw_only=True):
    id: int
    room: str
    title: str
    first_date: str
    start: str
    end: str
    weekly: bool
    until: str | None
    utc_offset_min: int
    account_ids: list[int]
    endpoint_ids: list[int]
    on_now: bool
    next_start: float | None


class EndpointIn(_In):
    name: Name
    org_id: Id | None = None


class EndpointOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    org_id: int
    created_at: float
    last_seen_at: float | None
    secret: str | None = None
    """Only in the answer to its creation: configure the device with ``id`` and this."""


class TokenIn(_In):
    name: Name
    identity: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    role: JoinRole = "member"
    can_publish: bool = True
    can_subscribe: bool = True
    ttl_s: Annotated[int, msgspec.Meta(ge=60, le=30 * 86400)] = DEFAULT_TOKEN_TTL_S
    room_password: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    """Members minting for themselves in a room with a password must give it, as a join
    with their account would."""


class VoidIn(_In):
    before: Annotated[float, msgspec.Meta(ge=0)] | None = None
    """Join tokens issued before this time (Unix seconds; default: now) are void."""


class VoidOut(msgspec.Struct, kw_only=True):
    tokens_void_before: float


class TokenOut(msgspec.Struct, kw_only=True):
    token: str
    link: str
    identity: str
    expires_at: float


class ParticipantInfo(msgspec.Struct, kw_only=True):
    """A participant (or a guest in the lobby) as the moderator sees them."""

    id: str
    name: str
    role: str
    identity: str = ""
    audio_muted: bool = False
    video_muted: bool = False
    pinned: bool = False


class MuteIn(_In):
    kind: Literal["audio", "video"]


class LockIn(_In):
    locked: bool


class PinIn(_In):
    participant_id: ParticipantId | None


class ErrorOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    error: str
    message: str
    field: str | None = None
    node_address: str | None = None  # wrong-node: the base URL of the room's node
