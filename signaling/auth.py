"""Credentials: password hashing, the server secret, join tokens and opaque bearer tokens.

- Passwords (accounts, rooms) are hashed with argon2id, a memory-hard KDF, on worker threads so
  the event loop (which also relays media) never stalls for the ~50 ms a hash takes.
- Join tokens are JWTs (HS256, the server secret from the data directory) carrying the grants.
  Their expiry is checked against a ``now`` passed in, so tests need no clock tricks.
- Random secrets we issue ourselves (invitation links, endpoint device secrets, REST API session
  tokens) have 256 bits of entropy; nobody can guess them, so a plain SHA-256 is enough to keep
  them useless to someone who reads the database, and lookup by hash stays an index probe.

REST API sessions are opaque random tokens stored hashed, not JWTs: an operator who disables an
account, changes its password or logs out ends its sessions at once (a JWT would live until it
expires), they survive a restart, and a join token can never be mistaken for an API credential.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Any, Literal

import argon2
import jwt
import msgspec

from signaling.messages import ProtocolError

JoinRole = Literal["host", "member", "guest", "endpoint", "recorder", "relay"]
JOIN_ROLES: tuple[JoinRole, ...] = ("host", "member", "guest", "endpoint", "recorder", "relay")
JOIN_AUDIENCE = "diemcau:join"
ISSUER = "diemcau"
SECRET_FILE = "jwt_secret"
DEFAULT_TOKEN_TTL_S = 6 * 3600
HASH_THREADS = 2
"""Concurrent argon2 hashes: each takes 64 MiB, so a burst of logins must queue, not pile up."""


class JoinRefused(ProtocolError):
    """A join the rules refuse. A ProtocolError, so the session sends it as an ``error`` with
    the code the client translates (room-full, bad-password, ...). ``details`` adds fields the
    client may show (the room's limit, the room the account is already in)."""

    def __init__(self, code: str, message: str, **details: object) -> None:
        super().__init__(code, message, "join")
        self.details = details

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), **self.details}


# -- passwords -----------------------------------------------------------------------------------


class Passwords:
    """argon2id hashing off the event loop. Construct one per app (it holds a semaphore)."""

    def __init__(self, hasher: argon2.PasswordHasher | None = None,
                 threads: int = HASH_THREADS) -> None:
        self.hasher = hasher or argon2.PasswordHasher(type=argon2.Type.ID)
        self._slots = asyncio.Semaphore(threads)
        self._dummy_hash: str | None = None

    @classmethod
    def fast(cls) -> Passwords:
        """Cheap parameters, for tests only: the production cost is the point elsewhere."""
        return cls(argon2.PasswordHasher(time_cost=1, memory_cost=256, parallelism=1,
                                         type=argon2.Type.ID))

    def hash_sync(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify_sync(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self.hash_sync, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches. With no hash (an unknown user name) this still runs a
        full verify, against a dummy hash of the same cost, and answers False: an unknown name
        must take as long as a wrong password, or the timing tells which names exist."""
        dummy = password_hash is None
        if dummy:
            password_hash = await self.dummy_hash()
        assert password_hash is not None
        async with self._slots:
            valid = await asyncio.to_thread(self.verify_sync, password_hash, password)
        return valid and not dummy

    async def dummy_hash(self) -> str:
        """A hash with this hasher's parameters that no password is known to match."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(32))
        return self._dummy_hash


def random_password(nbytes: int = 12) -> str:
    return secrets.token_urlsafe(nbytes)


# -- our own random secrets ----------------------------------------------------------------------


def new_secret_token() -> tuple[str, str]:
    """A fresh 256-bit token and its hash: give out the first, store the second."""
    token = secrets.token_urlsafe(32)
    return token, hash_secret_token(token)


def hash_secret_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def secret_matches(secret_hash: str, token: str) -> bool:
    return hmac.compare_digest(secret_hash, hash_secret_token(token))


def room_password_key(password_hash: str) -> str:
    """Names a room password (by its salted hash) in a member's token, so that changing the
    password ends the tokens minted under the old one. Reveals nothing about the password."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def load_or_create_secret(data_dir: Path) -> bytes:
    """The server's token-signing key, created on first start (0600: it signs every grant)."""
    path = data_dir / SECRET_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as file:
        file.write(secret.hex() + "\n")
        file.flush()
        os.fsync(file.fileno())
    return secret


# -- join tokens ---------------------------------------------------------------------------------


class Grants(msgspec.Struct, frozen=True):
    """What a join token allows."""

    room: str
    identity: str
    name: str
    role: JoinRole
    can_publish: bool
    can_subscribe: bool
    expires_at: float
    room_instance: str | None = None
    """The stored room's ``instance``: None only for rooms that are not stored (open rooms)."""
    issued_at: float = 0.0
    invitation: int | None = None
    """A guest's rejoin token names the invitation it came from, which must still stand."""
    room_key: str | None = None
    """A member's own token for a room with a password: which password it was minted under."""


def create_join_token(secret: bytes, room: str, identity: str, name: str, role: JoinRole,
                      can_publish: bool = True, can_subscribe: bool = True,
                      ttl_s: float = DEFAULT_TOKEN_TTL_S, now: float | None = None, *,
                      room_instance: str | None = None, invitation: int | None = None,
                      room_key: str | None = None) -> str:
    """A signed join token. ``room_instance`` binds it to one stored room (a later room of the
    same name refuses it); ``invitation`` names the invitation a guest's rejoin token came from.
    """
    if role not in JOIN_ROLES:
        raise ValueError(f"role must be one of {', '.join(JOIN_ROLES)}, not {role!r}")
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {
        "iss": ISSUER, "aud": JOIN_AUDIENCE, "sub": identity, "room": room, "name": name,
        "role": role, "can_publish": can_publish, "can_subscribe": can_subscribe,
        # iat unrounded: "tokens issued before T are void" must not catch one made just after T.
        "iat": issued, "exp": int(issued + ttl_s),
    }
    if room_instance is not None:
        claims["rid"] = room_instance
    if invitation is not None:
        claims["inv"] = invitation
    if room_key is not None:
        claims["rk"] = room_key
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_join_token(secret: bytes, token: str, now: float, room: str | None = None) -> Grants:
    """The grants of a valid token, or ``JoinRefused`` (``bad-token``, ``token-expired``).

    The signature is checked before the expiry: a forged token is ``bad-token`` however old.
    """
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], audience=JOIN_AUDIENCE, issuer=ISSUER,
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                     "require": ["exp", "sub", "room", "role", "aud", "iss"]},
        )
    except jwt.InvalidTokenError as exc:
        raise JoinRefused("bad-token", f"the join token is not valid ({exc})") from None
    try:
        grants = Grants(
            room=claims["room"], identity=claims["sub"], name=claims.get("name", claims["sub"]),
            role=claims["role"], can_publish=claims.get("can_publish", True),
            can_subscribe=claims.get("can_subscribe", True), expires_at=float(claims["exp"]),
            room_instance=claims.get("rid"), issued_at=claims.get("iat", 0.0),
            invitation=claims.get("inv"), room_key=claims.get("rk"),
        )
        grants = msgspec.convert(msgspec.to_builtins(grants), Grants)
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        raise JoinRefused("bad-token", f"the join token's grants are malformed ({exc})") from None
    if now >= grants.expires_at:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(grants.expires_at))
        raise JoinRefused("token-expired", f"the join token expired at {stamp}")
    if room is not None and grants.room != room:
        raise JoinRefused("bad-token", f"the join token is for room {grants.room!r}, "
                                       f"not {room!r}")
    return grants
