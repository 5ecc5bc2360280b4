"""The aiohttp application: web client, participant WebSocket, health and metrics.

Built by ``create_app(config)``; all state lives on the app under typed keys (no module globals),
and the worker's lifecycle is a ``cleanup_ctx`` so shutdown drains every room.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable
from importlib import resources
from importlib.metadata import version
from pathlib import Path

from aiohttp import WSCloseCode, web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from recorder.track_writer import WriterError
from sfu.plane import MediaPlane
from sfu.plane_pool import WorkerPool
from sfu.worker import Worker
from signaling.api import add_api_routes
from signaling.cluster.directory import cluster_message
from signaling.cluster.node import CLUSTER, ClusterNode
from signaling.cluster.pages import cluster_page
from signaling.cluster.seats import ClusterSeats
from signaling.cluster.sitting import SittingBook
from signaling.config import Config
from signaling.control import CONTROL, BootstrapResult, control_ctx
from signaling.documents import DOCUMENTS_DIR
from signaling.kiosk import add_kiosk_routes
from signaling.meeting_log import QualityReading
from signaling.metrics import RecordingCollector, make_registry, render
from signaling.moderation import LiveModerator, SessionRegistry
from signaling.netcheck import add_netcheck_routes
from signaling.recording import RECORDINGS, RecordingService
from signaling.session import Session
from signaling.web_security import add_security_headers, origin_allowed

logger = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)
MEDIA_PLANE = web.AppKey("media_plane", MediaPlane)
REGISTRY = web.AppKey("registry", CollectorRegistry)
SOCKETS = web.AppKey("sockets", weakref.WeakSet[web.WebSocketResponse])
WEB_ROOT = web.AppKey("web_root", Path)
SESSIONS = web.AppKey("sessions", SessionRegistry)
UNJOINED = web.AppKey("unjoined", Counter[str])
"""Open WebSockets per remote address that have not joined yet."""
REFUSALS = web.AppKey("refusals", Counter[str])
"""Signaling messages and sockets refused by a limit, by reason (exported on /metrics)."""
METRICS_RUNNER = web.AppKey("metrics_runner", web.AppRunner)

STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html",
                ".svg": "image/svg+xml"}


def web_root() -> Path:
    return Path(str(resources.files("web")))


async def index(request: web.Request) -> web.StreamResponse:
    if CLUSTER in request.app:  # the CSP and the page's node list from one snapshot
        html = (request.app[WEB_ROOT] / "index.html").read_text(encoding="utf-8")
        body, csp = cluster_page(html, request.app[CLUSTER].peer_addresses)
        return web.Response(text=body, content_type="text/html", headers={
            "Cache-Control": "no-cache", "Content-Security-Policy": csp})
    return web.FileResponse(request.app[WEB_ROOT] / "index.html",
                            headers={"Cache-Control": "no-cache"})


async def console(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[WEB_ROOT] / "console.html",
                            headers={"Cache-Control": "no-cache"})


async def static_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    root = request.app[WEB_ROOT]
    # Only plain file names of the shipped client: no separators, no dot-files, known types.
    path = root / name
    if "/" in name or "\\" in name or name.startswith(".") or path.suffix not in STATIC_TYPES \
            or not path.is_file():
        raise web.HTTPNotFound(text=f"no such file: {name}")
    return web.FileResponse(path, headers={"Content-Type": STATIC_TYPES[path.suffix],
                                           "Cache-Control": "no-cache"})


async def healthz(request: web.Request) -> web.Response:
    plane = request.app[MEDIA_PLANE]
    stats = plane.stats()
    body: dict[str, object] = {"status": "ok", "rooms": stats.rooms,
                               "participants": stats.participants}
    if isinstance(plane, WorkerPool):  # each worker process's pid; null while it restarts
        body["media_workers"] = plane.pids()
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    body = render(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def websocket(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    config = app[CONFIG]
    allowed = config.allowed_origins
    if CLUSTER in app:  # pages of the other nodes redirect their joins here
        allowed = (*allowed, *app[CLUSTER].peer_addresses)
    if not origin_allowed(request.headers.get("Origin"), request.host, allowed):
        app[REFUSALS]["origin"] += 1
        raise web.HTTPForbidden(text=f"origin {request.headers['Origin']!r} is not allowed; "
                                     "see --allowed-origin")
    address = request.remote or "?"
    unjoined = app[UNJOINED]
    if unjoined[address] >= config.max_unjoined_per_address:
        app[REFUSALS]["unjoined-per-address"] += 1
        raise web.HTTPTooManyRequests(
            text=f"{unjoined[address]} connections from {address} have not joined yet; "
                 f"at most {config.max_unjoined_per_address}", headers={"Retry-After": "10"})
    unjoined[address] += 1
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            unjoined[address] -= 1
            if unjoined[address] <= 0:
                del unjoined[address]

    # aiohttp checks max_msg_size on each frame's header and closes (1009) without buffering a
    # bigger one. It is fixed here, for the socket's life, so it is the joined limit; the
    # smaller limit before `join` is the session's (it closes the socket on the first frame
    # over it), and the per-address cap and join deadline bound how many such sockets exist.
    ws = web.WebSocketResponse(heartbeat=config.heartbeat_s,
                               max_msg_size=config.max_message_bytes)
    try:
        await ws.prepare(request)
        app[SOCKETS].add(ws)
        try:
            await Session(ws, app[MEDIA_PLANE], config, app[CONTROL], app[SESSIONS], address,
                          on_admitted=release, refusals=app[REFUSALS]).run()
        finally:
            app[SOCKETS].discard(ws)
    finally:
        release()
    return ws


class PlaneQuality:
    """``QualityProbe`` over the media plane's diagnostics, for the rooms with sessions here."""

    def __init__(self, plane: MediaPlane, sessions: SessionRegistry) -> None:
        self.plane = plane
        self.sessions = sessions

    def quality_readings(self) -> list[QualityReading]:
        rooms = sorted({s.room_name for s in self.sessions.all() if s.room_name is not None})
        return [QualityReading(room, d.id, d.loss,
                               None if d.rtt_s is None else d.rtt_s * 1000)
                for room in rooms for d in self.plane.diagnostics(room)]


