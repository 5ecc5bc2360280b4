"""The control plane's storage: a ``Store`` interface and its embedded SQLite implementation."""

from __future__ import annotations

from pathlib import Path

from signaling.store.models import (
    DEFAULT_CAPACITY,
    ROLES,
    ROOM_KINDS,
    Account,
    ChatMessage,
    Conflict,
    Document,
    Endpoint,
    Invitation,
    InvitationUnusable,
    JoinRecord,
    Meeting,
    NotFound,
    Organisation,
    RecordingFile,
    RecordingRow,
    Role,
    Room,
    RoomKind,
    Store,
    StoreError,
)
from signaling.store.schedule import is_on
from signaling.store.sqlite import SqliteStore

DB_FILE = "diemcau.sqlite3"


async def open_store(data_dir: Path) -> Store:
    """The default store: one SQLite file in the data directory, migrated to the latest schema."""
    return await SqliteStore.open(data_dir / DB_FILE)


__all__ = [
    "DB_FILE", "DEFAULT_CAPACITY", "ROLES", "ROOM_KINDS", "Account", "ChatMessage", "Conflict",
    "Document", "Endpoint",
    "Invitation", "InvitationUnusable", "JoinRecord", "Meeting", "NotFound", "Organisation",
    "RecordingFile", "RecordingRow", "Role", "Room", "RoomKind", "SqliteStore", "Store",
    "StoreError", "is_on", "open_store",
]
