"""Numbered schema migrations. Never edit a released one: append a new step.

Each step is a list of single statements (not one script: ``executescript`` commits on its own,
and a step must be applied in the same transaction as the bump of ``schema_version`` so a crash
leaves either the old schema or the new one).

Names and passwords are case-sensitive (the plans say so): every text key uses BINARY collation,
which is SQLite's default; we spell it out so nobody "fixes" it to NOCASE.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

Step = str | Callable[[sqlite3.Connection], None]
"""A statement, or (rarely) a function of the connection for what SQL text alone cannot say."""


def _widen_account_roles(conn: sqlite3.Connection) -> None:
    """Let ``accounts.role`` hold 'support' (issue 13). SQLite cannot alter a CHECK; rebuilding
    the table would cascade deletes through its foreign keys (they are on, and cannot be turned
    off inside this transaction). Loosening a CHECK changes nothing on disk, so SQLite's
    documented shortcut applies (ALTER TABLE docs, "making other kinds of table schema
    changes"): edit the stored CREATE text and bump the schema cookie so every connection
    re-reads it."""
    version = conn.execute("PRAGMA schema_version").fetchone()[0]
    conn.execute("PRAGMA writable_schema=ON")
    try:
        changed = conn.execute(
            "UPDATE sqlite_master SET sql = replace(sql, "
            "'CHECK (role IN (''operator'', ''host'', ''member''))', "
            "'CHECK (role IN (''operator'', ''host'', ''member'', ''support''))') "
            "WHERE type = 'table' AND name = 'accounts'").rowcount
        conn.execute(f"PRAGMA schema_version={int(version) + 1}")
    finally:
        conn.execute("PRAGMA writable_schema=OFF")
    if changed != 1:
        raise RuntimeError("migration 5: accounts table not found")


MIGRATIONS: list[list[Step]] = [
    # 1: the control plane
    [
        """CREATE TABLE organisations (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE COLLATE BINARY,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE accounts (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE COLLATE BINARY,
            display_name TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('operator', 'host', 'member')),
            org_id INTEGER REFERENCES organisations(id) ON DELETE RESTRICT,
            password_hash TEXT NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE rooms (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE COLLATE BINARY,
            org_id INTEGER NOT NULL REFERENCES organisations(id) ON DELETE RESTRICT,
            capacity INTEGER NOT NULL CHECK (capacity > 0),
            kind TEXT NOT NULL CHECK (kind IN ('multipoint', 'endpoint-phone')),
            locked INTEGER NOT NULL DEFAULT 0,
            lobby INTEGER NOT NULL DEFAULT 0,
            auto_record INTEGER NOT NULL DEFAULT 0,
            password_hash TEXT,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE memberships (
            room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            PRIMARY KEY (room_id, account_id)
        )""",
        """CREATE TABLE invitations (
            id INTEGER PRIMARY KEY,
            room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
            token_hash TEXT NOT NULL UNIQUE,
            label TEXT NOT NULL DEFAULT '',
            max_uses INTEGER NOT NULL CHECK (max_uses > 0),
            uses_left INTEGER NOT NULL CHECK (uses_left >= 0),
            expires_at REAL NOT NULL,
            revoked INTEGER NOT NULL DEFAULT 0,
            created_by INTEGER REFERENCES accounts(id) ON DELETE SET NULL,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE meetings (
            id INTEGER PRIMARY KEY,
            room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
            title TEXT NOT NULL,
            first_date TEXT NOT NULL,
            start TEXT NOT NULL,
            "end" TEXT NOT NULL,
            weekly INTEGER NOT NULL,
            until TEXT,
            utc_offset_min INTEGER NOT NULL
        )""",
        """CREATE TABLE meeting_accounts (
            meeting_id INTEGER NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            PRIMARY KEY (meeting_id, account_id)
        )""",
        """CREATE TABLE endpoints (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE COLLATE BINARY,
            org_id INTEGER NOT NULL REFERENCES organisations(id) ON DELETE RESTRICT,
            secret_hash TEXT NOT NULL,
            created_at REAL NOT NULL,
            last_seen_at REAL
        )""",
        """CREATE TABLE meeting_endpoints (
            meeting_id INTEGER NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,
            endpoint_id INTEGER NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
            PRIMARY KEY (meeting_id, endpoint_id)
        )""",
        """CREATE TABLE api_sessions (
            token_hash TEXT PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            expires_at REAL NOT NULL
        )""",
        """CREATE TABLE joins (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            room TEXT NOT NULL,
            identity TEXT NOT NULL,
            role TEXT NOT NULL,
            address TEXT NOT NULL,
            outcome TEXT NOT NULL
        )""",
        "CREATE INDEX joins_room_at ON joins (room, at)",
        "CREATE INDEX meeting_endpoints_endpoint ON meeting_endpoints (endpoint_id)",
        "CREATE INDEX memberships_account ON memberships (account_id)",
    ],
    # 2: access control (security issue 8): tokens bound to the room instance, "tokens issued
    # before T are void" for a room and for an account, removals that outlast a meeting, and a
    # join audit that merges repeats (``count``, ``last_at``) and can be pruned by time.
    [
        "ALTER TABLE rooms ADD COLUMN instance TEXT NOT NULL DEFAULT ''",
        "UPDATE rooms SET instance = lower(hex(randomblob(16)))",
        "ALTER TABLE rooms ADD COLUMN tokens_void_before REAL NOT NULL DEFAULT 0",
        "ALTER TABLE accounts ADD COLUMN tokens_void_before REAL NOT NULL DEFAULT 0",
        """CREATE TABLE removals (
            room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
            identity TEXT NOT NULL,
            until REAL NOT NULL,
            PRIMARY KEY (room_id, identity)
        )""",
        "ALTER TABLE joins ADD COLUMN count INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE joins ADD COLUMN last_at REAL",
        "CREATE INDEX joins_at ON joins (at)",
    ],
    # 3: the archive's catalogue (recording issue 9): one row per recording; its files (path,
    # kind, participant, codec, duration, bytes, sha256) as JSON, copied from its manifest.
    [
        """CREATE TABLE recordings (
            id TEXT PRIMARY KEY,
            room TEXT NOT NULL COLLATE BINARY,
            org_id INTEGER,
            meeting_id INTEGER,
            started_at REAL NOT NULL,
            ended_at REAL,
            state TEXT NOT NULL CHECK (state IN ('recording', 'complete', 'recovered',
                                                 'failed', 'deleted')),
            started_by TEXT NOT NULL,
            stopped_by TEXT,
            participants TEXT NOT NULL DEFAULT '[]',
            files TEXT NOT NULL DEFAULT '[]',
            error TEXT
        )""",
        "CREATE INDEX recordings_room_started ON recordings (room, started_at)",
    ],
    # 4 (issue 13, operations): the event record the daily report reads (``events``: one row
    # per meeting event, detail as JSON) and the audit trail (``audit``: append-only, each row
    # carrying the hash of the previous one; ``audit_anchor`` keeps the last pruned row's
    # sequence number and hash so the chain still verifies after the retention policy ran).
    # Updates of audit rows are refused by a trigger (deletes are the retention policy's).
    [
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            room TEXT NOT NULL COLLATE BINARY,
            participant TEXT NOT NULL DEFAULT '',
            identity TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX events_at ON events (at)",
        """CREATE TABLE audit (
            seq INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            room TEXT NOT NULL DEFAULT '',
            target TEXT NOT NULL DEFAULT '',
            address TEXT NOT NULL DEFAULT '',
            outcome TEXT NOT NULL DEFAULT 'ok',
            detail TEXT NOT NULL DEFAULT '{}',
            prev TEXT NOT NULL,
            hash TEXT NOT NULL
        )""",
        "CREATE INDEX audit_at ON audit (at)",
        "CREATE INDEX audit_room_at ON audit (room, at)",
        """CREATE TABLE audit_anchor (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            seq INTEGER NOT NULL,
            hash TEXT NOT NULL
        )""",
        """CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
           BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END""",
    ],
    # 5: operations (issue 13): the support role, the durable webhook queue, and the
    # support notices sent (one per meeting occurrence, so a restart never sends one twice).
    [
        _widen_account_roles,
        """CREATE TABLE webhook_queue (
            id INTEGER PRIMARY KEY,
            url TEXT NOT NULL,
            event TEXT NOT NULL,
            body TEXT NOT NULL,
            created_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,
            last_error TEXT,
            delivered_at REAL
        )""",
        "CREATE INDEX webhook_queue_due ON webhook_queue (delivered_at, next_at)",
        """CREATE TABLE support_notices (
            meeting_id INTEGER NOT NULL,
            starts_at REAL NOT NULL,
            room TEXT NOT NULL,
            title TEXT NOT NULL,
            sent_at REAL NOT NULL,
            PRIMARY KEY (meeting_id, starts_at)
        )""",
    ],
    # 6: meeting extras (issue 12): the AIC eMeeting guest join (room name + the room's
    # password + a display name) when the room's host allows it; chat stored with the meeting
    # (one meeting = from the first join into an empty room until it empties or is ended); the
    # room's documents (the files themselves live in the data directory).
    [
        "ALTER TABLE rooms ADD COLUMN guest_password_join INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE chat_messages (
            id INTEGER PRIMARY KEY,
            room_id INTEGER REFERENCES rooms(id) ON DELETE CASCADE,
            room TEXT NOT NULL COLLATE BINARY,
            meeting TEXT NOT NULL,
            at REAL NOT NULL,
            identity TEXT NOT NULL,
            name TEXT NOT NULL,
            text TEXT NOT NULL,
            deleted_by TEXT
        )""",
        "CREATE INDEX chat_messages_meeting ON chat_messages (room, meeting, id)",
        """CREATE TABLE documents (
            id INTEGER PRIMARY KEY,
            room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('pdf', 'docx')),
            bytes INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            stored_as TEXT NOT NULL UNIQUE,
            uploaded_by TEXT NOT NULL,
            uploaded_at REAL NOT NULL
        )""",
        "CREATE INDEX documents_room ON documents (room_id, id)",
    ],
    # 7 (issue 14): secrets the nodes sharing a networked store share (the join-token signing
    # key; SQLite stores keep it in the data directory's file as before).
    [
        """CREATE TABLE store_secrets (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
    ],
]
