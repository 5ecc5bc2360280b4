"""The aiohttp application: web client, participant WebSocket, health and metrics.

Built by ``create_app(config)``; all state lives on the app under typed keys (no module globals),
and the worker's lifecycle is a ``cleanup_ctx`` so shutdown drains every room.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path

from aiohttp import WSCloseCode, web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from sfu.plane import MediaPlane
from sfu.worker import Worker
from signaling.api import add_api_routes
from signaling.config import HARD_MAX_MESSAGE_BYTES, Config
from signaling.control import CONTROL, BootstrapResult, control_ctx
from signaling.metrics import make_registry, render
from signaling.moderation import LiveModerator, SessionRegistry
from signaling.session import Session

logger = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)
MEDIA_PLANE = web.AppKey("media_plane", MediaPlane)
REGISTRY = web.AppKey("registry", CollectorRegistry)
SOCKETS = web.AppKey("sockets", weakref.WeakSet[web.WebSocketResponse])
WEB_ROOT = web.AppKey("web_root", Path)
SESSIONS = web.AppKey("sessions", SessionRegistry)

STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html",
                ".svg": "image/svg+xml"}


def web_root() -> Path:
    return Path(str(resources.files("web")))


async def index(request: web.Request) -> web.FileResponse:
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
    stats = request.app[MEDIA_PLANE].stats()
    return web.json_response({"status": "ok", "rooms": stats.rooms,
                              "participants": stats.participants})


async def metrics(request: web.Request) -> web.Response:
    body = render(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def websocket(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    config = app[CONFIG]
    ws = web.WebSocketResponse(heartbeat=config.heartbeat_s, max_msg_size=HARD_MAX_MESSAGE_BYTES)
    await ws.prepare(request)
    app[SOCKETS].add(ws)
    try:
        await Session(ws, app[MEDIA_PLANE], config, app[CONTROL], app[SESSIONS],
                      request.remote or "?").run()
    finally:
        app[SOCKETS].discard(ws)
    return ws


async def worker_ctx(app: web.Application) -> AsyncIterator[None]:
    worker: MediaPlane = Worker(app[CONFIG].media)  # in this process; one interface for all
    worker.start()
    app[MEDIA_PLANE] = worker
    app[REGISTRY] = make_registry(worker)
    app[CONTROL].moderator = LiveModerator(worker, app[CONTROL], app[SESSIONS])
    yield
    await worker.close()


async def close_sockets(app: web.Application) -> None:
    """Shutdown: tell every participant why and drain the rooms, then close what is left."""
    sessions = app[SESSIONS].all()
    await asyncio.gather(*(session.kick("server-shutdown") for session in sessions),
                         return_exceptions=True)
    for ws in list(app[SOCKETS]):
        if not ws.closed:
            try:
                await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY,
                                                message=b"server shutdown"), 2.0)
            except TimeoutError:
                pass


def create_app(
    config: Config, on_bootstrap: Callable[[BootstrapResult], None] | None = None
) -> web.Application:
    app = web.Application(client_max_size=1 << 20)
    app[CONFIG] = config
    app[SOCKETS] = weakref.WeakSet()
    app[SESSIONS] = SessionRegistry()
    app[WEB_ROOT] = web_root()
    # The control plane opens first and closes last: rooms drain before the store closes.
    app.cleanup_ctx.append(
        control_ctx(config.data_dir, open_rooms=config.open_rooms, on_bootstrap=on_bootstrap,
                    open_room_capacity=config.open_room_capacity)
    )
    app.cleanup_ctx.append(worker_ctx)
    add_api_routes(app)
    app.on_shutdown.append(close_sockets)
    app.add_routes([
        web.get("/", index),
        web.get("/console", console),
        web.get("/static/{name}", static_file),
        web.get("/ws", websocket),
        web.get("/healthz", healthz),
        web.get("/metrics", metrics),
    ])
    return app
