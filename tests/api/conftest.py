"""Fixtures for the control plane: a real SQLite file or PostgreSQL database (``store_url``),
cheap password hashing, a fake moderator standing in for the media side."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from signaling.api import add_api_routes
from signaling.api_models import ParticipantInfo
from signaling.auth import Passwords
from signaling.control import CONTROL, BootstrapResult, ControlPlane, control_ctx


@dataclass
class FakeModerator:
    """In-memory rooms; records what the API asked for."""

    rooms: dict[str, dict[str, ParticipantInfo]] = field(default_factory=dict)
    lobbies: dict[str, dict[str, ParticipantInfo]] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def _get(self, where: dict[str, dict[str, ParticipantInfo]], room: str,
             pid: str) -> ParticipantInfo:
        return where.get(room, {})[pid]  # KeyError: unknown participant

    def participants(self, room: str) -> list[ParticipantInfo]:
        return list(self.rooms.get(room, {}).values())

    def waiting(self, room: str) -> list[ParticipantInfo]:
        return list(self.lobbies.get(room, {}).values())

    async def mute(self, room: str, participant_id: str,
                   kind: Literal["audio", "video"]) -> None:
        self._get(self.rooms, room, participant_id)
        self.calls.append(("mute", room, participant_id, kind))

    async def remove(self, room: str, participant_id: str) -> None:
        del self.rooms[room][self._get(self.rooms, room, participant_id).id]
        self.calls.append(("remove", room, participant_id))

    async def set_locked(self, room: str, locked: bool) -> None:
        self.calls.append(("locked", room, locked))

    async def admit(self, room: str, participant_id: str) -> None:
        guest = self.lobbies[room].pop(self._get(self.lobbies, room, participant_id).id)
        self.rooms.setdefault(room, {})[guest.id] = guest
        self.calls.append(("admit", room, participant_id))

    async def deny(self, room: str, participant_id: str) -> None:
        self.lobbies[room].pop(self._get(self.lobbies, room, participant_id).id)
        self.calls.append(("deny", room, participant_id))

    async def end(self, room: str) -> None:
        self.rooms.pop(room, None)
        self.calls.append(("end", room))

    async def pin(self, room: str, participant_id: str | None) -> None:
        if participant_id is not None:
            self._get(self.rooms, room, participant_id)
        self.calls.append(("pin", room, participant_id))


@dataclass
class Api:
    client: TestClient
    control: ControlPlane
    moderator: FakeModerator
    bootstrap: BootstrapResult

    async def login(self, username: str, password: str) -> dict[str, str]:
        response = await self.client.post("/api/login", json={"username": username,
                                                              "password": password})
        assert response.status == 200, await response.text()
        return {"Authorization": f"Bearer {(await response.json())['token']}"}

    async def call(self, method: str, path: str, headers: dict[str, str] | None = None,
                   json: object = None, expect: int = 200) -> Any:
        response = await self.client.request(method, path, headers=headers, json=json)
        body = await response.json() if response.content_type == "application/json" else None
        assert response.status == expect, (response.status, body)
        return body


AiohttpClient = Callable[[web.Application], Awaitable[TestClient]]


@pytest.fixture
async def api(tmp_path: Path, aiohttp_client: AiohttpClient, store_url: str | None) -> Api:
    """The API over each store backend: the data directory's SQLite file and PostgreSQL."""
    moderator = FakeModerator()
    results: list[BootstrapResult] = []
    app = web.Application()
    app.cleanup_ctx.append(control_ctx(tmp_path, passwords=Passwords.fast(), moderator=moderator,
                                       on_bootstrap=results.append, store_url=store_url))
    add_api_routes(app)
    client = await aiohttp_client(app)
    return Api(client, app[CONTROL], moderator, results[0])
