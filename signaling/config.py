"""Server configuration: one frozen dataclass, built by the CLI or by tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sfu.worker import MediaConfig

DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
"""Our protocol limit for one WebSocket frame (an SDP of ~700 m-lines fits)."""
HARD_MAX_MESSAGE_BYTES = 4 << 20
"""Beyond this aiohttp closes the socket with 1009 before we ever see the frame."""


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("./data")
    media: MediaConfig = field(default_factory=MediaConfig)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    heartbeat_s: float = 20.0
    open_rooms: bool = False
    open_room_capacity: int | None = None
    """Capacity of rooms made on the fly under --open-rooms (None: the default, 26)."""
    """Anyone may join any room without credentials: closed networks and tests only."""
