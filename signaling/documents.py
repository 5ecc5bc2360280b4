"""Meeting documents (issue 12): the host attaches PDF and DOCX files to a room; participants
list and download them from the meeting page.

- Upload is a raw body (``POST /api/rooms/{name}/documents?filename=...``), read in chunks and
  refused past ``MAX_DOCUMENT_BYTES`` (before reading, when ``Content-Length`` says so).
- The type is what the bytes are, never what the name or the Content-Type claim: a PDF starts
  with ``%PDF-``; a DOCX is a ZIP holding ``[Content_Types].xml`` and ``word/document.xml``.
- The bytes go to ``<data dir>/documents/<random>.<kind>``, mode 0600 (folder 0700), written to
  a temporary file and renamed; the uploader's file name is only shown (sanitised), never
  joined onto a path.
- Access as for the room: hosts of its organisation and operators manage; the room's members
  (REST accounts) list and fetch; a participant in the meeting gets a download key with the
  ``documents`` WebSocket message (HMAC of the room's instance and an expiry, so it dies with
  the room and after ``KEY_TTL_S``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import logging
import os
import secrets
import unicodedata
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal
from urllib.parse import quote

import msgspec
from aiohttp import web

from signaling.api_access import managed_room, manages_org
from signaling.api_http import ApiError, Call, Route, bearer, no_content, reply
from signaling.auth import hash_secret_token
from signaling.store import Document, NotFound, Room

logger = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 20 << 20
"""A meeting's papers (plans, minutes, slides as PDF) fit; a video does not."""
MAX_DOCUMENTS_PER_ROOM = 50
MAX_NAME_CHARS = 120
KEY_TTL_S = 12 * 3600
CHUNK = 64 << 10
DOCUMENTS_DIR = web.AppKey("documents_dir", Path)
"""Where the files live (``<data dir>/documents``); set by ``create_app``."""

Kind = Literal["pdf", "docx"]
MEDIA_TYPES: dict[str, str] = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


class DocumentOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    kind: str
    bytes: int
    sha256: str
    uploaded_at: float
    url: str


# -- pure rules ------------------------------------------------------------------------------------


def sniff_kind(data: bytes) -> Kind | None:
    """What the bytes are: "pdf", "docx", or None (anything else, a renamed .exe included)."""
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, ValueError, OSError):
            return None
        if "[Content_Types].xml" in names and "word/document.xml" in names:
            return "docx"
    return None


def sanitise_name(name: str, kind: Kind) -> str:
    """A display name that is only a name: the last path component (either slash), NFC, no
    control or format characters, no leading dots, at most ``MAX_NAME_CHARS``, ending in the
    extension of what the bytes are."""
    name = unicodedata.normalize("NFC", name)
    name = PureWindowsPath(PurePosixPath(name.replace("\\", "/")).name).name
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    name = name.strip().lstrip(".").strip()
    stem, dot, ext = name.rpartition(".")
    if dot and ext.lower() in MEDIA_TYPES:
        name = stem.strip()
    name = name[:MAX_NAME_CHARS - len(kind) - 1].rstrip(". ") or "tai-lieu"
    return f"{name}.{kind}"


def download_key(secret: bytes, room: Room, now: float) -> tuple[str, int]:
    """(key, expiry) letting its holder fetch room ``room``'s documents until the expiry."""
    expires = int(now + KEY_TTL_S)
    return f"{expires}.{_mac(secret, room, expires)}", expires


def key_valid(secret: bytes, room: Room, key: str, now: float) -> bool:
    expires_text, _, mac = key.partition(".")
    try:
        expires = int(expires_text)
    except ValueError:
        return False
    return expires > now and hmac.compare_digest(mac, _mac(secret, room, expires))


def _mac(secret: bytes, room: Room, expires: int) -> str:
    message = f"documents\n{room.name}\n{room.instance}\n{expires}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def document_url(room: str, document_id: int) -> str:
    return f"/api/rooms/{quote(room, safe='')}/documents/{document_id}/file"


def document_json(d: Document, room: str) -> dict[str, Any]:
    return {"id": d.id, "name": d.name, "kind": d.kind, "bytes": d.bytes,
            "url": document_url(room, d.id)}


def _out(d: Document, room: str) -> DocumentOut:
    return DocumentOut(id=d.id, name=d.name, kind=d.kind, bytes=d.bytes, sha256=d.sha256,
                       uploaded_at=d.uploaded_at, url=document_url(room, d.id))


# -- the files -------------------------------------------------------------------------------------


def _folder(call: Call) -> Path:
    folder = call.request.app.get(DOCUMENTS_DIR)
    if folder is None:
        raise ApiError(503, "unavailable", "documents are not available on this server")
    return folder


def _write_file(folder: Path, stored_as: str, data: bytes) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = folder / stored_as
    temporary = folder / f".{stored_as}.part"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


