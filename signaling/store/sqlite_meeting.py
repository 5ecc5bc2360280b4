"""The meeting-extras tables of ``SqliteStore``: chat lines and room documents (issue 12).

A mixin over the store's plumbing (``_write``/``_one``/``_all`` run on the store thread), kept
apart like ``sqlite_archive.py`` so each file stays readable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from signaling.store.models import ChatMessage, Document, NotFound

T = TypeVar("T")


def _chat(row: sqlite3.Row) -> ChatMessage:
    return ChatMessage(row["id"], row["room"], row["meeting"], row["at"], row["identity"],
                       row["name"], row["text"], row["deleted_by"])


def _document(row: sqlite3.Row) -> Document:
    return Document(row["id"], row["room_id"], row["name"], row["kind"], row["bytes"],
                    row["sha256"], row["stored_as"], row["uploaded_by"], row["uploaded_at"])


class SqliteMeetingExtras:
    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _one(self, sql: str, args: tuple[object, ...]) -> sqlite3.Row | None:
        raise NotImplementedError

    async def _all(self, sql: str, args: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    # -- chat ------------------------------------------------------------------------------------

    async def add_chat(self, room_id: int | None, message: ChatMessage) -> ChatMessage:
        """Store one line (its ``id`` is ignored); returns it with the stored id."""
        row = await self._write(lambda c: c.execute(
            "INSERT INTO chat_messages (room_id, room, meeting, at, identity, name, text) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
            (room_id, message.room, message.meeting, message.at, message.identity,
             message.name, message.text)).fetchone())
        return _chat(row)

    async def list_chat(self, room: str, meeting: str, limit: int) -> list[ChatMessage]:
        """The last ``limit`` lines of one meeting that nobody deleted, oldest first."""
        rows = await self._all(
            "SELECT * FROM (SELECT * FROM chat_messages WHERE room = ? AND meeting = ? AND "
            "deleted_by IS NULL ORDER BY id DESC LIMIT ?) AS recent ORDER BY id",
            (room, meeting, limit))
        return [_chat(r) for r in rows]

    async def delete_chat(self, room: str, meeting: str, message_id: int,
                          deleted_by: str) -> ChatMessage | None:
        """A moderator removes a line of the sitting in progress: its text is blanked (kept:
        who deleted it); None if that sitting has no such line (or it was deleted already)."""
        row = await self._write(lambda c: c.execute(
            "UPDATE chat_messages SET deleted_by = ?, text = '' WHERE id = ? AND room = ? "
            "AND meeting = ? AND deleted_by IS NULL RETURNING *",
            (deleted_by, message_id, room, meeting)).fetchone())
        return None if row is None else _chat(row)

    # -- documents -------------------------------------------------------------------------------

    async def add_document(self, room_id: int, name: str, kind: str, size: int, sha256: str,
                           stored_as: str, uploaded_by: str, now: float) -> Document:
        row = await self._write(lambda c: c.execute(
            "INSERT INTO documents (room_id, name, kind, bytes, sha256, stored_as, uploaded_by, "
            "uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
            (room_id, name, kind, size, sha256, stored_as, uploaded_by, now)).fetchone())
        return _document(row)

    async def list_documents(self, room_id: int) -> list[Document]:
        rows = await self._all("SELECT * FROM documents WHERE room_id = ? ORDER BY id",
                               (room_id,))
        return [_document(r) for r in rows]

    async def get_document(self, room_id: int, document_id: int) -> Document:
        row = await self._one("SELECT * FROM documents WHERE room_id = ? AND id = ?",
                              (room_id, document_id))
        if row is None:
            raise NotFound("document", document_id)
        return _document(row)

    async def delete_document(self, room_id: int, document_id: int) -> Document:
        row = await self._write(lambda c: c.execute(
            "DELETE FROM documents WHERE room_id = ? AND id = ? RETURNING *",
            (room_id, document_id)).fetchone())
        if row is None:
            raise NotFound("document", document_id)
        return _document(row)
