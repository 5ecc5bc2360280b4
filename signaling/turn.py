"""TURN servers handed to clients in the join reply (strict networks: UDP, TCP and TLS relays).

Two kinds of credentials, as coturn takes them:

- static: one user name and password for everyone (coturn ``user=name:password``);
- time-limited "TURN REST" credentials (coturn ``use-auth-secret`` + ``static-auth-secret``):
  the user name is ``"<expiry>:<user>"`` (expiry in POSIX seconds) and the password is
  base64(HMAC-SHA1(secret, user name)). coturn recomputes the HMAC from its own copy of the
  secret and refuses the user name once its expiry has passed, so nothing is shared per call and
  a leaked credential dies by itself.

Pure: time is passed in. The ``<user>`` part is the participant id (random), not a person's
name, so the TURN server's logs hold nothing personal.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path

MIN_TTL_S = 60.0
MAX_TTL_S = 7 * 86400.0
DEFAULT_TTL_S = 86400.0
MAX_URLS = 16

# stun:host[:port], turn:host[:port][?transport=udp|tcp], turns:host[:port][?transport=tcp]
# (RFC 7064/7065). The host is a name, IPv4 or [IPv6]; nothing else may follow.
_URL = re.compile(
    r"^(?P<scheme>stun|stuns|turn|turns):"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?$"
)


class TurnConfigError(ValueError):
    """A TURN setting the server refuses to start with (the message says which and why)."""


def check_url(url: str) -> str:
    """The URL itself if it is a well-formed STUN/TURN URL; else TurnConfigError naming it."""
    match = _URL.match(url)
    if match is None:
        raise TurnConfigError(
            f"bad TURN/STUN URL {url!r}: expected turn:HOST[:PORT][?transport=udp|tcp], "
            "turns:HOST[:PORT][?transport=tcp] or stun:HOST[:PORT]")
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise TurnConfigError(f"bad TURN/STUN URL {url!r}: port {port} is out of range")
    if match.group("scheme") in ("turns", "stuns") and match.group("transport") == "udp":
        raise TurnConfigError(f"bad TURN/STUN URL {url!r}: TLS runs over TCP, not UDP")
    return url


def rest_credentials(secret: str, user: str, now: float, ttl_s: float) -> tuple[str, str]:
    """(user name, password) for coturn's ``use-auth-secret``, valid until ``now + ttl_s``."""
    if ":" in user:
        raise ValueError("the user part of a TURN REST user name may not contain ':'")
    username = f"{int(now + ttl_s)}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class TurnConfig:
    """The TURN servers of this deployment and how clients authenticate to them."""

    urls: tuple[str, ...]
    username: str | None = None
    password: str | None = None
    secret: str | None = None
    ttl_s: float = DEFAULT_TTL_S

    def __post_init__(self) -> None:
        if not self.urls:
            raise TurnConfigError("TURN credentials given but no --turn URL")
        if len(self.urls) > MAX_URLS:
            raise TurnConfigError(f"at most {MAX_URLS} TURN URLs")
        for url in self.urls:
            check_url(url)
        static = self.username is not None or self.password is not None
        if self.secret is not None and static:
            raise TurnConfigError("give either --turn-secret (time-limited credentials) or "
                                  "--turn-username/--turn-password, not both")
        if static and not (self.username and self.password):
            raise TurnConfigError("--turn-username and --turn-password go together")
        if self.secret is not None and len(self.secret) < 16:
            raise TurnConfigError("--turn-secret is shorter than 16 characters; use a long "
                                  "random one (the same as coturn's static-auth-secret)")
        if not MIN_TTL_S <= self.ttl_s <= MAX_TTL_S:
            raise TurnConfigError(f"--turn-ttl must be between {MIN_TTL_S:g} and "
                                  f"{MAX_TTL_S:g} seconds")
        needs_auth = any(url.startswith("turn") for url in self.urls)
        if needs_auth and self.secret is None and not static:
            raise TurnConfigError("TURN servers need credentials: --turn-secret, or "
                                  "--turn-username and --turn-password")

    def ice_servers(self, user: str, now: float) -> list[dict[str, object]]:
        """RTCIceServer dictionaries for one participant (the join reply's ``ice_servers``)."""
        stun = [url for url in self.urls if url.startswith("stun")]
        turn = [url for url in self.urls if url.startswith("turn")]
        out: list[dict[str, object]] = []
        if stun:
            out.append({"urls": stun})
        if turn:
            if self.secret is not None:
                username, credential = rest_credentials(self.secret, user, now, self.ttl_s)
            else:
                username, credential = self.username or "", self.password or ""
            out.append({"urls": turn, "username": username, "credential": credential})
        return out


def read_secret_file(path: Path) -> str:
    """A secret from a file (kept out of the process list); surrounding whitespace dropped."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeError) as exc:
        raise TurnConfigError(f"cannot read the TURN secret from {path}: {exc}") from None
    if not text:
        raise TurnConfigError(f"the TURN secret file {path} is empty")
    return text


def add_turn_arguments(serve: argparse.ArgumentParser) -> None:
    """``diemcau serve`` options for TURN (README: running coturn beside diemcau). No defaults
    here: signaling/settings.py merges the flags given over the file and the environment."""
    serve.add_argument("--turn", action="append", dest="turn_urls", metavar="URL",
                       help="TURN (or STUN) server handed to browsers with credentials, e.g. "
                            "turn:turn.example.org:3478?transport=udp, "
                            "turns:turn.example.org:5349?transport=tcp; repeatable")
    serve.add_argument("--turn-secret-file", metavar="PATH",
                       help="file holding coturn's static-auth-secret: each participant gets "
                            "time-limited credentials (use-auth-secret)")
    serve.add_argument("--turn-username", help="static TURN user name")
    serve.add_argument("--turn-password-file", metavar="PATH",
                       help="file holding the static TURN password")
    serve.add_argument("--turn-ttl", metavar="S",
                       help=f"life of time-limited TURN credentials (default {DEFAULT_TTL_S:g})")


def turn_config_from_args(args: argparse.Namespace) -> TurnConfig | None:
    """The TurnConfig the options describe (None without --turn); TurnConfigError if bad."""
    return turn_config(list(getattr(args, "turn_urls", None) or []),
                       getattr(args, "turn_secret_file", None),
                       getattr(args, "turn_username", None),
                       getattr(args, "turn_password_file", None),
                       float(getattr(args, "turn_ttl", None) or DEFAULT_TTL_S))


def turn_config(urls: list[str], secret_file: str | Path | None, username: str | None,
                password_file: str | Path | None, ttl_s: float) -> TurnConfig | None:
    """The TurnConfig of these settings (None without URLs); TurnConfigError if bad."""
    secret = read_secret_file(Path(secret_file)) if secret_file else None
    password = read_secret_file(Path(password_file)) if password_file else None
    if not urls:
        if secret or password or username:
            raise TurnConfigError("TURN credentials given but no --turn URL")
        return None
    return TurnConfig(urls=tuple(urls), username=username, password=password, secret=secret,
                      ttl_s=ttl_s)
