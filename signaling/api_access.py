"""Access rules of the REST API (who may act on which organisation, room and account), the
rate limits of password checks, and the join-token routes: minting and voiding.

Security issue 8 shaped these: hosts' minted identities live in their organisation's namespace,
members minting for a room with a password must give it, another organisation's accounts are
answered as unknown ones, and tokens of a room or an account can be voided from a time on.
"""

from __future__ import annotations

from aiohttp import web

from signaling import ratelimit
from signaling.api_http import ApiError, Call, forbidden, reply
from signaling.api_models import TokenIn, TokenOut, VoidIn, VoidOut
from signaling.auth import create_join_token, new_secret_token, room_password_key
from signaling.control import ControlPlane, token_link
from signaling.ratelimit import Key, account_key, address_key
from signaling.store import Account, NotFound, Room


def manages_org(account: Account, org_id: int) -> bool:
    return account.role == "operator" or (account.role == "host" and account.org_id == org_id)


async def managed_room(call: Call) -> Room:
    """The room in the path, if the caller's organisation owns it (or the caller operates)."""
    room = await call.control.store.get_room(call.param("name"))
    if not manages_org(call.me, room.org_id):
        raise forbidden(f"room {room.name!r} belongs to another organisation")
    return room


def org_for_create(call: Call, org_id: int | None) -> int:
    """Hosts act for their own organisation; operators must say which."""
    me = call.me
    if me.role == "operator":
        if org_id is None:
            raise ApiError(400, "bad-request", "an operator must give org_id", "org_id")
        return org_id
    assert me.org_id is not None
    if org_id not in (None, me.org_id):
        raise forbidden("hosts act only for their own organisation")
    return me.org_id


HOST_IDENTITY_PREFIXES = ("account:", "endpoint:", "guest:")
"""Identities the server gives out itself: a host naming one in a token could take the seat
(and evict the holder) of that account, device or guest anywhere."""


def password_keys(kind: tuple[str, str], account: str, call: Call) -> list[Key]:
    address = call.request.remote or "?"
    return [(kind[0], account_key(account, address)), (kind[1], address_key(address))]


def take_attempt(control: ControlPlane, keys: list[Key], now: float) -> None:
    wait = control.limiter.take_all(keys, now)
    if wait > 0:
        raise ApiError(429, "rate-limited", f"too many failed attempts; try again in "
                                            f"{int(wait) + 1} s",
                       headers={"Retry-After": str(int(wait) + 1)})


LOGIN = (ratelimit.LOGIN_ACCOUNT, ratelimit.LOGIN_ADDRESS)
PASSWORD = (ratelimit.PASSWORD_ACCOUNT, ratelimit.PASSWORD_ADDRESS)


async def visible_account(call: Call, write: bool = False) -> Account:
    account = await call.control.store.get_account(call.int_param("id"))
    me = call.me
    if me.role == "operator" or me.id == account.id:
        return account
    if me.role == "host" and account.org_id == me.org_id and (
            not write or account.role == "member"):
        return account
    raise forbidden("not an account of your organisation")


async def account_of_my_org(call: Call, account_id: int) -> Account:
    """An account the caller may put in a room or meeting; another organisation's answers as
    an unknown one does (404), so its name, role and organisation are never disclosed."""
    try:
        account = await call.control.store.get_account(account_id)
    except NotFound:
        account = None
    if account is None or not (call.me.role == "operator" or (
            account.org_id is not None and account.org_id == call.me.org_id)):
        raise NotFound("account", account_id)
    return account


# -- join tokens -----------------------------------------------------------------------------------


async def create_token(call: Call) -> web.Response:
    body: TokenIn = call.body
    store, me = call.control.store, call.me
    room = await store.get_room(call.param("name"))
    now = call.control.clock()
    room_key = None
    if manages_org(me, room.org_id):
        if body.identity is not None and body.identity.startswith(HOST_IDENTITY_PREFIXES):
            raise ApiError(400, "bad-request", "identities starting with account:, endpoint: "
                                               "or guest: are the server's own", "identity")
        # Minted identities live in their organisation's own namespace: a seat is keyed by
        # identity, so a bare name would let one organisation's token take over (evict) a
        # participant of another's.
        identity = f"token:{room.org_id}:{body.identity or new_secret_token()[0][:12]}"
        role = body.role
    elif await store.is_member(room.id, me.id):
        if body.role != "member" or body.identity not in (None, f"account:{me.id}"):
            raise forbidden("members may create member tokens for themselves only")
        if room.password_hash is not None:
            # A join with the account must give the room password: so must its token.
            keys = password_keys(PASSWORD, me.username, call)
            take_attempt(call.control, keys, now)
            if body.room_password is None or not await call.control.passwords.verify(
                    room.password_hash, body.room_password):
                raise ApiError(403, "bad-password", f"room {room.name!r} has a password: give "
                                                    "it as room_password", "room_password")
            call.control.limiter.refund_all(keys, now)
            room_key = room_password_key(room.password_hash)
        identity, role = f"account:{me.id}", body.role
    else:
        raise forbidden(f"you are not a member of room {room.name!r}")
    token = create_join_token(call.control.secret, room.name, identity, body.name, role,
                              body.can_publish, body.can_subscribe, body.ttl_s, now=now,
                              room_instance=room.instance, room_key=room_key)
    return reply(TokenOut(token=token, link=token_link(room.name, token), identity=identity,
                          expires_at=float(int(now + body.ttl_s))), 201)


def void_time(call: Call) -> float:
    body: VoidIn = call.body
    now = call.control.clock()
    if body.before is not None and body.before > now:
        raise ApiError(400, "bad-request", "before must not be in the future", "before")
    return now if body.before is None else body.before


async def void_account_tokens(call: Call) -> web.Response:
    account = await visible_account(call, write=True)
    before = await call.control.store.void_account_tokens(account.id, void_time(call))
    return reply(VoidOut(tokens_void_before=before))


async def void_room_tokens(call: Call) -> web.Response:
    room = await managed_room(call)
    before = await call.control.store.void_room_tokens(room.id, void_time(call))
    return reply(VoidOut(tokens_void_before=before))
