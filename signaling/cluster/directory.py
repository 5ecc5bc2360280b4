"""What a client is told about the cluster: the base URLs of the other live nodes, so that a
browser whose node dies can rejoin its room through another one (web/failover.js).

Only addresses registered in this cluster's Redis by its own nodes are ever sent, and only
well-formed ones: ``http``/``https``, a host, no credentials, no path, query or fragment. The
client checks them again (it trusts nothing it did not get from its server's signaling).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from signaling.admission_types import Waiting
    from signaling.cluster.seats import ClusterSeats

MAX_NODES = 32
"""At most this many addresses in one message: a client tries them in turn."""
MAX_ADDRESS_CHARS = 256


def client_address(address: str) -> str | None:
    """``address`` as a client may use it (``scheme://host[:port]``), or None when it is not a
    plain http(s) base URL."""
    if not isinstance(address, str) or not address or len(address) > MAX_ADDRESS_CHARS:
        return None
    try:
        parts = urlsplit(address.strip())
        port = parts.port  # raises on a port that is not a number or out of range
    except ValueError:
        return None
    del port
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    if any(ch.isspace() or ord(ch) < 0x21 or ch in "\\<>\"'`" for ch in parts.netloc):
        return None
    return f"{parts.scheme}://{parts.netloc.lower()}"


def other_live_nodes(own_address: str, cards: Iterable[tuple[str, bool]]) -> tuple[str, ...]:
    """The addresses a client of the node at ``own_address`` may rejoin through: the live nodes'
    (``cards``: (address, alive) pairs), valid, without this node's, each once, in a stable
    order (sorted), at most ``MAX_NODES``."""
    own = client_address(own_address)
    out = sorted({addr for address, alive in cards
                  if alive and (addr := client_address(address)) is not None and addr != own})
    return tuple(out[:MAX_NODES])


def cluster_message(nodes: tuple[str, ...]) -> dict[str, object]:
    """The ``cluster`` message sent to every joined client of this node when the list changes."""
    return {"type": "cluster", "nodes": list(nodes)}


def lobby_extras(cluster: ClusterSeats | None, waiting: Waiting) -> dict[str, object]:
    """What a lobby guest of a cluster node gets besides ``lobby``: the other live nodes (the
    lobby lives in this node's memory and dies with it: the guest waits again through another
    node) and, for an invitation's guest, the rejoin token that waits again without spending
    another use (a guest token: it leads to the lobby again, past it only once a host let this
    guest in during the sitting, signaling/cluster/sitting.py)."""
    if cluster is None:
        return {}
    out: dict[str, object] = {"nodes": list(cluster.node.live_peers)}
    if waiting.principal.rejoin_token is not None:
        out["rejoin_token"] = waiting.principal.rejoin_token
    return out
