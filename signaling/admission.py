"""Who may join which room: the join rules, and the live seats that enforce capacity.

``Admission.admit`` authenticates one join (token, invitation link, endpoint device, account with
the room password, or nobody in ``--open-rooms`` mode), applies the room's rules and either seats
the participant (``Admitted``), parks a guest in the lobby (``Waiting``) or raises
``JoinRefused`` with a code the client shows. Seats live in memory: the server is one process,
and the final capacity check and the seat it grants happen with no ``await`` between them, so
concurrent joins can never overfill a room (50 at once into a room of 26 seat exactly 26).

With ``--redis`` (``cluster``) the seat is first taken in Redis by one atomic script
(``signaling.cluster.ledger``): the room's limit and the one-room-per-identity rule then hold
across every node; the in-memory seats mirror this node's share.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from signaling import ratelimit
from signaling.admission_types import Admitted, Credentials, Principal, Waiting
from signaling.audit import JoinAudit
from signaling.auth import (
    Grants,
    JoinRefused,
    JoinRole,
    Passwords,
    create_join_token,
    hash_secret_token,
    room_password_key,
    secret_matches,
    verify_join_token,
)
from signaling.cluster.seats import ClusterSeats
from signaling.cluster.sitting import SittingBook
from signaling.meeting_log import MeetingLog
from signaling.ratelimit import RateLimiter, account_key, address_key
from signaling.store import DEFAULT_CAPACITY, InvitationUnusable, JoinRecord, NotFound, Room, Store
from signaling.store.schedule import EARLY_JOIN_S, is_on, next_start

logger = logging.getLogger(__name__)

REJOIN_TTL_S = 12 * 3600
NOT_COUNTED: frozenset[str] = frozenset({"recorder", "relay"})
"""Roles that take no seat: the recorder is the server's own machinery, not a participant; a
relay (issue 14) brings another server's room, whose people hold seats there."""
HOST_ROLES: frozenset[str] = frozenset({"host", "recorder"})
"""Roles that enter a locked room and skip the lobby."""


@dataclass
class _Seat:
    session_id: str
    role: JoinRole


@dataclass
class _RoomSeats:
    seats: dict[str, _Seat] = field(default_factory=dict)  # identity -> seat

    def counted(self) -> int:
        return sum(1 for seat in self.seats.values() if seat.role not in NOT_COUNTED)


