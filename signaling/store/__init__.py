"""The control plane's storage: a ``Store`` interface, its embedded SQLite implementation and
its PostgreSQL one (``signaling/store/pg.py``) for several hosts."""

from __future__ import annotations

import logging
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
logger = logging.getLogger(__name__)


async def open_store(data_dir: Path, url: str | None = None) -> Store:
    """The store, migrated to the latest schema: the PostgreSQL database at ``url``
    (``--store``; ``StoreError`` if it cannot be reached), else the default, one SQLite file in
    the data directory."""
    if url is not None:
        from signaling.store.locate import redact
        from signaling.store.pg import PgStore  # psycopg is loaded only by those who use it

        store = await PgStore.open(url)
        logger.info("store: PostgreSQL at %s", redact(url))
        return store
    return await SqliteStore.open(data_dir / DB_FILE)


__all__ = [
    "DB_FILE", "DEFAULT_CAPACITY", "ROLES", "ROOM_KINDS", "Account", "ChatMessage", "Conflict",
    "Document", "Endpoint",
    "Invitation", "InvitationUnusable", "JoinRecord", "Meeting", "NotFound", "Organisation",
    "RecordingFile", "RecordingRow", "Role", "Room", "RoomKind", "SqliteStore", "Store",
    "StoreError", "is_on", "open_store",
]
