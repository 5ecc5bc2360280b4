"""The REST API for operators and hosts, under ``/api/``.

Routes are one declarative table (``ROUTES``): each names its handler, who may call it and its
body and answer types, and the same table builds the router and the OpenAPI document, so every
route is documented. Errors are JSON: ``{"error": code, "message": ..., "field": ...}`` with 400
naming the field, 401 without a valid bearer token, 403 for the wrong role or organisation, 404,
409 for duplicates, 429 when rate-limited, 503 when moderation is not available.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
from aiohttp import web

from signaling.api_access import (
    LOGIN,
    account_of_my_org,
    create_token,
    managed_room,
    manages_org,
    org_for_create,
    password_keys,
    take_attempt,
    visible_account,
    void_account_tokens,
    void_room_tokens,
)
from signaling.api_cluster import CLUSTER_ROUTES, refuse_if_elsewhere
from signaling.api_http import (
    EXTRA_ROUTES,
    ApiError,
    Call,
    Route,
    bearer,
    forbidden,
    make_handler,
    no_content,
    reply,
)
from signaling.api_models import (
    AccountIn,
    AccountOut,
    EndpointIn,
    EndpointOut,
    InvitationIn,
    InvitationOut,
    LockIn,
    LoginIn,
    LoginOut,
    MeetingIn,
    MeetingOut,
    MemberIn,
    MuteIn,
    OrganisationIn,
    OrganisationOut,
    ParticipantInfo,
    PasswordIn,
    PinIn,
    RoomIn,
    RoomOut,
    RoomPatch,
    TokenIn,
    TokenOut,
    VoidIn,
    VoidOut,
)
from signaling.api_recordings import RECORDING_ROUTES
from signaling.api_reports import REPORT_ROUTES
from signaling.auth import hash_secret_token, new_secret_token
from signaling.control import Moderator, invitation_link
from signaling.documents import DOCUMENT_ROUTES, remove_room_documents
from signaling.store import Account, Endpoint, Invitation, Meeting, NotFound, Room
from signaling.store.schedule import check_meeting_times, is_on, next_start

# -- conversions ---------------------------------------------------------------------------------


def account_out(a: Account) -> AccountOut:
    return AccountOut(id=a.id, username=a.username, display_name=a.display_name, role=a.role,
                      org_id=a.org_id, disabled=a.disabled)


def room_out(r: Room) -> RoomOut:
    return RoomOut(name=r.name, org_id=r.org_id, capacity=r.capacity, kind=r.kind,
                   locked=r.locked, lobby=r.lobby, auto_record=r.auto_record,
                   has_password=r.password_hash is not None,
                   guest_password_join=r.guest_password_join)


def invitation_out(i: Invitation, link: str | None = None) -> InvitationOut:
    return InvitationOut(id=i.id, label=i.label, max_uses=i.max_uses, uses_left=i.uses_left,
                         expires_at=i.expires_at, revoked=i.revoked, link=link)


def meeting_out(m: Meeting, room: str, now: float) -> MeetingOut:
    return MeetingOut(id=m.id, room=room, title=m.title, first_date=m.first_date, start=m.start,
                      end=m.end, weekly=m.weekly, until=m.until, utc_offset_min=m.utc_offset_min,
                      account_ids=list(m.account_ids), endpoint_ids=list(m.endpoint_ids),
                      on_now=is_on(m, now), next_start=next_start(m, now))


def endpoint_out(e: Endpoint, secret: str | None = None) -> EndpointOut:
    return EndpointOut(id=e.id, name=e.name, org_id=e.org_id, created_at=e.created_at,
                       last_seen_at=e.last_seen_at, secret=secret)


# -- login ---------------------------------------------------------------------------------------


async def login(call: Call) -> web.Response:
    body: LoginIn = call.body
    control, now = call.control, call.control.clock()
    keys = password_keys(LOGIN, body.username, call)
    take_attempt(control, keys, now)
    account = await control.store.find_account(body.username)
    valid = await control.passwords.verify(account.password_hash if account else None,
                                           body.password)
    if account is None or not valid or account.disabled:
        raise ApiError(401, "unauthorized", "wrong user name or password")
    control.limiter.refund_all(keys, now)
    token, token_hash = new_secret_token()
    expires_at = now + control.session_ttl_s
    await control.store.create_api_session(token_hash, account.id, expires_at)
    return reply(LoginOut(token=token, expires_at=expires_at, account=account_out(account)))


async def logout(call: Call) -> web.Response:
    await call.control.store.delete_api_session(hash_secret_token(bearer(call.request) or ""))
    return no_content()


async def me(call: Call) -> web.Response:
    return reply(account_out(call.me))


# -- organisations -------------------------------------------------------------------------------


async def list_organisations(call: Call) -> web.Response:
    store = call.control.store
    if call.me.role == "operator":
        organisations = await store.list_organisations()
    else:
        organisations = [await store.get_organisation(call.me.org_id or 0)]
    return reply([OrganisationOut(id=o.id, name=o.name) for o in organisations])


async def create_organisation(call: Call) -> web.Response:
    o = await call.control.store.create_organisation(call.body.name)
    return reply(OrganisationOut(id=o.id, name=o.name), 201)


# -- accounts ------------------------------------------------------------------------------------


async def list_accounts(call: Call) -> web.Response:
    org_id = None if call.me.role == "operator" else call.me.org_id
    return reply([account_out(a) for a in await call.control.store.list_accounts(org_id)])


async def create_account(call: Call) -> web.Response:
    body: AccountIn = call.body
    store = call.control.store
    if call.me.role != "operator" and body.role != "member":
        raise forbidden("hosts create member accounts only")
    if body.role in ("operator", "support"):  # both serve every organisation
        org_id = None
    else:
        org_id = org_for_create(call, body.org_id)
        await store.get_organisation(org_id)
    account = await store.create_account(body.username, body.display_name or body.username,
                                         body.role, org_id,
                                         await call.control.passwords.hash(body.password))
    return reply(account_out(account), 201)


async def get_account(call: Call) -> web.Response:
    return reply(account_out(await visible_account(call)))


async def set_password(call: Call) -> web.Response:
    account = await visible_account(call, write=True)
    body: PasswordIn = call.body
    if account.id == call.me.id:
        # Your own: prove it is you (an unattended or stolen API session must not be enough
        # to take the account over). Resetting a member's, a host or operator need not know it.
        if body.current_password is None:
            raise ApiError(400, "bad-request", "give your current password to change it",
                           "current_password")
        control, now = call.control, call.control.clock()
        keys = password_keys(LOGIN, account.username, call)
        take_attempt(control, keys, now)
        if not await control.passwords.verify(account.password_hash, body.current_password):
            raise ApiError(403, "bad-password", "wrong current password", "current_password")
        control.limiter.refund_all(keys, now)
    await call.control.store.set_account_password(
        account.id, await call.control.passwords.hash(call.body.password))
    return no_content()


async def delete_account(call: Call) -> web.Response:
    account = await visible_account(call, write=True)
    if account.id == call.me.id:
        raise forbidden("you cannot delete your own account")
    await call.control.store.delete_account(account.id)
    return no_content()


# -- rooms and members ---------------------------------------------------------------------------


async def list_rooms(call: Call) -> web.Response:
    store, me = call.control.store, call.me
    if me.role == "operator":
        rooms = await store.list_rooms()
    elif me.role == "host":
        rooms = await store.list_rooms(org_id=me.org_id)
    else:
        rooms = await store.list_rooms(member_id=me.id)
    return reply([room_out(r) for r in rooms])


async def create_room(call: Call) -> web.Response:
    body: RoomIn = call.body
    org_id = org_for_create(call, body.org_id)
    await call.control.store.get_organisation(org_id)
    password_hash = None if body.password is None else await call.control.passwords.hash(
        body.password)
    room = await call.control.store.create_room(
        body.name, org_id, capacity=body.capacity, kind=body.kind, password_hash=password_hash,
        locked=body.locked, lobby=body.lobby, auto_record=body.auto_record,
        guest_password_join=body.guest_password_join)
    return reply(room_out(room), 201)


async def get_room(call: Call) -> web.Response:
    room = await call.control.store.get_room(call.param("name"))
    if not manages_org(call.me, room.org_id) and not await call.control.store.is_member(
            room.id, call.me.id):
        raise forbidden(f"you are not a member of room {room.name!r}")
    return reply(room_out(room))


async def update_room(call: Call) -> web.Response:
    room = await managed_room(call)
    changes = {k: v for k, v in msgspec.structs.asdict(call.body).items()
               if v is not msgspec.UNSET}
    if "password" in changes:
        password = changes.pop("password")
        changes["password_hash"] = None if password is None else \
            await call.control.passwords.hash(password)
    room = await call.control.store.update_room(room.name, **changes)
    if "locked" in changes and call.control.moderator is not None:
        await call.control.moderator.set_locked(room.name, room.locked)
    return reply(room_out(room))


async def delete_room(call: Call) -> web.Response:
    room = await managed_room(call)
    await remove_room_documents(call, room)
    await call.control.store.delete_room(room.name)
    return no_content()


async def list_members(call: Call) -> web.Response:
    room = await managed_room(call)
    return reply([account_out(a) for a in await call.control.store.list_members(room.id)])


async def add_member(call: Call) -> web.Response:
    room = await managed_room(call)
    account = await account_of_my_org(call, call.body.account_id)
    await call.control.store.add_member(room.id, account.id)
    return reply(account_out(account), 201)


async def remove_member(call: Call) -> web.Response:
    room = await managed_room(call)
    await call.control.store.remove_member(room.id, call.int_param("id"))
    return no_content()


# -- invitations, meetings, tokens ---------------------------------------------------------------


async def list_invitations(call: Call) -> web.Response:
    room = await managed_room(call)
    return reply([invitation_out(i) for i in
                  await call.control.store.list_invitations(room.id)])


async def create_invitation(call: Call) -> web.Response:
    room = await managed_room(call)
    body: InvitationIn = call.body
    token, token_hash = new_secret_token()
    invitation = await call.control.store.create_invitation(
        room.id, token_hash, max_uses=body.max_uses,
        expires_at=call.control.clock() + body.ttl_s, label=body.label, created_by=call.me.id)
    return reply(invitation_out(invitation, invitation_link(room.name, token)), 201)


async def revoke_invitation(call: Call) -> web.Response:
    room = await managed_room(call)
    await call.control.store.revoke_invitation(room.id, call.int_param("id"))
    return no_content()


async def list_meetings(call: Call) -> web.Response:
    room = await managed_room(call)
    now = call.control.clock()
    return reply([meeting_out(m, room.name, now)
                  for m in await call.control.store.list_meetings(room.id)])


async def create_meeting(call: Call) -> web.Response:
    room = await managed_room(call)
    body: MeetingIn = call.body
    try:
        for account_id in body.account_ids:
            await account_of_my_org(call, account_id)
        for endpoint_id in body.endpoint_ids:
            endpoint = await call.control.store.get_endpoint(endpoint_id)
            if not manages_org(call.me, endpoint.org_id):
                raise NotFound("endpoint", endpoint_id)
    except NotFound as exc:
        raise ApiError(400, "bad-request", str(exc), f"{exc.entity}_ids") from None
    try:
        check_meeting_times(body.first_date, body.start, body.end, body.until)
    except ValueError as exc:
        field = "until" if "until" in str(exc) else "end" if "end" in str(exc) else "first_date"
        raise ApiError(400, "bad-request", str(exc), field) from None
    try:
        meeting = await call.control.store.create_meeting(
            room.id, body.title, body.first_date, body.start, body.end, weekly=body.weekly,
            until=body.until, utc_offset_min=body.utc_offset_min,
            account_ids=tuple(body.account_ids), endpoint_ids=tuple(body.endpoint_ids))
    except NotFound as exc:
        raise ApiError(400, "bad-request", str(exc), f"{exc.entity}_ids") from None
    return reply(meeting_out(meeting, room.name, call.control.clock()), 201)


async def delete_meeting(call: Call) -> web.Response:
    room = await managed_room(call)
    await call.control.store.delete_meeting(room.id, call.int_param("id"))
    return no_content()


# -- endpoint devices ----------------------------------------------------------------------------


async def list_endpoints(call: Call) -> web.Response:
    org_id = None if call.me.role == "operator" else call.me.org_id
    return reply([endpoint_out(e) for e in await call.control.store.list_endpoints(org_id)])


async def create_endpoint(call: Call) -> web.Response:
    body: EndpointIn = call.body
    org_id = org_for_create(call, body.org_id)
    secret, secret_hash = new_secret_token()
    endpoint = await call.control.store.create_endpoint(body.name, org_id, secret_hash)
    return reply(endpoint_out(endpoint, secret), 201)


async def delete_endpoint(call: Call) -> web.Response:
    endpoint = await call.control.store.get_endpoint(call.int_param("id"))
    if not manages_org(call.me, endpoint.org_id):
        raise forbidden("not an endpoint of your organisation")
    await call.control.store.delete_endpoint(endpoint.id)
    return no_content()


# -- moderation ----------------------------------------------------------------------------------


async def _moderated(call: Call) -> tuple[Room, Moderator]:
    room = await managed_room(call)
    await refuse_if_elsewhere(call, room.name)  # a cluster: moderated where it meets
    if call.control.moderator is None:
        raise ApiError(503, "unavailable", "moderation is not available on this server")
    return room, call.control.moderator


@contextmanager
def _live(room: str) -> Iterator[None]:
    """The moderator raises KeyError for a participant (or meeting) it does not know."""
    try:
        yield
    except KeyError as exc:
        raise ApiError(404, "not-found", f"no participant {exc} in room {room!r}") from None


async def participants(call: Call) -> web.Response:
    room, moderator = await _moderated(call)
    return reply(moderator.participants(room.name))


async def mute(call: Call) -> web.Response:
    room, moderator = await _moderated(call)
    with _live(room.name):
        await moderator.mute(room.name, call.param("pid"), call.body.kind)
    return no_content()


async def remove(call: Call) -> web.Response:
    room, moderator = await _moderated(call)
    with _live(room.name):
        await moderator.remove(room.name, call.param("pid"))
    return no_content()


async def lock(call: Call) -> web.Response:
    room, moderator = await _moderated(call)
    room = await call.control.store.update_room(room.name, locked=call.body.locked)
    await moderator.set_locked(room.name, room.locked)
    return reply(room_out(room))


async def lobby(call: Call) -> web.Response:
    room, moderator = await _moderated(call)
    return reply(moderator.waiting(room.name))


async def admit(call: Call) -> web.Response:
    room, moderator = await _moderated(call)
    with _live(room.name):
        await moderator.admit(room.name, call.param("pid"))
    return no_content()


async def deny(call: Call) -> web.Response:
    room, moderator = await _moderated(call)
    with _live(room.name):
        await moderator.deny(room.name, call.param("pid"))
    return no_content()


async def end(call: Call) -> web.Response:
    room, moderator = await _moderated(call)
    with _live(room.name):
        await moderator.end(room.name)
    return no_content()


async def pin(call: Call) -> web.Response:
    room, moderator = await _moderated(call)
    with _live(room.name):
        await moderator.pin(room.name, call.body.participant_id)
    return no_content()


async def openapi(call: Call) -> web.Response:
    from signaling.openapi import build_openapi

    return reply(build_openapi(ROUTES + call.request.app.get(EXTRA_ROUTES, ())))


R = "/api/rooms/{name}"
ROUTES: tuple[Route, ...] = (
    Route("POST", "/api/login", login, "Log in: a bearer token for this API", "public",
          LoginIn, LoginOut),
    Route("POST", "/api/logout", logout, "End this bearer token's session", "any",
          status=204),
    Route("GET", "/api/me", me, "The logged-in account", "any", answer=AccountOut),
    Route("GET", "/api/openapi.json", openapi, "This document", "public", answer=dict),
    Route("GET", "/api/organisations", list_organisations, "Organisations", "host",
          answer=list[OrganisationOut]),
    Route("POST", "/api/organisations", create_organisation, "Create an organisation",
          "operator", OrganisationIn, OrganisationOut, 201),
    Route("GET", "/api/accounts", list_accounts, "Accounts (hosts: of their organisation)",
          answer=list[AccountOut]),
    Route("POST", "/api/accounts", create_account, "Create an account (hosts: members only)",
          body=AccountIn, answer=AccountOut, status=201),
    Route("GET", "/api/accounts/{id}", get_account, "One account", "any", answer=AccountOut),
    Route("PUT", "/api/accounts/{id}/password", set_password, "Set an account's password "
          "(your own: give current_password; ends its API sessions)", "any", PasswordIn,
          status=204),
    Route("DELETE", "/api/accounts/{id}", delete_account, "Delete an account", status=204),
    Route("POST", "/api/accounts/{id}/void-tokens", void_account_tokens, "Void the account's "
          "join tokens issued before a time (default now)", "any", VoidIn, VoidOut),
    Route("GET", "/api/rooms", list_rooms, "Rooms (members: theirs)", "any",
          answer=list[RoomOut]),
    Route("POST", "/api/rooms", create_room, "Create a room", body=RoomIn, answer=RoomOut,
          status=201),
    Route("GET", R, get_room, "One room", "any", answer=RoomOut),
    Route("PATCH", R, update_room, "Change a room", body=RoomPatch, answer=RoomOut),
    Route("DELETE", R, delete_room, "Delete a room", status=204),
    Route("GET", R + "/members", list_members, "The room's members", answer=list[AccountOut]),
    Route("POST", R + "/members", add_member, "Add a member", body=MemberIn, answer=AccountOut,
          status=201),
    Route("DELETE", R + "/members/{id}", remove_member, "Remove a member", status=204),
    Route("GET", R + "/invitations", list_invitations, "Invitations (without their links)",
          answer=list[InvitationOut]),
    Route("POST", R + "/invitations", create_invitation, "Invite guests: a single- or n-use "
          "link with an expiry", body=InvitationIn, answer=InvitationOut, status=201),
    Route("DELETE", R + "/invitations/{id}", revoke_invitation, "Revoke an invitation",
          status=204),
    Route("GET", R + "/meetings", list_meetings, "Scheduled meetings", answer=list[MeetingOut]),
    Route("POST", R + "/meetings", create_meeting, "Schedule a (weekly) meeting",
          body=MeetingIn, answer=MeetingOut, status=201),
    Route("DELETE", R + "/meetings/{id}", delete_meeting, "Cancel a meeting", status=204),
    Route("POST", R + "/tokens", create_token, "A signed join token (members: for themselves)",
          "any", TokenIn, TokenOut, 201),
    Route("POST", R + "/void-tokens", void_room_tokens, "Void the room's join tokens issued "
          "before a time (default now)", body=VoidIn, answer=VoidOut),
    Route("GET", "/api/endpoints", list_endpoints, "Endpoint devices",
          answer=list[EndpointOut]),
    Route("POST", "/api/endpoints", create_endpoint, "Register an endpoint device (its "
          "secret is shown once)", body=EndpointIn, answer=EndpointOut, status=201),
    Route("DELETE", "/api/endpoints/{id}", delete_endpoint, "Delete an endpoint device",
          status=204),
    Route("GET", R + "/participants", participants, "Who is in the meeting",
          answer=list[ParticipantInfo]),
    Route("POST", R + "/participants/{pid}/mute", mute, "Mute a participant's audio or video",
          body=MuteIn, status=204),
    Route("DELETE", R + "/participants/{pid}", remove, "Remove a participant", status=204),
    Route("POST", R + "/lock", lock, "Lock or unlock the room", body=LockIn, answer=RoomOut),
    Route("GET", R + "/lobby", lobby, "Guests waiting in the lobby",
          answer=list[ParticipantInfo]),
    Route("POST", R + "/lobby/{pid}/admit", admit, "Let a waiting guest in", status=204),
    Route("DELETE", R + "/lobby/{pid}", deny, "Turn a waiting guest away", status=204),
    Route("POST", R + "/end", end, "End the meeting for everybody", status=204),
    Route("POST", R + "/pin", pin, "Pin a participant's (the chair's) video for everybody, "
          "or unpin with null", body=PinIn, status=204),
    *RECORDING_ROUTES,
    *CLUSTER_ROUTES,
    *REPORT_ROUTES,
    *DOCUMENT_ROUTES,
)


def add_api_routes(app: web.Application) -> None:
    """Add every ``/api/`` route; their handlers use ``app[CONTROL]`` (see ``control_ctx``)."""
    app.router.add_routes([web.route(r.method, r.path, make_handler(r)) for r in ROUTES])
