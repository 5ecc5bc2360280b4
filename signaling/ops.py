"""Running the server as a service (issue 13): readiness, webhooks, support notices, SIGHUP.

``install_ops(app)`` (called by ``create_app``) adds:

- ``/readyz``: 200 when the store answers, the media plane is started and the server is not
  draining (shutting down); else 503 with the reasons. ``/healthz`` stays "the process runs".
- the webhook queue (``signaling/webhooks.py``) fed by sessions (``ControlPlane.events``) and the
  recording service, and the support notifier and routes (``signaling/support.py``);
- a SIGHUP handler (when the CLI set ``app[RELOAD]``) that re-reads the config file and the
  environment and applies what can change while serving (``settings.RELOADABLE``); it logs
  what it changed and what would need a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from signaling.app import CONFIG, MEDIA_PLANE, REGISTRY, SESSIONS
from signaling.config import Config, HookSettings
from signaling.control import CONTROL
from signaling.recording import RECORDINGS
from signaling.settings import RELOADABLE, SECRET_KEYS, ConfigError, Settings, to_config
from signaling.store.sqlite_ops import SqliteOps
from signaling.support import SupportNotifier, add_support_routes, support_routes
from signaling.webhooks import RoomEvents, WebhookService

logger = logging.getLogger(__name__)


@dataclass
class Reloader:
    current: Settings
    load: Callable[[], Settings]
    """Re-reads the file and the environment (the flags given at start still win)."""


@dataclass
class OpsState:
    draining: bool = False
    media_started: bool = False
    webhooks: WebhookService | None = None
    notifier: SupportNotifier | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


OPS = web.AppKey("ops", OpsState)
RELOAD = web.AppKey("reload", Reloader)


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    state = app[OPS]
    reasons = []
    control = app.get(CONTROL)
    if control is None:
        reasons.append("store not open")
    else:
        try:
            await asyncio.wait_for(control.store.is_empty(), 5.0)
        except Exception as exc:  # closed, or the disk is gone: not ready, whatever it is
            reasons.append(f"store not answering: {type(exc).__name__}")
    if not state.media_started or MEDIA_PLANE not in app:
        reasons.append("media plane not started")
    if state.draining:
        reasons.append("draining")
    if reasons:
        return web.json_response({"status": "not-ready", "reasons": reasons}, status=503)
    return web.json_response({"status": "ready"})


def install_ops(app: web.Application) -> None:
    app[OPS] = OpsState()
    app.cleanup_ctx.append(ops_ctx)  # after the others: cleaned up first

    async def drain(app: web.Application) -> None:
        app[OPS].draining = True

    app.on_shutdown.insert(0, drain)  # before the sessions are told to go
    app.router.add_get("/readyz", readyz)

    def notifier() -> SupportNotifier:
        found = app[OPS].notifier
        if found is None:
            raise web.HTTPServiceUnavailable(text="support notices need the SQLite store")
        return found

    def room_names() -> set[str]:
        return {s.room_name for s in app[SESSIONS].all() if s.room_name is not None}

    add_support_routes(app, support_routes(lambda: app[MEDIA_PLANE], room_names, notifier))


async def ops_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[OPS]
    config = app[CONFIG]
    control = app[CONTROL]
    state.media_started = MEDIA_PLANE in app
    store = control.store
    if isinstance(store, SqliteOps):
        webhooks = WebhookService(store, config.hooks)
        events = RoomEvents(webhooks)
        control.events = events
        if RECORDINGS in app:
            app[RECORDINGS].on_event = (
                lambda event, room, recording_id, error:
                events.recording(event, room, recording_id, error))
        notifier = SupportNotifier(store, config.hooks, webhooks)
        state.webhooks, state.notifier = webhooks, notifier
        state.tasks = [asyncio.ensure_future(webhooks.run()),
                       asyncio.ensure_future(notifier.run())]
        if REGISTRY in app:
            app[REGISTRY].register(OpsCollector(webhooks, notifier))
    loop = asyncio.get_running_loop()
    hup = False
    if RELOAD in app:
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: reload(app))
            hup = True
        except (NotImplementedError, RuntimeError, ValueError):
            logger.warning("SIGHUP reload is not available here")
    try:
        yield
    finally:
        state.draining = True
        if hup:
            loop.remove_signal_handler(signal.SIGHUP)
        for task in state.tasks:
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)
        if state.webhooks is not None:
            await state.webhooks.close()
        control.events = None


def reload(app: web.Application) -> list[str]:
    """Re-read and apply; returns (and logs) what changed. A bad file changes nothing."""
    reloader = app[RELOAD]
    try:
        new = reloader.load()
    except ConfigError as exc:
        logger.error("SIGHUP: configuration not reloaded: %s", exc)
        return []
    changes = apply_settings(app, reloader.current, new)
    reloader.current = new
    return changes


def apply_settings(app: web.Application, old: Settings, new: Settings) -> list[str]:
    changed = [key for key in Settings.__struct_fields__
               if getattr(old, key) != getattr(new, key)]
    applied = [key for key in changed if key in RELOADABLE]
    restart = [key for key in changed if key not in RELOADABLE]
    fresh = to_config(new)
    config = app[CONFIG]
    # Config is frozen against accidental edits; this is its one deliberate writer. Every
    # holder (the app, each new Session) shares this object, so new sockets see the new limits.
    limits = {"join_timeout_s": fresh.join_timeout_s,
              "max_unjoined_per_address": fresh.max_unjoined_per_address,
              "recording_retention_days": fresh.recording_retention_days,
              "hooks": fresh.hooks,
              "media": dataclasses.replace(config.media, ice_servers=fresh.media.ice_servers)}
    for name, value in limits.items():
        object.__setattr__(config, name, value)
    _apply_to_services(app, config)
    text = ", ".join(key if key in SECRET_KEYS else
                     f"{key} ({getattr(old, key)!r} -> {getattr(new, key)!r})"
                     for key in applied) or "nothing changed"
    logger.info("SIGHUP: reloaded %s", text)
    if restart:
        logger.warning("SIGHUP: changed but needs a restart: %s", ", ".join(restart))
    if "log_level" in applied:  # last: the lines above are logged at the old level
        logging.getLogger().setLevel(new.log_level.upper())
    return applied


def _apply_to_services(app: web.Application, config: Config) -> None:
    plane = app.get(MEDIA_PLANE)
    if plane is not None:
        plane.ice_servers = config.media.ice_servers  # what `joined` tells clients
        worker_config = getattr(plane, "config", None)
        if worker_config is not None:  # the in-process Worker: its new peer connections
            setattr(plane, "config", dataclasses.replace(  # noqa: B010 (not every plane has it)
                worker_config, ice_servers=config.media.ice_servers))
    if RECORDINGS in app:
        days = config.recording_retention_days
        app[RECORDINGS].retention_s = days * 86400 if days else None
    state = app[OPS]
    hooks: HookSettings = config.hooks
    if state.webhooks is not None:
        state.webhooks.settings = hooks
    if state.notifier is not None:
        state.notifier.settings = hooks


class OpsCollector(Collector):
    """Webhook deliveries and support notices, read at scrape time."""

    def __init__(self, webhooks: WebhookService, notifier: SupportNotifier) -> None:
        self.webhooks, self.notifier = webhooks, notifier

    def collect(self) -> Iterator[Metric]:
        deliveries = CounterMetricFamily(
            "diemcau_webhook_deliveries", "Webhook POSTs, by outcome (a failure is retried)",
            labels=["outcome"])
        deliveries.add_metric(["delivered"], self.webhooks.delivered)
        deliveries.add_metric(["failed"], self.webhooks.failed)
        yield deliveries
        yield CounterMetricFamily("diemcau_support_notices",
                                  "Scheduled meetings support staff were told of",
                                  self.notifier.sent)
