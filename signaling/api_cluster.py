"""``/api/cluster``: every node of a cluster and every room it runs (operators), with --redis."""

from __future__ import annotations

from aiohttp import web

from signaling.api_http import ApiError, Call, Route, reply
from signaling.cluster.directory import client_address
from signaling.cluster.node import CLUSTER, ClusterUnavailable


async def cluster_view(call: Call) -> web.StreamResponse:
    app = call.request.app
    if CLUSTER not in app:
        raise ApiError(404, "not-found", "this server runs alone (no --redis)")
    node = app[CLUSTER]
    try:
        nodes = await node.nodes()
        rooms = await node.rooms()
    except ClusterUnavailable as exc:
        raise ApiError(503, "cluster-unavailable", f"Redis does not answer: {exc}") from None
    return reply({
        "self": node.node_id,
        "nodes": [{"id": n.node_id, "address": n.address, "load": n.load,
                   "version": n.version, "alive": n.alive} for n in nodes],
        "rooms": [{"name": name, **info} for name, info in sorted(rooms.items())],
    })


async def refuse_if_elsewhere(call: Call, room: str) -> None:
    """A live meeting is moderated where it meets: on any other node of the cluster the
    participants, lobby, mutes and recordings of ``room`` would be an empty, wrong picture, so
    the call is refused with 421 ``wrong-node`` and the room's node address (the console links
    to that node's console). Alone (no --redis), or for a room placed here or nowhere, nothing."""
    app = call.request.app
    if CLUSTER not in app:
        return
    node = app[CLUSTER]
    try:
        where = await node.placement(room)
        card = None if where is None or where == node.node_id else await node.card(where)
    except ClusterUnavailable as exc:
        raise ApiError(503, "cluster-unavailable", f"Redis does not answer: {exc}") from None
    if where is None or where == node.node_id:
        return
    address = client_address(card.address) if card is not None else None
    raise ApiError(421, "wrong-node", f"room {room!r} meets on node {where}"
                   + (f" ({address}): use the console there" if address else ""),
                   node_address=address)


CLUSTER_ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/cluster", cluster_view, "Nodes and the rooms each runs (with --redis)",
          "operator", answer=dict),
)