async def _read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_DOCUMENT_BYTES:
        raise ApiError(413, "too-large", f"a document has at most {MAX_DOCUMENT_BYTES} bytes",
                       "body")
    parts: list[bytes] = []
    size = 0
    while chunk := await request.content.read(CHUNK):
        size += len(chunk)
        if size > MAX_DOCUMENT_BYTES:
            raise ApiError(413, "too-large", f"a document has at most {MAX_DOCUMENT_BYTES} "
                                             "bytes", "body")
        parts.append(chunk)
    return b"".join(parts)


# -- routes ----------------------------------------------------------------------------------------


async def _readable_room(call: Call) -> Room:
    """The room, for someone who may see its documents: its managers, its members (bearer),
    or a participant holding a download key (``?key=``)."""
    store = call.control.store
    try:
        room = await store.get_room(call.param("name"))
    except NotFound:
        raise ApiError(404, "not-found", f"no room {call.param('name')!r}") from None
    key = call.request.query.get("key")
    if key is not None:
        if key_valid(call.control.secret, room, key, call.control.clock()):
            return room
        raise ApiError(403, "forbidden", "this download key is not valid (any more); reopen "
                                         "the documents list in the meeting")
    token = bearer(call.request)
    account = None if token is None else await store.api_session_account(
        hash_secret_token(token), call.control.clock())
    if account is None:
        raise ApiError(401, "unauthorized", "log in, or open the documents from the meeting",
                       headers={"WWW-Authenticate": "Bearer"})
    if manages_org(account, room.org_id) or await store.is_member(room.id, account.id):
        return room
    raise ApiError(403, "forbidden", f"you are not a member of room {room.name!r}")


async def list_documents(call: Call) -> web.Response:
    room = await _readable_room(call)
    documents = await call.control.store.list_documents(room.id)
    return reply([_out(d, room.name) for d in documents])


async def upload_document(call: Call) -> web.Response:
    room = await managed_room(call)
    folder = _folder(call)
    filename = call.request.query.get("filename", "")
    if not filename or len(filename) > 1024:
        raise ApiError(400, "bad-request", "give the file's name as ?filename= (at most 1024 "
                                           "characters)", "filename")
    if len(await call.control.store.list_documents(room.id)) >= MAX_DOCUMENTS_PER_ROOM:
        raise ApiError(409, "too-many", f"a room holds at most {MAX_DOCUMENTS_PER_ROOM} "
                                        "documents; delete one first")
    data = await _read_body(call.request)
    kind = await asyncio.to_thread(sniff_kind, data)
    if kind is None:
        raise ApiError(415, "bad-type", "only PDF and DOCX documents are accepted (checked on "
                                        "the file's content, not its name)", "body")
    name = sanitise_name(filename, kind)
    stored_as = f"{secrets.token_hex(16)}.{kind}"
    await asyncio.to_thread(_write_file, folder, stored_as, data)
    document = await call.control.store.add_document(
        room.id, name, kind, len(data), hashlib.sha256(data).hexdigest(), stored_as,
        f"account:{call.me.id}", call.control.clock())
    logger.info("document %r (%s, %d bytes) attached to room %r", name, kind, len(data),
                room.name)
    return reply(_out(document, room.name), 201)


async def download_document(call: Call) -> web.StreamResponse:
    room = await _readable_room(call)
    document = await call.control.store.get_document(room.id, call.int_param("id"))
    path = _folder(call) / document.stored_as  # our own name, from the store: never the URL's
    if not path.is_file():
        raise ApiError(404, "not-found", f"the file of document {document.id} is missing")
    ascii_name = document.name.encode("ascii", "replace").decode().replace("?", "_")
    ascii_name = ascii_name.replace('"', "_")
    return web.FileResponse(path, headers={
        "Content-Type": MEDIA_TYPES[document.kind],
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; "
                               f"filename*=UTF-8''{quote(document.name, safe='')}",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store",
    })


async def delete_document(call: Call) -> web.Response:
    room = await managed_room(call)
    document = await call.control.store.delete_document(room.id, call.int_param("id"))
    (_folder(call) / document.stored_as).unlink(missing_ok=True)
    return no_content()


async def remove_room_documents(call: Call, room: Room) -> None:
    """A room is being deleted: its documents' files go with it (the rows cascade)."""
    folder = call.request.app.get(DOCUMENTS_DIR)
    if folder is None:
        return
    for document in await call.control.store.list_documents(room.id):
        (folder / document.stored_as).unlink(missing_ok=True)


R = "/api/rooms/{name}/documents"
DOCUMENT_ROUTES: tuple[Route, ...] = (
    Route("GET", R, list_documents, "The room's documents (members, or ?key= from the "
          "meeting)", "public", answer=list[DocumentOut]),
    Route("POST", R, upload_document, "Attach a PDF or DOCX document: the raw file as the "
          "body, its name as ?filename=", answer=DocumentOut, status=201),
    Route("GET", R + "/{id}/file", download_document, "Download a document (members, or "
          "?key= from the meeting)", "public"),
    Route("DELETE", R + "/{id}", delete_document, "Remove a document", status=204),
)
