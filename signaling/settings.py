"""Where ``diemcau serve`` gets its settings: a TOML file (``--config``), ``DIEMCAU_*``
environment variables and command-line flags, in that order of precedence (flags win), over the
defaults here. Everything is validated at start (msgspec), and every error names the key and
the source it came from, so an operator can fix the right line.

``Settings`` is the one schema: the TOML keys, the environment variable names
(``DIEMCAU_`` + the key in capitals) and the flags (``--`` + the key with dashes) all derive from
its field names. ``to_config`` turns it into the server's ``Config``.
"""

from __future__ import annotations

import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from sfu.policy.last_n import DEFAULT_LAST_N, MAX_LAST_N
from sfu.worker import MediaConfig
from signaling.config import Config, HookSettings
from signaling.limits import JOIN_TIMEOUT_S, MAX_UNJOINED_PER_ADDRESS
from signaling.store.locate import check_store_url
from signaling.turn import DEFAULT_TTL_S, TurnConfig, TurnConfigError, turn_config

ENV_PREFIX = "DIEMCAU_"
CONFIG_ENV = "DIEMCAU_CONFIG"
"""A config file named by the environment (``--config`` wins)."""

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Port = 8080
    data_dir: str = "./data"
    ice_addresses: list[str] = msgspec.field(default_factory=list)
    rtc_port_range: str | None = None
    ice_servers: list[str] = msgspec.field(default_factory=list)
    audio_only_below: Annotated[int, msgspec.Meta(ge=0)] = 2_000_000
    audio_only_recover_factor: Annotated[float, msgspec.Meta(ge=1)] = 1.25
    audio_only_recover_seconds: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    tls: Literal["self-signed"] | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    open_rooms: bool = False
    room_capacity: Annotated[int, msgspec.Meta(ge=1)] | None = None
    allowed_origins: list[str] = msgspec.field(default_factory=list)
    metrics_host: str | None = None
    metrics_port: Port | None = None
    join_timeout: Positive = JOIN_TIMEOUT_S
    max_unjoined_per_address: Annotated[int, msgspec.Meta(ge=1)] = MAX_UNJOINED_PER_ADDRESS
    record_all: bool = False
    recording_retention_days: Positive | None = None
    log_level: LogLevel = "info"
    log_format: Literal["text", "json"] = "text"
    webhook_urls: list[str] = msgspec.field(default_factory=list)
    webhook_secret: str | None = None
    support_lead_minutes: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    store: str | None = None
    """A PostgreSQL URL shared by every node (issue 14); None: the data directory's SQLite."""
    redis: str | None = None
    node_address: str | None = None
    node_id: str | None = None
    audit_retention_days: Positive = 365.0
    last_n: Annotated[int, msgspec.Meta(ge=0, le=MAX_LAST_N)] = DEFAULT_LAST_N
    turn_urls: list[str] = msgspec.field(default_factory=list)
    turn_secret_file: str | None = None
    turn_username: str | None = None
    turn_password_file: str | None = None
    turn_ttl: Positive = DEFAULT_TTL_S
    reconnect_grace: Annotated[float, msgspec.Meta(ge=0)] = 15.0
    relay_sources: list[str] = msgspec.field(default_factory=list)
    workers: Annotated[int, msgspec.Meta(ge=0)] | None = None
    """SFU worker processes; None: one per core."""
    room_last_n: list[str] = msgspec.field(default_factory=list)
    """``ROOM=N`` entries: ``last_n`` for one room."""


KEYS: tuple[str, ...] = Settings.__struct_fields__
LIST_KEYS = frozenset(key for key in KEYS if isinstance(getattr(Settings(), key), list))
SECRET_KEYS = frozenset({"webhook_secret", "store"})  # a store URL may hold a password
RELOADABLE = frozenset({"log_level", "join_timeout", "max_unjoined_per_address", "ice_servers",
                        "recording_retention_days", "webhook_urls", "webhook_secret",
                        "support_lead_minutes"})