async def worker_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    worker: MediaPlane
    if config.workers > 1:  # a process per core, each owning whole rooms (sfu/plane_pool.py)
        pool = WorkerPool(config.media, config.workers,
                          logging.getLevelName(logging.getLogger().getEffectiveLevel()))
        await pool.open()
        worker = pool
    else:
        worker = Worker(config.media)  # in this process; one interface for all
    worker.start()
    app[MEDIA_PLANE] = worker
    app[REGISTRY] = make_registry(worker, app[REFUSALS])
    app[CONTROL].moderator = moderator = LiveModerator(worker, app[CONTROL], app[SESSIONS])
    from signaling.relay_api import RELAYS  # (as install_relays below: a late import)

    if RELAYS in app:  # the relays' people are moderated through them
        moderator.relays = app[RELAYS]
    meetings = app[CONTROL].meetings
    sampler = None  # poor-quality samples: loss and round trip from the plane's diagnostics
    if meetings is not None:
        sampler = asyncio.ensure_future(meetings.sample_quality(
            PlaneQuality(worker, app[SESSIONS])))
    yield
    if sampler is not None:
        sampler.cancel()
    await worker.close()


async def recording_ctx(app: web.Application) -> AsyncIterator[None]:
    """Recover interrupted recordings, record rooms while asked, finish them all at shutdown."""
    sessions = app[SESSIONS]

    def notify(room: str, message: dict[str, object]) -> None:
        for session in sessions.in_room(room):
            session.send(message)

    retention = app[CONFIG].recording_retention_days
    service = RecordingService(app[MEDIA_PLANE], app[CONTROL].store, app[CONFIG].data_dir,
                               notify, record_all=app[CONFIG].record_all,
                               retention_s=retention * 86400 if retention else None)
    app[RECORDINGS] = service
    service.meetings = app[CONTROL].meetings
    plane = app[MEDIA_PLANE]
    if isinstance(plane, WorkerPool):  # a lost worker's rooms end: finish their recordings

        def room_lost(room: str) -> None:
            asyncio.ensure_future(service.on_left(room))

        plane.on_room_lost.append(room_lost)
    app[CONTROL].recordings = service
    app[REGISTRY].register(RecordingCollector(service.failures,
                                              tuple(error.value for error in WriterError)))
    async for _ in service.run():
        yield


