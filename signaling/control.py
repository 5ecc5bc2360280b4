"""The control plane as one object on the app: store, secrets, rate limits, admission, moderator.

``control_ctx(...)`` is a ``cleanup_ctx`` that opens it (the store is async to open, so it cannot
be built in the synchronous ``create_app``) and closes it after the rooms have drained.
``bootstrap`` sets up an empty data directory on first start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import urlencode

from aiohttp import web

from signaling.admission import Admission
from signaling.api_models import ParticipantInfo
from signaling.auth import (
    DEFAULT_TOKEN_TTL_S,
    JoinRole,
    Passwords,
    create_join_token,
    load_or_create_secret,
    new_secret_token,
    random_password,
)
from signaling.journal import Journal
from signaling.meeting_log import MeetingLog
from signaling.ratelimit import RateLimiter
from signaling.store import DB_FILE, DEFAULT_CAPACITY, Conflict, Store, open_store
from signaling.store.sqlite import find_room_instance

if TYPE_CHECKING:
    from signaling.webhooks import RoomEvents

logger = logging.getLogger(__name__)

DEMO_ROOM = "demo"
DEMO_INVITE_USES = 100
DEMO_INVITE_TTL_S = 30 * 86400


class Moderator(Protocol):
    """What hosts do to a live meeting; the media side (the lead's sessions and rooms)
    implements it. Unknown rooms or participants raise ``KeyError`` (the API answers 404)."""

    def participants(self, room: str) -> list[ParticipantInfo]: ...

    def waiting(self, room: str) -> list[ParticipantInfo]: ...

    async def mute(self, room: str, participant_id: str,
                   kind: Literal["audio", "video"]) -> None: ...

    async def remove(self, room: str, participant_id: str) -> None: ...

    async def set_locked(self, room: str, locked: bool) -> None: ...

    async def admit(self, room: str, participant_id: str) -> None: ...

    async def deny(self, room: str, participant_id: str) -> None: ...

    async def end(self, room: str) -> None: ...

    async def pin(self, room: str, participant_id: str | None) -> None: ...


class RecordingHooks(Protocol):
    """What sessions tell the recording service (``signaling/recording.py``)."""

    def is_recording(self, room: str) -> bool: ...

    async def on_joined(self, room: str) -> None: ...

    async def on_left(self, room: str) -> None: ...


@dataclass
class ControlPlane:
    store: Store
    passwords: Passwords
    secret: bytes
    limiter: RateLimiter
    admission: Admission
    moderator: Moderator | None = None
    """Set by the app once the media worker exists; moderation answers 503 until then."""
    recordings: RecordingHooks | None = None
    """Set by the app with the recording service."""
    events: RoomEvents | None = None
    """Set by the app (signaling/ops.py): joins, leaves and refusals become webhooks."""
    clock: Callable[[], float] = field(default=time.time)
    session_ttl_s: float = 12 * 3600
    journal: Journal | None = None
    """The event record and the audit trail (issue 13); its writer runs while the app does."""
    meetings: MeetingLog | None = None

    @classmethod
    async def open(cls, data_dir: Path, *, open_rooms: bool = False,
                   passwords: Passwords | None = None, store: Store | None = None,
                   clock: Callable[[], float] = time.time,
                   open_room_capacity: int | None = None,
                   store_url: str | None = None) -> ControlPlane:
        store = store or await open_store(data_dir, store_url)
        passwords = passwords or Passwords()
        secret = load_or_create_secret(data_dir)
        if getattr(store, "networked", False):
            # Nodes sharing a networked store sign and check tokens with one secret (a token,
            # a rejoin or a resume from one node is good at another); the first node's wins.
            try:
                secret = await store.signing_secret(secret)  # type: ignore[attr-defined]
            except BaseException:
                await store.close()
                raise
        limiter = RateLimiter()
        admission = Admission(store, secret, passwords, limiter, open_rooms=open_rooms,
                              open_room_capacity=open_room_capacity or DEFAULT_CAPACITY,
                              clock=clock)
        journal = Journal(store, clock=clock)
        meetings = MeetingLog(journal, store, clock)
        admission.meetings = meetings
        return cls(store, passwords, secret, limiter, admission, clock=clock, journal=journal,
                   meetings=meetings)

    async def close(self) -> None:
        await self.admission.close()
        if self.journal is not None:
            await self.journal.close()  # the rest of the record, before the store closes
        await self.store.close()


CONTROL = web.AppKey("control", ControlPlane)


def control_ctx(data_dir: Path, *, open_rooms: bool = False, passwords: Passwords | None = None,
                moderator: Moderator | None = None,
                on_bootstrap: Callable[[BootstrapResult], None] | None = None,
                open_room_capacity: int | None = None,
                audit_retention_days: float | None = None,
                store_url: str | None = None,
                ) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that puts a ``ControlPlane`` on ``app[CONTROL]`` and, on an empty
    store, bootstraps it and hands the result (the operator's password, shown once) to
    ``on_bootstrap``."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        control = await ControlPlane.open(data_dir, open_rooms=open_rooms, passwords=passwords,
                                          open_room_capacity=open_room_capacity,
                                          store_url=store_url)
        control.moderator = moderator
        if control.journal is not None:
            if audit_retention_days is not None:
                control.journal.audit_retention_s = audit_retention_days * 86400
            control.journal.start()
        try:
            result = await bootstrap(control.store, data_dir, control.passwords)
            if result is not None and on_bootstrap is not None:
                on_bootstrap(result)
            if open_rooms:
                logger.warning("OPEN ROOMS: anyone who can reach this server joins any room "
                               "without credentials (--open-rooms); use only on a closed "
                               "network or for tests")
            app[CONTROL] = control
            yield
        finally:
            await control.close()

    return ctx


@dataclass(frozen=True)
class BootstrapResult:
    username: str
    password: str
    """Shown once; only its hash is stored."""
    organisation: str
    room: str
    join_path: str
    """``/?room=demo&invite=...``: prefix with the server's URL."""


async def bootstrap(store: Store, data_dir: Path,
                    passwords: Passwords | None = None) -> BootstrapResult | None:
    """On an empty store: an operator account with a random password, a demo organisation and
    room, and an invitation link to it. None if the store already has accounts."""
    if not await store.is_empty():
        return None
    passwords = passwords or Passwords()
    load_or_create_secret(data_dir)
    password = random_password()
    try:
        organisation = await store.create_organisation("Demo")
        await store.create_account("admin", "Operator", "operator", None,
                                   await passwords.hash(password))
    except Conflict:
        # Nodes sharing one store (--store) started together: another one bootstraps it.
        logger.info("the store was bootstrapped by another node meanwhile")
        return None
    room = await store.create_room(DEMO_ROOM, organisation.id)
    token, token_hash = new_secret_token()
    await store.create_invitation(room.id, token_hash, max_uses=DEMO_INVITE_USES,
                                  expires_at=time.time() + DEMO_INVITE_TTL_S, label="demo")
    logger.info("first start: created operator account 'admin' and room %r", DEMO_ROOM)
    return BootstrapResult("admin", password, organisation.name, room.name,
                           invitation_link(room.name, token))


def invitation_link(room: str, token: str) -> str:
    return "/?" + urlencode({"room": room, "invite": token})


def token_link(room: str, token: str) -> str:
    return "/?" + urlencode({"room": room, "token": token})


def token_create(data_dir: Path, room: str, name: str, *, identity: str | None = None,
                 role: JoinRole = "member", ttl_s: float = DEFAULT_TOKEN_TTL_S,
                 can_publish: bool = True, can_subscribe: bool = True,
                 store_url: str | None = None) -> tuple[str, str]:
    """For ``diemcau token create``: a join token signed with this data directory's secret
    (with ``store_url``: the secret the nodes sharing that store sign with), and its join path
    (``/?room=...&token=...``). Needs no running server."""
    identity = identity or f"token:{new_secret_token()[0][:12]}"
    # Bound to the stored room of that name (if there is one yet): see Room.instance.
    if store_url is not None:
        from signaling.ops_cli import networked_signing

        secret, instance = networked_signing(data_dir, store_url, room)
    else:
        secret = load_or_create_secret(data_dir)
        instance = find_room_instance(data_dir / DB_FILE, room)
    token = create_join_token(secret, room, identity, name, role,
                              can_publish, can_subscribe, ttl_s, room_instance=instance)
    return token, token_link(room, token)
