"""Headers of the real application in process (the process-level checks are in
tests/integration/test_abuse.py): HSTS only where the listener speaks TLS."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from signaling.app import create_app
from tests.conftest import make_config


async def _headers(tmp_path: Path, path: str, **config: object) -> dict[str, str]:
    client = TestClient(TestServer(create_app(make_config(tmp_path, **config))))
    await client.start_server()
    try:
        response = await client.get(path)
        assert response.status == 200
        return dict(response.headers)
    finally:
        await client.close()


async def test_hsts_only_under_tls(tmp_path: Path) -> None:
    secure = await _headers(tmp_path / "a", "/", tls=True)
    assert secure["Strict-Transport-Security"].startswith("max-age=")
    assert "Content-Security-Policy" in secure
    plain = await _headers(tmp_path / "b", "/")
    assert "Strict-Transport-Security" not in plain


async def test_api_responses_are_not_sniffed_or_framed(tmp_path: Path) -> None:
    headers = await _headers(tmp_path, "/healthz")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert "Content-Security-Policy" not in headers  # JSON, not a page