async def cluster_ctx(app: web.Application) -> AsyncIterator[None]:
    """With --redis: this process joins the cluster (signaling/cluster) and admission takes its
    seats there. Closed after the rooms drained: our seats leave with us, not after the TTL."""
    config = app[CONFIG]
    if config.redis_url is None:
        yield
        return
    admission = app[CONTROL].admission
    sessions = app[SESSIONS]
    address = config.node_address or (
        f"{'https' if config.tls else 'http'}://{config.host}:{config.port}")

    def on_kick(session_id: str) -> None:
        # The seat was taken over at another node. Released as usual: the local mirror goes,
        # and Redis ignores the release (the seat is held by the new session now).
        session = sessions.get(session_id)
        if session is not None:
            asyncio.ensure_future(session.kick("taken-over"))

    def load() -> int:
        return len(sessions.all())

    def rooms() -> list[str]:
        return sorted({s.room_name for s in sessions.all() if s.room_name is not None})

    def on_peers(nodes: tuple[str, ...]) -> None:  # the node list changed: tell the clients
        message = cluster_message(nodes)
        for session in sessions.all():
            if session.admitted_or_waiting:  # lobby guests too: they wait again elsewhere
                session.send(message)

    node = ClusterNode(config.redis_url, address, version("diemcau"), node_id=config.node_id,
                       load=load, rooms=rooms, on_kick=on_kick, on_peers=on_peers)
    await node.start()

    def kick_remote(node_id: str, session_id: str) -> None:
        asyncio.ensure_future(node.kick(node_id, session_id))

    seats = ClusterSeats(node, kick_remote)
    admission.cluster = seats
    sittings = SittingBook(node.redis)  # a room's sitting survives its node
    sittings.start()
    admission.sittings = sessions.extras.sittings = sittings
    app[CLUSTER] = node
    try:
        yield
    finally:
        admission.cluster = None
        admission.sittings = sessions.extras.sittings = None
        await sittings.close()
        await seats.close()
        await node.close()


async def close_sockets(app: web.Application) -> None:
    """Shutdown: tell every participant why and drain the rooms, then close what is left."""
    sessions = app[SESSIONS].all()
    await asyncio.gather(*(session.kick("server-shutdown") for session in sessions),
                         return_exceptions=True)
    sockets = app[SOCKETS]  # named: mypy infers list(app[SOCKETS])'s key type from list()
    for ws in list(sockets):
        if not ws.closed:
            try:
                await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY,
                                                message=b"server shutdown"), 2.0)
            except TimeoutError:
                pass


async def metrics_listener_ctx(app: web.Application) -> AsyncIterator[None]:
    """/metrics on its own address and port (--metrics-host/--metrics-port), off the public
    listener, as LiveKit does: the figures describe every room."""
    config = app[CONFIG]
    if config.metrics_port is None:
        yield
        return
    metrics_app = web.Application()

    async def serve_metrics(request: web.Request) -> web.Response:
        return web.Response(body=render(app[REGISTRY]),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    metrics_app.add_routes([web.get("/metrics", serve_metrics)])
    runner = web.AppRunner(metrics_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.metrics_host or "127.0.0.1", config.metrics_port).start()
    app[METRICS_RUNNER] = runner
    logger.info("metrics on http://%s:%d/metrics", config.metrics_host or "127.0.0.1",
                config.metrics_port)
    yield
    await runner.cleanup()


def create_app(
    config: Config, on_bootstrap: Callable[[BootstrapResult], None] | None = None
) -> web.Application:
    app = web.Application(client_max_size=1 << 20)
    app[CONFIG] = config
    app[SOCKETS] = weakref.WeakSet()
    app[SESSIONS] = SessionRegistry()
    app[WEB_ROOT] = web_root()
    app[UNJOINED] = Counter()
    app[REFUSALS] = Counter()
    app[DOCUMENTS_DIR] = config.data_dir / "documents"  # meeting documents (issue 12)
    add_security_headers(app, config.tls, connect_to=lambda: (
        app[CLUSTER].peer_addresses if CLUSTER in app else ()))
    # The control plane opens first and closes last: rooms drain before the store closes.
    app.cleanup_ctx.append(
        control_ctx(config.data_dir, open_rooms=config.open_rooms, on_bootstrap=on_bootstrap,
                    open_room_capacity=config.open_room_capacity,
                    audit_retention_days=config.audit_retention_days,
                    store_url=config.store_url)
    )
    app.cleanup_ctx.append(cluster_ctx)
    app.cleanup_ctx.append(worker_ctx)
    app.cleanup_ctx.append(recording_ctx)  # cleaned up first: recordings finish, then rooms
    app.cleanup_ctx.append(metrics_listener_ctx)
    add_api_routes(app)
    add_netcheck_routes(app, config.media.audio_only_below_bps)
    add_kiosk_routes(app)
    app.on_shutdown.append(close_sockets)
    app.add_routes([
        web.get("/", index),
        web.get("/console", console),
        web.get("/kiosk", index),  # the meeting-room view: web/kiosk.js
        web.get("/static/{name}", static_file),
        web.get("/ws", websocket),
        web.get("/healthz", healthz),
    ])
    if config.metrics_port is None:  # else only on the separate metrics listener
        app.router.add_get("/metrics", metrics)
    from signaling.ops import install_ops  # it builds on this module's keys

    install_ops(app)  # /readyz, webhooks, support notices, SIGHUP (issue 13)
    from signaling.relay_api import install_relays

    install_relays(app)  # /api/rooms/{name}/relays (issue 14)
    return app
