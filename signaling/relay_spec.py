"""What a relay is asked to do and what it is called (``signaling/relay.py`` runs it,
``signaling/relay_api.py`` starts it): the far room, the token, which participants; the
relay's id and name in each room; the errors of reaching the far server."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

RELAY_ID_PREFIX = "relay-"
"""A relay's participant id in the near room (``Worker.publish_local``)."""
RELAY_SUFFIX = " (relay)"


def relay_name(room: str) -> str:
    """The display name a relay has in the other room (names are at most 64 characters)."""
    return f"{room[:56]}{RELAY_SUFFIX}"


class RelayError(Exception):
    """The relay could not start (the far server refused, or did not answer)."""


CONNECT_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, RelayError, KeyError, TypeError,
                  ValueError)


@dataclass(frozen=True)
class RelaySpec:
    source_url: str  # http(s)://host:port of the far server
    source_room: str
    token: str | None = None  # a join token minted on the far server (role "relay")
    participants: tuple[str, ...] = ()  # far participant ids to relay; empty: see `pinned`
    pinned: bool = False  # only the far room's pinned participant (the chair); else everyone