"""What SIGHUP re-reads (file and environment; flags stay as given). The rest needs a restart."""


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the key and where it came from."""


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


FLAGS = {"ice_addresses": "--ice-address", "ice_servers": "--ice-server",
         "allowed_origins": "--allowed-origin", "webhook_urls": "--webhook-url"}
"""Repeatable flags are named in the singular (one value each)."""


def flag_name(key: str) -> str:
    return FLAGS.get(key, "--" + key.replace("_", "-"))


@dataclass(frozen=True)
class Loaded:
    settings: Settings
    sources: dict[str, str]
    """key -> "default", "file PATH", "env NAME" or "flag --NAME"."""
    file: Path | None


def read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    # A [serve] table is accepted as well as top-level keys (room for other sections later).
    serve = data.pop("serve", {})
    if not isinstance(serve, dict):
        raise ConfigError(f"config file {path}: [serve] must be a table")
    data.update(serve)
    for key in data:
        if key not in KEYS:
            raise ConfigError(f"config file {path}: unknown key {key!r}"
                              f"{_suggest(key)}; known keys: {', '.join(KEYS)}")
    return data


def read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """``DIEMCAU_<KEY>`` for each known key; lists are comma-separated. Other ``DIEMCAU_``
    variables (tests use some) are not ours to judge."""
    out: dict[str, Any] = {}
    for key in KEYS:
        value = environ.get(env_name(key))
        if value is None:
            continue
        if key in LIST_KEYS:
            out[key] = [part.strip() for part in value.split(",") if part.strip()]
        else:
            out[key] = value
    return out


def load(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None,
         config_file: Path | None = None) -> Loaded:
    """Merge defaults < file < environment < flags, validate, and say where each value came
    from. ``flags`` holds only the flags given (argparse with ``SUPPRESS`` defaults)."""
    environ = os.environ if environ is None else environ
    if config_file is None and environ.get(CONFIG_ENV):
        config_file = Path(environ[CONFIG_ENV])
    merged: dict[str, Any] = {}
    sources = {key: "default" for key in KEYS}
    layers: list[tuple[dict[str, Any], Any]] = []
    if config_file is not None:
        layers.append((read_file(config_file), lambda key: f"file {config_file}"))
    layers.append((read_env(environ), lambda key: f"env {env_name(key)}"))
    given = {key: value for key, value in flags.items() if key in KEYS}
    layers.append((given, lambda key: f"flag {flag_name(key)}"))
    for values, source in layers:
        for key, value in values.items():
            merged[key] = value
            sources[key] = source(key)
    if isinstance(merged.get("log_level"), str):
        merged["log_level"] = merged["log_level"].lower()
    try:
        # strict=False: environment variables are text ("8080", "true") and are coerced.
        settings = msgspec.convert(merged, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, sources, merged)) from None
    _check(settings, sources)
    return Loaded(settings, sources, config_file)


def _explain(exc: msgspec.ValidationError, sources: Mapping[str, str],
             values: Mapping[str, Any]) -> str:
    text = str(exc)
    key = None
    if " - at `$." in text:
        text, _, path = text.partition(" - at `$.")
        key = path.rstrip("`").split("[", 1)[0].split(".", 1)[0]
    if key is None:
        return f"invalid configuration: {text}"
    if "Invalid enum value" in text:  # a Literal: say what is allowed
        choices = typing.get_args(typing.get_type_hints(Settings)[key])
        allowed = [str(c) for arg in choices for c in (typing.get_args(arg) or (arg,))
                   if c is not type(None)]
        text = f"{text}; one of: {', '.join(allowed)}"
    shown = "" if key in SECRET_KEYS or key not in values else f" {values[key]!r}"
    return f"invalid value{shown} for {key!r} (from {sources.get(key, 'default')}): {text}"


def _check(settings: Settings, sources: Mapping[str, str]) -> None:
    """Rules msgspec's types cannot say."""

    def fail(key: str, why: str) -> None:
        raise ConfigError(f"invalid value for {key!r} (from {sources[key]}): {why}")

    if settings.rtc_port_range is not None:
        try:
            parse_port_range(settings.rtc_port_range)
        except ValueError as exc:
            fail("rtc_port_range", str(exc))
    try:
        _turn(settings)
    except TurnConfigError as exc:
        fail("turn_urls", str(exc))
    try:
        parse_room_last_n(settings.room_last_n)
    except ConfigError as exc:
        fail("room_last_n", str(exc))
    if (settings.tls_cert is None) != (settings.tls_key is None):
        fail("tls_cert" if settings.tls_cert is None else "tls_key",
             "give both tls_cert and tls_key (or tls = \"self-signed\")")
    for origin in settings.relay_sources:
        if not source_origin(origin):
            fail("relay_sources", f"{origin!r} is not an http(s):// or ws(s):// origin")
    for url in settings.webhook_urls:
        if not url.startswith(("http://", "https://")):
            fail("webhook_urls", f"{url!r} is not an http:// or https:// URL")
    if settings.store is not None:
        try:
            check_store_url(settings.store)
        except ValueError as exc:
            fail("store", str(exc))
    if settings.webhook_urls and not settings.webhook_secret:
        fail("webhook_urls", "webhooks are signed: set webhook_secret too "
                             f"(e.g. in the environment as {env_name('webhook_secret')})")
    if settings.webhook_secret is not None and len(settings.webhook_secret) < 16:
        fail("webhook_secret", "too short: at least 16 characters")


