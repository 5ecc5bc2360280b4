"""Server configuration: one frozen dataclass, built by the CLI or by tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sfu.worker import MediaConfig
from signaling.limits import (
    JOIN_TIMEOUT_S,
    MAX_OFFERS_PER_MINUTE,
    MAX_UNJOINED_PER_ADDRESS,
    PREJOIN_MAX_MESSAGE_BYTES,
)
from signaling.turn import TurnConfig

DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
"""Our protocol limit for one WebSocket frame (a subscriber answer for a large room fits).
aiohttp enforces it from the frame header (close 1009, nothing buffered)."""


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("./data")
    media: MediaConfig = field(default_factory=MediaConfig)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    heartbeat_s: float = 20.0
    open_rooms: bool = False
    """Anyone may join any room without credentials: closed networks and tests only."""
    open_room_capacity: int | None = None
    """Capacity of rooms made on the fly under --open-rooms (None: the default, 26)."""
    prejoin_max_message_bytes: int = PREJOIN_MAX_MESSAGE_BYTES
    """Frame limit until the socket has joined (or reached the lobby)."""
    join_timeout_s: float = JOIN_TIMEOUT_S
    max_unjoined_per_address: int = MAX_UNJOINED_PER_ADDRESS
    max_offers_per_minute: int = MAX_OFFERS_PER_MINUTE
    allowed_origins: tuple[str, ...] = ()
    """Browser origins allowed on /ws besides the server's own (scheme://host[:port])."""
    metrics_host: str | None = None
    metrics_port: int | None = None
    """When set, /metrics is served only on this separate listener."""
    record_all: bool = False
    recording_retention_days: float | None = None
    """Recordings older than this many days are deleted (logged); None keeps them."""
    """Record every room while anyone is in it (the plans record every meeting)."""
    tls: bool = False
    """The listener speaks HTTPS (HSTS is sent)."""
    turn: TurnConfig | None = None
    """TURN servers and credentials handed to clients in the join reply (signaling/turn.py)."""
    reconnect_grace_s: float = 15.0
    """A participant whose connection drops keeps its seat this long (signaling/resume.py)."""
