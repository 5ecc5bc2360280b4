"""HTTP hygiene: security headers, the WebSocket Origin check, an access log without secrets."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

SECRET_QUERY_KEYS = frozenset({"token", "invite", "password", "room_password",
                               "endpoint_secret", "rejoin_token", "secret"})
"""Query parameters whose values never reach the access log (join links carry them)."""

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",  # no inline script: web/*.html load modules from /static only
    "style-src 'self'",
    "img-src 'self' data:",
    "media-src 'self' blob:",
    "connect-src 'self'",  # CSP 3: 'self' covers ws(s) to the same host
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
HSTS = "max-age=31536000"


def content_security_policy(connect_to: Iterable[str] = ()) -> str:
    """The pages' CSP; ``connect_to``: other base URLs (a cluster's nodes) the page may open its
    WebSocket at, as ws(s) origins."""
    extra = []
    for address in connect_to:
        parts = urlsplit(address)
        if parts.scheme in ("http", "https") and parts.netloc:
            extra.append(f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}")
    if not extra:
        return CONTENT_SECURITY_POLICY
    return CONTENT_SECURITY_POLICY.replace("connect-src 'self'",
                                           "connect-src 'self' " + " ".join(sorted(set(extra))))


def add_security_headers(app: web.Application, tls: bool,
                         connect_to: Callable[[], Iterable[str]] = tuple) -> None:
    """Every response: no MIME sniffing, no framing, no referrer (join links carry secrets);
    pages also get the CSP; HSTS when the listener speaks TLS. ``connect_to`` gives the other
    base URLs pages may open a WebSocket at (a cluster's nodes)."""

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "no-referrer")
        if response.content_type == "text/html" or \
                headers.get("Content-Type", "").startswith("text/html"):
            headers.setdefault("Content-Security-Policy", content_security_policy(connect_to()))
        if tls:
            headers.setdefault("Strict-Transport-Security", HSTS)

    app.on_response_prepare.append(on_prepare)


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str]) -> bool:
    """Cross-site WebSocket hijacking guard: a browser always sends Origin, so a page of another
    site is refused; a client without Origin (aiortc peers, scripts) is not a browser page and
    passes. The server's own origin is the one the browser used to reach it (its Host)."""
    if origin is None:
        return True
    origin = origin.rstrip("/").lower()
    if origin in {a.rstrip("/").lower() for a in allowed}:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not host:
        return False
    # Either scheme: behind a TLS-terminating proxy we see http while the page is https.
    return parts.netloc == host.lower()


def redact_query(path_qs: str) -> str:
    """``/?room=a&invite=SECRET`` -> ``/?room=a&invite=REDACTED``."""
    path, sep, query = path_qs.partition("?")
    if not sep:
        return path_qs
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(key.lower() in SECRET_QUERY_KEYS for key, _ in pairs):
        return path_qs
    return path + "?" + urlencode(
        [(key, "REDACTED" if key.lower() in SECRET_QUERY_KEYS else value) for key, value in pairs],
        safe="/:")


class RedactingAccessLogger(AbstractAccessLogger):
    """aiohttp's common log format, with secret query values replaced."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %s %.6f "%s" "%s"',
            request.remote or "-", request.method, redact_query(request.path_qs),
            request.version.major, request.version.minor, response.status,
            response.body_length, time, redact_query(request.headers.get("Referer", "-")),
            request.headers.get("User-Agent", "-"),
        )
