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
class HookSettings:
    """Webhooks and support notices (signaling/webhooks.py, signaling/support.py)."""

    webhook_urls: tuple[str, ...] = ()
    webhook_secret: str = ""
    """Shared with the receivers: each body is signed with HMAC-SHA256 under it."""
    support_lead_s: float = 3600.0
    """Support staff are told of a scheduled meeting this long before it starts."""


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
    """Record every room while anyone is in it (the plans record every meeting)."""
    recording_retention_days: float | None = None
    """Recordings older than this many days are deleted (logged); None keeps them."""
    store_url: str | None = None
    """--store: a PostgreSQL URL every node shares (signaling/store/pg.py); None: the data
    directory's SQLite file."""
    redis_url: str | None = None
    """--redis: join a cluster of nodes (signaling/cluster); None runs alone."""
    node_address: str | None = None
    """This node's base URL as clients reach it (a join at another node is sent here)."""
    node_id: str | None = None
    workers: int = 0
    """SFU worker processes (each owns whole rooms); 0 or 1: the media plane runs in this
    process (``diemcau serve`` defaults to the number of cores)."""
    tls: bool = False
    """The listener speaks HTTPS (HSTS is sent)."""
    audit_retention_days: float = 365.0
    """Audit trail rows older than this are pruned (hourly; the pruning is itself audited)."""
    hooks: HookSettings = field(default_factory=HookSettings)
    turn: TurnConfig | None = None
    """TURN servers and credentials handed to clients in the join reply (signaling/turn.py)."""
    reconnect_grace_s: float = 15.0
    relay_sources: tuple[str, ...] = ()
    """Origins (scheme://host[:port]) hosts may relay from; operators may relay from any."""
    """A participant whose connection drops keeps its seat this long (signaling/resume.py)."""
