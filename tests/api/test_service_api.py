"""/readyz and the support routes' access rules (issue 13)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient

from signaling.api import add_api_routes
from signaling.app import create_app
from signaling.auth import Passwords
from signaling.config import HookSettings
from signaling.control import CONTROL, BootstrapResult, control_ctx
from signaling.ops import OPS
from signaling.store.sqlite_ops import SqliteOps
from signaling.support import SupportNotifier, add_support_routes, support_routes
from tests.api.conftest import AiohttpClient, Api, FakeModerator
from tests.conftest import make_config


async def test_readyz_follows_media_and_draining(tmp_path: Path,
                                                 aiohttp_client: AiohttpClient) -> None:
    app = create_app(make_config(tmp_path))
    client: TestClient = await aiohttp_client(app)
    response = await client.get("/readyz")
    assert response.status == 200 and (await response.json()) == {"status": "ready"}
    app[OPS].draining = True  # what shutdown sets first
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json()) == {"status": "not-ready", "reasons": ["draining"]}
    response = await client.get("/healthz")
    assert response.status == 200  # liveness is not readiness


async def test_support_routes_are_for_support_and_operators(
        tmp_path: Path, aiohttp_client: AiohttpClient) -> None:
    results: list[BootstrapResult] = []
    app = web.Application()
    app.cleanup_ctx.append(control_ctx(tmp_path, passwords=Passwords.fast(),
                                       moderator=FakeModerator(), on_bootstrap=results.append))
    add_api_routes(app)

    def notifier() -> SupportNotifier:
        store = app[CONTROL].store
        assert isinstance(store, SqliteOps)
        return SupportNotifier(store, HookSettings())

    def no_plane() -> object:
        raise AssertionError("no live room: the media plane is not asked")

    add_support_routes(app, support_routes(no_plane, lambda: (), notifier))  # type: ignore[arg-type]
    client = await aiohttp_client(app)
    api = Api(client, app[CONTROL], FakeModerator(), results[0])
    store = api.control.store
    org = await store.create_organisation("Quang Nam")
    for username, role in (("ho", "host"), ("me", "member")):
        await store.create_account(username, username, role, org.id,
                                   await api.control.passwords.hash("password-123"))
    operator = await api.login(api.bootstrap.username, api.bootstrap.password)
    created = await api.call("POST", "/api/accounts", operator, {
        "username": "sp", "password": "password-123", "role": "support", "org_id": org.id},
        expect=201)
    assert created["role"] == "support" and created["org_id"] is None  # serves every org
    host = await api.login("ho", "password-123")
    await api.call("POST", "/api/accounts", host, {"username": "sp3", "password": "x" * 12,
                                                   "role": "support"}, expect=403)
    for username in ("ho", "me"):
        headers = await api.login(username, "password-123")
        for path in ("/api/support/rooms", "/api/support/notices"):
            body = await api.call("GET", path, headers, expect=403)
            assert body["error"] == "forbidden"
    await api.call("GET", "/api/support/rooms", expect=401)
    support = await api.login("sp", "password-123")
    for headers in (support, operator):
        assert await api.call("GET", "/api/support/rooms", headers) == []
        notices = await api.call("GET", "/api/support/notices", headers)
        assert notices == {"lead_s": 3600.0, "notices": []}


async def test_openapi_lists_the_support_routes(tmp_path: Path,
                                                aiohttp_client: AiohttpClient) -> None:
    client: TestClient = await aiohttp_client(create_app(make_config(tmp_path)))
    response = await client.get("/api/openapi.json")
    doc = await response.json()
    rooms = doc["paths"]["/api/support/rooms"]["get"]
    assert rooms["description"] == "Support staff and operators."
    assert set(rooms["responses"]) >= {"200", "401", "403"}
    schemas = doc["components"]["schemas"]
    assert "audio_only_reason" in schemas["ParticipantDiagnosticsOut"]["properties"]
    assert "NoticesOut" in schemas


async def test_reload_applies_what_it_can_and_a_bad_file_changes_nothing(
        tmp_path: Path, aiohttp_client: AiohttpClient) -> None:
    from signaling.app import CONFIG, MEDIA_PLANE
    from signaling.ops import RELOAD, Reloader, reload
    from signaling.recording import RECORDINGS
    from signaling.settings import ConfigError, Settings

    app = create_app(make_config(tmp_path))
    current = Settings()
    outcome: list[Settings | ConfigError] = []

    def load() -> Settings:
        result = outcome.pop(0)
        if isinstance(result, ConfigError):
            raise result
        return result

    app[RELOAD] = Reloader(current, load)
    await aiohttp_client(app)
    config = app[CONFIG]
    outcome.append(ConfigError("invalid value for 'port' (from file x): ..."))
    assert reload(app) == []
    assert config.join_timeout_s == make_config(tmp_path).join_timeout_s
    outcome.append(Settings(join_timeout=3.0, ice_servers=["turn:turn.example.org"],
                            recording_retention_days=2.0, port=9999,
                            webhook_urls=["http://127.0.0.1:9/h"],
                            webhook_secret="0123456789abcdef0123"))
    applied = reload(app)
    assert set(applied) == {"join_timeout", "ice_servers", "recording_retention_days",
                            "webhook_urls", "webhook_secret"}  # port needs a restart
    assert config.join_timeout_s == 3.0 and config.port != 9999
    assert app[MEDIA_PLANE].ice_servers == ("turn:turn.example.org",)
    assert app[RECORDINGS].retention_s == 2 * 86400
    webhooks = app[OPS].webhooks
    assert webhooks is not None and webhooks.settings.webhook_urls == ("http://127.0.0.1:9/h",)
    assert app[RELOAD].current.join_timeout == 3.0