def parse_port_range(text: str) -> tuple[int, int]:
    try:
        low, high = (int(part) for part in text.split("-", 1))
    except ValueError:
        raise ValueError(f"expected LOW-HIGH, got {text!r}") from None
    if not 1024 <= low <= high <= 65535:
        raise ValueError(f"port range {text} must lie within 1024-65535, low <= high")
    return low, high


def _suggest(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, KEYS, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_room_last_n(entries: list[str]) -> tuple[tuple[str, int], ...]:
    """``["Hall=16", ...]`` -> ``(("Hall", 16), ...)``; room names may contain ``=``."""
    out = []
    for entry in entries:
        room, sep, value = entry.rpartition("=")
        try:
            n = int(value)
        except ValueError:
            n = -1
        if not sep or not room or not 0 <= n <= MAX_LAST_N:
            raise ConfigError(f"{entry!r}: expected ROOM=N with N from 0 (all) to {MAX_LAST_N}")
        out.append((room, n))
    return tuple(out)


def source_origin(url: str) -> str:
    """``wss://Tinh.example.vn/`` -> ``https://tinh.example.vn`` ("" if it is no such URL)."""
    parts = urlsplit(url.strip())
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or not parts.netloc:
        return ""
    return f"{scheme}://{parts.netloc.lower()}"


def _turn(settings: Settings) -> TurnConfig | None:
    return turn_config(settings.turn_urls, settings.turn_secret_file, settings.turn_username,
                       settings.turn_password_file, settings.turn_ttl)


def to_config(settings: Settings) -> Config:
    port_range = parse_port_range(settings.rtc_port_range) if settings.rtc_port_range else None
    tls = bool(settings.tls or settings.tls_cert)
    return Config(
        host=settings.host, port=settings.port, data_dir=Path(settings.data_dir),
        open_rooms=settings.open_rooms, open_room_capacity=settings.room_capacity,
        allowed_origins=tuple(settings.allowed_origins),
        metrics_host=settings.metrics_host if settings.metrics_port else None,
        metrics_port=settings.metrics_port, tls=tls, join_timeout_s=settings.join_timeout,
        max_unjoined_per_address=settings.max_unjoined_per_address,
        record_all=settings.record_all,
        recording_retention_days=settings.recording_retention_days,
        store_url=settings.store, redis_url=settings.redis,
        node_address=settings.node_address, node_id=settings.node_id,
        audit_retention_days=settings.audit_retention_days,
        workers=os.cpu_count() or 1 if settings.workers is None else settings.workers,
        turn=_turn(settings), reconnect_grace_s=settings.reconnect_grace,
        relay_sources=tuple(source_origin(o) for o in settings.relay_sources),
        media=MediaConfig(
            ice_addresses=tuple(settings.ice_addresses) or None, port_range=port_range,
            ice_servers=tuple(settings.ice_servers),
            audio_only_below_bps=settings.audio_only_below,
            audio_only_recover_factor=settings.audio_only_recover_factor,
            audio_only_recover_s=settings.audio_only_recover_seconds,
            last_n=settings.last_n, room_last_n=parse_room_last_n(settings.room_last_n),
        ),
        hooks=HookSettings(webhook_urls=tuple(settings.webhook_urls),
                           webhook_secret=settings.webhook_secret or "",
                           support_lead_s=settings.support_lead_minutes * 60),
    )


def describe(loaded: Loaded) -> str:
    """``diemcau config check``: every key, its effective value and its source."""
    values = msgspec.to_builtins(loaded.settings)
    width = max(len(key) for key in KEYS)
    lines = [f"# config file: {loaded.file or '(none)'}"]
    for key in KEYS:
        value = values[key]
        shown = "(set)" if key in SECRET_KEYS and value else _toml(value)
        reload = "" if key in RELOADABLE else "  [restart]"
        lines.append(f"{key.ljust(width)} = {shown}   # {loaded.sources[key]}{reload}")
    return "\n".join(lines)


def _toml(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return msgspec.json.encode(value).decode()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return str(value)
