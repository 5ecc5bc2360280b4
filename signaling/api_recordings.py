"""REST routes of the archive: start and stop a room's recording, list, fetch and delete.

Only operators, and a host for the rooms of their organisation, see or fetch recordings (a
recording keeps its organisation even after its room is deleted). A file is served only when
it is one the catalogue lists for that recording, and only from inside the archive folder:
no request path is ever joined onto the disk path.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from recorder.manifest import RECORDINGS_DIR
from signaling.api_access import managed_room, manages_org
from signaling.api_cluster import refuse_if_elsewhere
from signaling.api_http import ApiError, Call, Route, forbidden, no_content, reply
from signaling.api_models import RecordingFileOut, RecordingOut
from signaling.recording import RECORDINGS, RecordingConflict, RecordingService
from signaling.store import NotFound, RecordingRow

logger = logging.getLogger(__name__)


def recording_out(row: RecordingRow) -> RecordingOut:
    return RecordingOut(
        id=row.id, room=row.room, org_id=row.org_id, started_at=row.started_at,
        ended_at=row.ended_at, state=row.state, started_by=row.started_by,
        stopped_by=row.stopped_by, participants=list(row.participants),
        files=[RecordingFileOut(
            path=f.path, kind=f.kind, participant=f.participant, codec=f.codec,
            duration_s=f.duration_s, bytes=f.bytes, sha256=f.sha256,
            url=f"/api/recordings/{row.id}/files/{Path(f.path).name}") for f in row.files],
        error=row.error)


def _service(call: Call) -> RecordingService:
    service = call.request.app.get(RECORDINGS)
    if service is None:
        raise ApiError(503, "unavailable", "recording is not available on this server")
    return service


def _who(call: Call) -> str:
    return f"account:{call.me.id}"


async def _visible(call: Call) -> RecordingRow:
    """The recording in the path, if the caller may see it (else 404: do not confirm it)."""
    try:
        row = await call.control.store.get_recording(call.param("id"))
    except NotFound:
        raise ApiError(404, "not-found", f"no recording {call.param('id')!r}") from None
    if row.state == "deleted" or not (
            call.me.role == "operator"
            or (row.org_id is not None and manages_org(call.me, row.org_id))):
        raise ApiError(404, "not-found", f"no recording {call.param('id')!r}")
    return row


async def start_recording(call: Call) -> web.Response:
    room = await managed_room(call)
    await refuse_if_elsewhere(call, room.name)  # a cluster: recorded where it meets
    try:
        row = await _service(call).start(room.name, _who(call), call.request.remote or "")
    except RecordingConflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    return reply(recording_out(row), 201)


async def stop_recording(call: Call) -> web.Response:
    room = await managed_room(call)
    await refuse_if_elsewhere(call, room.name)  # a cluster: recorded where it meets
    try:
        row = await _service(call).stop(room.name, _who(call), call.request.remote or "")
    except RecordingConflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    return reply(recording_out(row))


async def list_recordings(call: Call) -> web.Response:
    query = call.request.query
    try:
        since = float(query["since"]) if "since" in query else None
        until = float(query["until"]) if "until" in query else None
    except ValueError:
        raise ApiError(400, "bad-request", "since/until are Unix times in seconds",
                       "since" if "since" in query else "until") from None
    org_id = None if call.me.role == "operator" else call.me.org_id
    rows = await call.control.store.list_recordings(room=query.get("room"), org_id=org_id,
                                                    since=since, until=until)
    return reply([recording_out(row) for row in rows])


async def get_recording(call: Call) -> web.Response:
    return reply(recording_out(await _visible(call)))


async def download_file(call: Call) -> web.StreamResponse:
    row = await _visible(call)
    name = call.param("file")
    listed = next((f for f in row.files if Path(f.path).name == name), None)
    if listed is None:
        raise ApiError(404, "not-found", f"no file {name!r} in recording {row.id}")
    data_dir = _service(call).data_dir
    root = (data_dir / RECORDINGS_DIR).resolve()
    path = (data_dir / listed.path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise ApiError(404, "not-found", f"file {name!r} of recording {row.id} is missing")
    # FileResponse answers Range requests (206) and conditional ones by itself.
    return web.FileResponse(path, headers={
        "Content-Disposition": f'attachment; filename="{row.id}-{name}"',
        "Cache-Control": "private, no-store",
    })


async def delete_recording(call: Call) -> web.Response:
    if call.me.role != "operator":
        raise forbidden("only operators delete recordings (the retention policy)")
    row = await _visible(call)
    try:
        await _service(call).delete(row, f"account {call.me.id}")
    except RecordingConflict:
        raise ApiError(409, "conflict", "stop the recording first") from None
    return no_content()


R = "/api/rooms/{name}/recording"
RECORDING_ROUTES: tuple[Route, ...] = (
    Route("POST", R, start_recording, "Start recording the room (everyone in it is told)",
          answer=RecordingOut, status=201),
    Route("DELETE", R, stop_recording, "Stop recording the room", answer=RecordingOut),
    Route("GET", "/api/recordings", list_recordings, "Recordings (hosts: of their "
          "organisation); ?room=&since=&until=", answer=list[RecordingOut]),
    Route("GET", "/api/recordings/{id}", get_recording, "One recording", answer=RecordingOut),
    Route("GET", "/api/recordings/{id}/files/{file}", download_file,
          "Download a recording's file (HTTP range requests supported)"),
    Route("DELETE", "/api/recordings/{id}", delete_recording,
          "Delete a recording's files (operators; logged)", status=204),
)
