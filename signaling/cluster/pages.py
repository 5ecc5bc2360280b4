"""The meeting page of a cluster node: its CSP ``connect-src`` and the node list the page may
use come from one snapshot of the registered addresses.

A CSP cannot grow after the page loaded, so a node registered later is out of reach of the
pages already open. Rather than let such a page fail against its own CSP, the page is told
which nodes its CSP allows (``<meta name="diemcau-nodes">``): it opens sockets only there and
moves (loads the page from the other node, web/failover.js ``movePage``) when it must reach one
outside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from signaling.cluster.directory import client_address
from signaling.web_security import content_security_policy

ANCHOR = '<meta charset="utf-8">'


def page_nodes(addresses: Iterable[str]) -> tuple[str, ...]:
    """The valid client addresses among ``addresses``, each once, sorted."""
    return tuple(sorted({a for x in addresses if (a := client_address(x)) is not None}))


def cluster_page(html: str, addresses: Iterable[str]) -> tuple[str, str]:
    """``html`` with the node list after its charset declaration, and the CSP naming the same
    nodes (the header must be set from this, not computed again later)."""
    nodes = page_nodes(addresses)
    meta = f'<meta name="diemcau-nodes" content="{escape(" ".join(nodes))}">'
    if ANCHOR not in html:
        raise ValueError(f"the page has no {ANCHOR!r} to put the node list after")
    return html.replace(ANCHOR, f"{ANCHOR}\n  {meta}", 1), content_security_policy(nodes)
