"""REST control of relays (issue 14): ``POST/GET /api/rooms/{name}/relays``, ``DELETE .../{id}``.

Operators may relay into any room on this server (open rooms included); a host only into the
rooms of their organisation. The far server decides who the relay may be there: it needs a join
token minted on that server (role ``relay``), unless that server runs with open rooms.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated, Any

import msgspec
from aiohttp import web

from signaling.api_access import managed_room
from signaling.api_http import EXTRA_ROUTES, ApiError, Call, Route, make_handler, reply
from signaling.relay import Relay, RelayError, RelaySpec

logger = logging.getLogger(__name__)

RELAYS: web.AppKey[dict[str, Relay]] = web.AppKey("relays", dict)
MAX_RELAYS = 16
"""Relays per server: each costs two peer connections and a WebSocket."""


class RelayIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    source_url: Annotated[str, msgspec.Meta(min_length=8, max_length=300,
                                            pattern=r"^(https?|wss?)://[^\s/?#]+/?$")]
    """The far server's base address, e.g. https://tinh.example.vn"""
    source_room: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    token: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    participants: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]],
                            msgspec.Meta(max_length=16)] = []
    """Far participant ids to relay; empty: everyone (or only the chair with ``pinned``)."""
    pinned: bool = False


class RelayOut(msgspec.Struct, kw_only=True):
    id: str
    room: str
    source_url: str
    source_room: str
    state: str
    error: str | None
    participant_id: str
    """The relay's id in this room; each relayed far participant is ``<participant_id>-<n>``
    (``stats.participants`` maps far ids to them)."""
    stats: dict[str, Any]


def relay_out(relay: Relay) -> RelayOut:
    return RelayOut(id=relay.id, room=relay.room, source_url=relay.spec.source_url,
                    source_room=relay.spec.source_room, state=relay.state, error=relay.error,
                    participant_id=relay.participant_id, stats=relay.summary())


async def _may_relay_into(call: Call) -> str:
    if call.me.role == "operator":
        return call.param("name")
    return (await managed_room(call)).name


async def _placed_here(call: Call, room: str) -> None:
    """With ``--redis`` a room runs on one node: the relay must run there too."""
    from signaling.cluster.node import CLUSTER, ClusterUnavailable

    node = call.request.app.get(CLUSTER)
    if node is None:
        return
    try:
        card = await node.place(room)
    except ClusterUnavailable:
        card = None
    if card is None:
        raise ApiError(503, "cluster-unavailable", "the coordinator cannot be reached")
    if card.node_id != node.node_id:
        raise ApiError(409, "wrong-node", f"room {room!r} runs on {card.address}: "
                                          "start the relay there")


async def create_relay(call: Call) -> web.Response:
    from signaling.app import CONFIG, MEDIA_PLANE  # app builds on this module's routes
    from signaling.settings import source_origin

    room = await _may_relay_into(call)
    body: RelayIn = call.body
    if call.me.role != "operator" and source_origin(body.source_url) not in \
            call.request.app[CONFIG].relay_sources:
        # The server opens the connection: a host must not point it at any address it can
        # reach (an internal service), only at far servers the operator listed.
        raise ApiError(403, "source-not-allowed", f"{source_origin(body.source_url)!r} is not "
                                                  "a listed relay source (relay_sources); ask "
                                                  "an operator")
    relays = call.request.app[RELAYS]
    if len(relays) >= MAX_RELAYS:
        raise ApiError(409, "conflict", f"at most {MAX_RELAYS} relays per server")
    await _placed_here(call, room)
    config = call.request.app[CONFIG]
    addresses = config.media.ice_addresses
    relay = Relay(secrets.token_hex(4), call.request.app[MEDIA_PLANE], room, RelaySpec(
        body.source_url.replace("ws", "http", 1) if body.source_url.startswith("ws")
        else body.source_url, body.source_room, body.token, tuple(body.participants),
        body.pinned), list(addresses) if addresses else None)
    relays[relay.id] = relay  # counted now: concurrent requests cannot pass MAX_RELAYS
    try:
        await relay.start()
    except RelayError as exc:
        relays.pop(relay.id, None)
        raise ApiError(502, "relay-failed", f"the far server: {exc}") from None
    except BaseException:
        relays.pop(relay.id, None)
        await relay.close()
        raise
    logger.info("relay %s: %s/%s -> %s", relay.id, body.source_url, body.source_room, room)
    return reply(relay_out(relay), 201)


async def list_relays(call: Call) -> web.Response:
    room = await _may_relay_into(call)
    return reply([relay_out(r) for r in call.request.app[RELAYS].values() if r.room == room])


async def delete_relay(call: Call) -> web.Response:
    room = await _may_relay_into(call)
    relays = call.request.app[RELAYS]
    relay = relays.get(call.param("id"))
    if relay is None or relay.room != room:
        raise ApiError(404, "not-found", f"no relay {call.param('id')!r} into {room!r}")
    del relays[relay.id]
    await relay.close()
    return web.Response(status=204)


R = "/api/rooms/{name}/relays"
RELAY_ROUTES: tuple[Route, ...] = (
    Route("POST", R, create_relay, "Relay a room of another server into this room (cascade)",
          body=RelayIn, answer=RelayOut, status=201),
    Route("GET", R, list_relays, "Relays into this room", answer=list[RelayOut]),
    Route("DELETE", R + "/{id}", delete_relay, "Stop a relay", status=204),
)


async def _close_relays(app: web.Application) -> None:
    relays = app[RELAYS]
    while relays:
        _relay_id, relay = relays.popitem()
        try:
            await relay.close()
        except Exception:
            logger.exception("closing relay %s", relay.id)


def install_relays(app: web.Application) -> None:
    app[RELAYS] = {}
    app[EXTRA_ROUTES] = app.get(EXTRA_ROUTES, ()) + RELAY_ROUTES
    app.router.add_routes([web.route(r.method, r.path, make_handler(r)) for r in RELAY_ROUTES])
    app.on_shutdown.append(_close_relays)