class Admission:
    def __init__(self, store: Store, secret: bytes, passwords: Passwords,
                 limiter: RateLimiter | None = None, *, open_rooms: bool = False,
                 open_room_capacity: int = DEFAULT_CAPACITY,
                 clock: Callable[[], float] = time.time, audit: bool = True,
                 join_audit: JoinAudit | None = None,
                 cluster: ClusterSeats | None = None) -> None:
        self.store = store
        self.cluster = cluster
        self.sittings: SittingBook | None = None
        """With --redis: the live sitting's admitted guests, removals and lock, which
        survive the room's node (signaling/cluster/sitting.py)."""
        self.secret = secret
        self.passwords = passwords
        self.limiter = limiter or RateLimiter()
        self.open_rooms = open_rooms
        self.open_room_capacity = open_room_capacity
        self.clock = clock
        self.audit = audit
        self.join_audit = join_audit or JoinAudit(store)
        self.meetings: MeetingLog | None = None
        """Refusals go to the event record and the audit trail too (set by the control plane)."""
        self._rooms: dict[str, _RoomSeats] = {}
        self._where: dict[str, tuple[str, str]] = {}  # identity -> (room, session id)
        self._lobby: dict[str, dict[str, Waiting]] = {}  # room -> session id -> waiting
        # room -> identity a host removed -> until when it stays out
        self._removed: dict[str, dict[str, float]] = {}

    async def close(self) -> None:
        """Finish the audit writes and cluster releases in flight (before closing the store)."""
        if self.cluster is not None:
            await self.cluster.close()
        await self.join_audit.close()

    # -- the rules -----------------------------------------------------------------------------

    async def admit(self, room_name: str, credentials: Credentials, address: str,
                    session_id: str, *, connection: str | None = None) -> Admitted | Waiting:
        """Authenticate and apply the rules; seat, park in the lobby, or raise ``JoinRefused``.

        One way in is used, first present first: ``token``; ``invite``; ``endpoint_id`` with
        ``endpoint_secret``; ``username`` with ``password`` (and ``room_password`` when the room
        has one); ``room_password`` alone, a guest, where the room allows it; else, in
        open-rooms mode, anyone with a name.

        Every attempt spends from its address's bucket (given back once the credentials hold)
        and, with ``connection`` (one key per WebSocket), from that socket's bucket (never given
        back): unauthenticated floods are cut off before they touch the store.
        """
        now = self.clock()
        principal: Principal | None = None
        address_keys = [(ratelimit.JOIN_ADDRESS, address_key(address))]
        socket_keys = [] if connection is None else [(ratelimit.JOIN_SOCKET, connection)]
        try:
            self._limit(socket_keys + address_keys, now)
            room = await self.store.find_room(room_name)
            if self.cluster is not None and (room is not None or self.open_rooms):
                try:  # before any credential is spent
                    await self.cluster.check_placement(room_name)
                except JoinRefused:  # a redirect (or no Redis) is no failed attempt
                    self.limiter.refund_all(address_keys, now)
                    raise
            principal = await self._authenticate(room_name, room, credentials, address, now)
            await self._check_not_removed(room_name, room, principal.identity, now)
            self.limiter.refund_all(address_keys, now)  # the credentials hold
            if self.cluster is not None:
                outcome = await self._enter_cluster(room_name, room, principal, session_id,
                                                    credentials.take_over, now)
            else:
                outcome = self._enter(room_name, room, principal, session_id,
                                      credentials.take_over, now)
        except JoinRefused as refused:
            self._record(now, room_name, principal, credentials, address, refused.code)
            raise
        self._record(now, room_name, principal, credentials, address,
                     "lobby" if isinstance(outcome, Waiting) else "admitted")
        return outcome

    async def _authenticate(self, room_name: str, room: Room | None, credentials: Credentials,
                            address: str, now: float) -> Principal:
        if credentials.token is not None:
            return await self._by_token(room_name, room, credentials.token, now)
        if credentials.invite is not None:
            return await self._by_invitation(room_name, room, credentials, address, now)
        if credentials.endpoint_id is not None:
            return await self._by_endpoint(room_name, room, credentials, address, now)
        if credentials.username is not None:
            return await self._by_account(room_name, room, credentials, address, now)
        if credentials.room_password is not None:
            return await self._by_room_password(room_name, room, credentials, address, now)
        if self.open_rooms:
            return Principal(f"open:{secrets_suffix()}", _display(credentials.name), "guest")
        self._require_room(room_name, room)
        raise JoinRefused("not-invited", f"room {room_name!r} needs an invitation link, a join "
                                         "token, or an account and the room password")

    def _require_room(self, room_name: str, room: Room | None) -> None:
        if room is None and not self.open_rooms:
            raise JoinRefused("no-such-room", f"there is no room {room_name!r} (names are "
                                              "case-sensitive)")

    def _limit(self, keys: list[ratelimit.Key], now: float) -> None:
        wait = self.limiter.take_all(keys, now)
        if wait > 0:
            raise JoinRefused("rate-limited", f"too many failed attempts; try again in "
                                              f"{int(wait) + 1} s", retry_after=int(wait) + 1)

    async def _by_token(self, room_name: str, room: Room | None, token: str,
                        now: float) -> Principal:
        grants = verify_join_token(self.secret, token, now, room=room_name)
        self._require_room(room_name, room)
        if room is not None:
            # The name alone is not enough: a token kept after its room was deleted must not
            # open a later room of the same name (another organisation's, with other rules).
            if grants.room_instance is None:  # made before tokens named the instance
                raise JoinRefused("bad-token", f"this join token does not name an instance of "
                                               f"room {room_name!r}; ask for a new one")
            if grants.room_instance != room.instance:
                raise JoinRefused("bad-token", f"this join token was made for an earlier room "
                                               f"named {room_name!r}; ask for a new one")
            if grants.issued_at < room.tokens_void_before:
                raise JoinRefused("bad-token", f"the join tokens of room {room_name!r} issued "
                                               "before a time were withdrawn; ask for a new one")
        elif grants.room_instance is not None:
            raise JoinRefused("bad-token", f"room {room_name!r} of this join token no longer "
                                           "exists")
        if grants.identity.startswith("account:"):
            await self._check_account_token(room_name, room, grants)
        if grants.invitation is not None:
            await self._check_invitation_token(room_name, room, grants.invitation)
        return Principal(grants.identity, grants.name, grants.role, grants.can_publish,
                         grants.can_subscribe)

    async def _check_account_token(self, room_name: str, room: Room | None,
                                   grants: Grants) -> None:
        """A token naming an account lasts only as long as the account, its membership and
        its owner's wish (``tokens_void_before``)."""
        try:
            account = await self.store.get_account(int(grants.identity.split(":", 1)[1]))
        except (NotFound, ValueError):
            raise JoinRefused("bad-token", "the account of this join token no longer "
                                           "exists") from None
        if account.disabled:
            raise JoinRefused("bad-token", "the account of this join token is disabled")
        if grants.issued_at < account.tokens_void_before:
            raise JoinRefused("bad-token", "the join tokens of this account issued before a "
                                           "time were withdrawn; ask for a new one")
        if room is None or account.role == "operator" or (
                account.role == "host" and account.org_id == room.org_id):
            return
        if not await self.store.is_member(room.id, account.id):
            raise JoinRefused("not-invited", f"{account.username} is no longer a member of "
                                             f"room {room_name!r}")
        if room.password_hash is not None and \
                grants.room_key != room_password_key(room.password_hash):
            raise JoinRefused("bad-token", f"the password of room {room_name!r} changed since "
                                           "this join token was made; ask for a new one")

    async def _check_invitation_token(self, room_name: str, room: Room | None,
                                      invitation_id: int) -> None:
        """A guest's rejoin token stands only while the invitation it came from does."""
        try:
            invitation = await self.store.get_invitation(invitation_id)
        except NotFound:
            invitation = None
        if room is None or invitation is None or invitation.room_id != room.id \
                or invitation.revoked:
            raise JoinRefused("not-invited", "this invitation link was withdrawn by the host")

    async def _by_invitation(self, room_name: str, room: Room | None,
                             credentials: Credentials, address: str, now: float) -> Principal:
        if room is None:
            raise JoinRefused("not-invited", f"this invitation is not for room {room_name!r}")
        # Refuse a locked or full room before spending a use: a guest retrying a full room
        # must not use up a single-use link. (_enter checks again, atomically, after this await.)
        if room.locked:
            raise JoinRefused("room-locked", f"room {room_name!r} is locked by its host")
        seats = self._rooms.get(room_name)
        if not room.lobby and seats is not None and seats.counted() >= room.capacity:
            raise JoinRefused("room-full", f"room {room_name!r} is full: it holds at most "
                                           f"{room.capacity} participants", limit=room.capacity)
        try:
            invitation = await self.store.consume_invitation(
                hash_secret_token(credentials.invite or ""), room.id, now)
        except InvitationUnusable as exc:
            raise _invitation_refused(exc, room_name) from None
        identity = f"guest:{invitation.id}:{secrets_suffix()}"
        name = _display(credentials.name or invitation.label)
        ttl = max(60.0, min(REJOIN_TTL_S, invitation.expires_at - now))
        rejoin = create_join_token(self.secret, room_name, identity, name, "guest",
                                   ttl_s=ttl, now=now, room_instance=room.instance,
                                   invitation=invitation.id)
        return Principal(identity, name, "guest", rejoin_token=rejoin)

    async def _by_endpoint(self, room_name: str, room: Room | None, credentials: Credentials,
                           address: str, now: float) -> Principal:
        endpoint_id = credentials.endpoint_id
        keys = [(ratelimit.PASSWORD_ACCOUNT, account_key(f"endpoint:{endpoint_id}", address)),
                (ratelimit.PASSWORD_ADDRESS, address_key(address))]
        self._limit(keys, now)
        try:
            endpoint = await self.store.get_endpoint(endpoint_id or 0)
        except NotFound:
            endpoint = None
        if endpoint is None or not secret_matches(endpoint.secret_hash,
                                                  credentials.endpoint_secret or ""):
            raise JoinRefused("bad-password", "wrong endpoint id or secret")
        self.limiter.refund_all(keys, now)
        if room is None:
            raise JoinRefused("not-invited", f"there is no room {room_name!r}")
        meetings = await self.store.list_meetings(room.id, endpoint.id)
        if not any(is_on(m, now, EARLY_JOIN_S) for m in meetings):
            starts = [s for m in meetings if (s := next_start(m, now)) is not None]
            when = (" (next starts " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(
                min(starts))) + ")") if starts else ""
            raise JoinRefused("not-invited", f"{endpoint.name} has no meeting in room "
                                             f"{room_name!r} now{when}")
        await self.store.touch_endpoint(endpoint.id, now)
        return Principal(f"endpoint:{endpoint.id}", endpoint.name, "endpoint")

    async def _by_account(self, room_name: str, room: Room | None, credentials: Credentials,
                          address: str, now: float) -> Principal:
        username = credentials.username or ""
        keys = [(ratelimit.PASSWORD_ACCOUNT, account_key(username, address)),
                (ratelimit.PASSWORD_ADDRESS, address_key(address))]
        self._limit(keys, now)
        account = await self.store.find_account(username)
        # An unknown name is verified against a dummy hash: it must not answer faster.
        if not await self.passwords.verify(account.password_hash if account else None,
                                           credentials.password or "") or account is None:
            raise JoinRefused("bad-password", "wrong user name or password")
        if account.disabled:
            raise JoinRefused("bad-password", "this account is disabled")
        self._require_room(room_name, room)
        owner = account.role == "operator" or (
            account.role == "host" and room is not None and room.org_id == account.org_id)
        if room is not None and not owner:
            if not await self.store.is_member(room.id, account.id):
                raise JoinRefused("not-invited", f"{username} is not a member of room "
                                                 f"{room_name!r}; ask its host to add you")
            if room.password_hash is not None and not await self.passwords.verify(
                    room.password_hash, credentials.room_password or ""):
                raise JoinRefused("bad-password", f"wrong password for room {room_name!r} "
                                                  "(passwords are case-sensitive)")
        self.limiter.refund_all(keys, now)
        return Principal(f"account:{account.id}", _display(credentials.name or
                                                           account.display_name),
                         "host" if owner else "member")

    async def _by_room_password(self, room_name: str, room: Room | None,
                                credentials: Credentials, address: str,
                                now: float) -> Principal:
        """The AIC eMeeting way in: room name + the room's password (case-sensitive) + a
        display name, for rooms whose host allows it. Rate-limited like account passwords,
        keyed by the room (and address) instead of an account."""
        keys = [(ratelimit.PASSWORD_ACCOUNT, account_key(f"room:{room_name}", address)),
                (ratelimit.PASSWORD_ADDRESS, address_key(address))]
        self._limit(keys, now)
        self._require_room(room_name, room)
        if room is None or not room.guest_password_join or room.password_hash is None:
            raise JoinRefused("not-invited", f"room {room_name!r} does not let guests in with "
                                             "its password; you need an invitation link or "
                                             "an account")
        if not await self.passwords.verify(room.password_hash, credentials.room_password or ""):
            raise JoinRefused("bad-password", f"wrong password for room {room_name!r} "
                                              "(passwords are case-sensitive)")
        self.limiter.refund_all(keys, now)
        return Principal(f"guest:room:{secrets_suffix()}", _display(credentials.name), "guest")

    # -- seats ---------------------------------------------------------------------------------

    def _enter(self, room_name: str, room: Room | None, principal: Principal, session_id: str,
               take_over: bool, now: float) -> Admitted | Waiting:
        """The synchronous part: no await from the room check to the seat."""
        capacity = room.capacity if room is not None else self.open_room_capacity
        auto_record = room.auto_record if room is not None else False
        if room is not None and room.locked and principal.role not in HOST_ROLES:
            raise JoinRefused("room-locked", f"room {room_name!r} is locked by its host")
        if room is not None and room.lobby and principal.role == "guest":
            waiting = Waiting(room_name, session_id, principal, capacity, auto_record, now,
                              take_over)
            self._lobby.setdefault(room_name, {})[session_id] = waiting
            return waiting
        return self._seat(room_name, capacity, auto_record, principal, session_id, take_over)

    async def _enter_cluster(self, room_name: str, room: Room | None, principal: Principal,
                             session_id: str, take_over: bool, now: float) -> Admitted | Waiting:
        """``_enter`` with the seat taken in Redis first: the cluster-wide count decides."""
        capacity = room.capacity if room is not None else self.open_room_capacity
        auto_record = room.auto_record if room is not None else False
        sitting = await self.sittings.peek(room_name) if self.sittings is not None else None
        locked = room is not None and (room.locked or (sitting is not None and sitting.locked))
        # back from a node that died under them: in despite the lock, past the lobby
        back = sitting is not None and principal.identity in sitting.present
        if locked and principal.role not in HOST_ROLES and not back:
            raise JoinRefused("room-locked", f"room {room_name!r} is locked by its host")
        if room is not None and room.lobby and principal.role == "guest" and not back and (
                sitting is None or principal.identity not in sitting.admitted):
            return self._enter(room_name, room, principal, session_id, take_over, now)
        assert self.cluster is not None
        await self.cluster.seat(room_name, capacity, principal.identity,
                                principal.role not in NOT_COUNTED, session_id, take_over)
        return self._seat_mirrored(room_name, capacity, auto_record, principal, session_id)

    def _seat_mirrored(self, room_name: str, capacity: int, auto_record: bool,
                       principal: Principal, session_id: str) -> Admitted:
        """The local mirror of a seat Redis granted: a take-over of a seat held here is one,
        and the local count never exceeds the cluster's (local seats go first on leave)."""
        try:
            return self._seat(room_name, capacity + 1_000_000, auto_record, principal,
                              session_id, take_over=True)
        except JoinRefused:  # cannot happen; never keep a Redis seat nobody holds
            self._release_in_cluster(room_name, principal.identity, session_id)
            raise

    def _release_in_cluster(self, room_name: str, identity: str, session_id: str) -> None:
        if self.cluster is not None:
            self.cluster.release(room_name, identity, session_id)

    def _seat(self, room_name: str, capacity: int, auto_record: bool, principal: Principal,
              session_id: str, take_over: bool) -> Admitted:
        identity = principal.identity
        previous = self._where.get(identity)
        if previous is not None and not take_over:
            raise JoinRefused("already-in-room", f"you are already in room {previous[0]!r} "
                                                 "(another window or device); choose "
                                                 "\"take over\" to move here",
                              room=previous[0])
        seats = self._rooms.setdefault(room_name, _RoomSeats())
        frees_one = previous is not None and previous[0] == room_name \
            and seats.seats[identity].role not in NOT_COUNTED
        if principal.role not in NOT_COUNTED and seats.counted() - frees_one >= capacity:
            if not seats.seats:
                del self._rooms[room_name]
            raise JoinRefused("room-full", f"room {room_name!r} is full: it holds at most "
                                           f"{capacity} participants", limit=capacity)
        if previous is not None:
            self._unseat(previous[0], identity)
            seats = self._rooms.setdefault(room_name, seats)
        seats.seats[identity] = _Seat(session_id, principal.role)
        self._where[identity] = (room_name, session_id)
        return Admitted(
            room_name, session_id, identity, principal.name, principal.role,
            principal.can_publish and principal.role != "recorder", principal.can_subscribe,
            auto_record, previous[1] if previous else None, previous[0] if previous else None,
            principal.rejoin_token,
        )

    def _unseat(self, room_name: str, identity: str) -> None:
        seats = self._rooms.get(room_name)
        if seats is not None:
            seats.seats.pop(identity, None)
            if not seats.seats:
                del self._rooms[room_name]
        self._where.pop(identity, None)

    # -- removals ------------------------------------------------------------------------------

    async def exclude(self, room_name: str, identity: str) -> None:
        """A host removed ``identity``: it stays out of this meeting, that is until a host ends
        it or for ``REJOIN_TTL_S``. A guest's identity exists only through its rejoin token, so
        the store keeps it out for that token's whole life, across meetings and restarts."""
        until = self.clock() + REJOIN_TTL_S
        removed = self._removed.setdefault(room_name, {})
        removed[identity] = until
        for gone in [i for i, t in removed.items() if t <= self.clock()]:
            del removed[gone]
        if self.sittings is not None:
            self.sittings.removed(room_name, identity, until, self.clock())
        if identity.startswith("guest:"):
            room = await self.store.find_room(room_name)
            if room is not None:
                await self.store.add_removal(room.id, identity, until)

    async def _check_not_removed(self, room_name: str, room: Room | None, identity: str,
                                 now: float) -> None:
        removed = self._removed.get(room_name, {}).get(identity, 0.0) > now
        if not removed and self.sittings is not None:  # removed while on a node that died
            sitting = await self.sittings.peek(room_name)
            removed = sitting is not None and sitting.removed.get(identity, 0.0) > now
        if not removed and room is not None and identity.startswith("guest:"):
            removed = await self.store.is_removed(room.id, identity, now)
        if removed:
            raise JoinRefused("not-invited", f"the host removed you from the meeting in room "
                                             f"{room_name!r}")

    def release(self, room_name: str, identity: str, session_id: str) -> bool:
        """A participant left (or waited in the lobby and went away). Only the session that
        holds the seat frees it: the old session of a take-over leaving later must not free the
        new one's. Returns whether anything was freed."""
        lobby = self._lobby.get(room_name)
        if lobby is not None and lobby.pop(session_id, None) is not None:
            if not lobby:
                del self._lobby[room_name]
            return True
        if self._where.get(identity) != (room_name, session_id):
            return False
        self._unseat(room_name, identity)
        self._release_in_cluster(room_name, identity, session_id)
        return True

    # -- the lobby -----------------------------------------------------------------------------

    def lobby(self, room_name: str) -> list[Waiting]:
        return sorted(self._lobby.get(room_name, {}).values(), key=lambda w: w.since)

    def admit_waiting(self, room_name: str, session_id: str) -> Admitted:
        """A host lets a guest in: seat them (``room-full`` still applies). KeyError if no such
        guest waits."""
        waiting = self._lobby[room_name][session_id]
        admitted = self._seat(room_name, waiting.capacity, waiting.auto_record,
                              waiting.principal, session_id, waiting.take_over)
        self.deny_waiting(room_name, session_id)  # out of the lobby, now seated
        return admitted

    async def seat_waiting(self, room_name: str, session_id: str) -> Admitted:
        """``admit_waiting`` that also takes the seat in the cluster (with ``--redis``)."""
        if self.cluster is None:
            return self.admit_waiting(room_name, session_id)
        waiting = self._lobby[room_name][session_id]
        await self.cluster.seat(room_name, waiting.capacity, waiting.principal.identity,
                                waiting.principal.role not in NOT_COUNTED, session_id,
                                waiting.take_over)
        admitted = self._seat_mirrored(room_name, waiting.capacity, waiting.auto_record,
                                       waiting.principal, session_id)
        if self.sittings is not None:  # a rejoin (through any node) skips the lobby
            self.sittings.admitted(room_name, waiting.principal.identity)
        self._lobby.get(room_name, {}).pop(session_id, None)
        if not self._lobby.get(room_name, True):
            del self._lobby[room_name]
        return admitted

    def deny_waiting(self, room_name: str, session_id: str) -> Waiting:
        waiting = self._lobby[room_name].pop(session_id)
        if not self._lobby[room_name]:
            del self._lobby[room_name]
        return waiting

    # -- what is where -------------------------------------------------------------------------

    def occupants(self, room_name: str) -> dict[str, str]:
        """identity -> session id of everyone seated in the room."""
        seats = self._rooms.get(room_name)
        return {} if seats is None else {i: s.session_id for i, s in seats.seats.items()}

    def count(self, room_name: str) -> int:
        seats = self._rooms.get(room_name)
        return 0 if seats is None else seats.counted()

    def clear_room(self, room_name: str) -> list[str]:
        """End the meeting: free every seat and empty the lobby; returns the session ids."""
        sessions = list(self._lobby.pop(room_name, {}))
        for identity, session_id in self.occupants(room_name).items():
            self._unseat(room_name, identity)
            self._release_in_cluster(room_name, identity, session_id)
            sessions.append(session_id)
        self._removed.pop(room_name, None)
        return sessions

    # -- audit ---------------------------------------------------------------------------------

    def _record(self, now: float, room_name: str, principal: Principal | None,
                credentials: Credentials, address: str, outcome: str) -> None:
        if not self.audit:
            return
        identity = principal.identity if principal else (
            f"account:{credentials.username}" if credentials.username else
            f"endpoint:{credentials.endpoint_id}" if credentials.endpoint_id else
            "guest:room-password" if credentials.room_password is not None else "?")
        role = principal.role if principal else "?"
        first = self.join_audit.record(JoinRecord(now, room_name, identity, role, address,
                                                  outcome))
        if first and self.meetings is not None and outcome not in ("admitted", "lobby"):
            self.meetings.refused(room_name, identity, outcome, address)


def _invitation_refused(exc: InvitationUnusable, room_name: str) -> JoinRefused:
    if exc.reason == "expired" and exc.invitation is not None:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(exc.invitation.expires_at))
        return JoinRefused("token-expired", f"this invitation link expired at {stamp}")
    reason = {
        "unknown": "this invitation link is not valid",
        "wrong-room": f"this invitation link is not for room {room_name!r}",
        "revoked": "this invitation link was withdrawn by the host",
        "used-up": "this invitation link has been used as many times as it allows",
    }[exc.reason]
    return JoinRefused("not-invited", reason)


def _display(name: str) -> str:
    name = name.strip()[:64]
    return name or "Khách"


def secrets_suffix() -> str:
    return secrets.token_hex(6)
