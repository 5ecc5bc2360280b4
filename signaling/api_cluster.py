"""``/api/cluster``: every node of a cluster and every room it runs (operators), with --redis."""

from __future__ import annotations

from aiohttp import web

from signaling.api_http import ApiError, Call, Route, reply
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


CLUSTER_ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/cluster", cluster_view, "Nodes and the rooms each runs (with --redis)",
          "operator", answer=dict),
)
