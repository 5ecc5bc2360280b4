"""What admission takes and gives: a client's credentials, the principal they prove, and the
outcome (seated or waiting in the lobby). ``signaling.admission`` decides; sessions, moderation
and the REST API read these."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from signaling.auth import JoinRole


class Credentials(msgspec.Struct, frozen=True, kw_only=True):
    """What a client presents with ``join`` (all optional; see ``Admission.admit``)."""

    name: str = ""
    token: str | None = None
    username: str | None = None
    password: str | None = None
    room_password: str | None = None
    invite: str | None = None
    endpoint_id: int | None = None
    endpoint_secret: str | None = None
    take_over: bool = False


@dataclass(frozen=True)
class Principal:
    identity: str
    name: str
    role: JoinRole
    can_publish: bool = True
    can_subscribe: bool = True
    rejoin_token: str | None = None


@dataclass(frozen=True)
class Admitted:
    room: str
    session_id: str
    identity: str
    name: str
    role: JoinRole
    can_publish: bool
    can_subscribe: bool
    auto_record: bool = False
    replaced_session: str | None = None
    """Take over: the session that held this identity's seat; disconnect it."""
    replaced_room: str | None = None
    rejoin_token: str | None = None
    """For guests from an invitation: reconnect with this instead of spending another use."""


@dataclass(frozen=True)
class Waiting:
    """A guest in the lobby; ``Admission.admit_waiting`` seats them when a host agrees."""

    room: str
    session_id: str
    principal: Principal
    capacity: int
    auto_record: bool
    since: float
    take_over: bool = False
