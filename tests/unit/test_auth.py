"""Join tokens, password hashing, the server secret and the rate limiter."""

from __future__ import annotations

import base64
import json
import stat
import time
from pathlib import Path

import jwt
import pytest

from signaling.auth import (
    JOIN_AUDIENCE,
    Grants,
    JoinRefused,
    Passwords,
    create_join_token,
    hash_secret_token,
    load_or_create_secret,
    new_secret_token,
    secret_matches,
    verify_join_token,
)
from signaling.ratelimit import PASSWORD_ACCOUNT, PASSWORD_ADDRESS, Rate, RateLimiter

SECRET = b"k" * 32
NOW = 1_750_000_000.0


def _token(**overrides: object) -> str:
    args: dict[str, object] = dict(room="Hop", identity="account:7", name="Chị Lan",
                                   role="member", can_publish=True, can_subscribe=True,
                                   ttl_s=600, now=NOW)
    args.update(overrides)
    return create_join_token(SECRET, **args)  # type: ignore[arg-type]


def _refused(token: str, now: float = NOW, room: str | None = "Hop",
             secret: bytes = SECRET) -> JoinRefused:
    with pytest.raises(JoinRefused) as caught:
        verify_join_token(secret, token, now, room=room)
    return caught.value


def test_valid_token_carries_its_grants() -> None:
    grants = verify_join_token(SECRET, _token(can_publish=False), NOW + 599, room="Hop")
    assert grants == Grants(room="Hop", identity="account:7", name="Chị Lan", role="member",
                            can_publish=False, can_subscribe=True, expires_at=NOW + 600,
                            issued_at=NOW)
    bound = verify_join_token(SECRET, _token(room_instance="ab12", invitation=3, now=NOW + 0.25),
                              NOW + 1, room="Hop")
    # The instance and invitation are signed in; the issue time keeps its fraction (voiding
    # "before T" must not catch a token made just after T).
    assert (bound.room_instance, bound.invitation, bound.issued_at) == ("ab12", 3, NOW + 0.25)


def test_expired_token() -> None:
    refused = _refused(_token(), now=NOW + 600)
    assert refused.code == "token-expired" and "expired at" in refused.message
    assert refused.to_json()["code"] == "token-expired"


def test_tampered_token() -> None:
    header, payload, signature = _token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "host"  # promote ourselves, keep the old signature
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert _refused(f"{header}.{forged}.{signature}").code == "bad-token"
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    assert _refused(f"{header}.{payload}.{flipped}").code == "bad-token"
    # Signed with another key; expired too, but a forgery says bad-token, not token-expired.
    assert _refused(_token(), now=NOW + 10**6, secret=b"x" * 32).code == "bad-token"
    assert _refused("not.a.token").code == "bad-token"


def test_alg_none_is_refused() -> None:
    unsigned = jwt.encode({"sub": "x", "room": "Hop", "role": "host", "aud": JOIN_AUDIENCE,
                           "iss": "diemcau", "exp": NOW + 600}, None, algorithm="none")
    assert _refused(unsigned).code == "bad-token"


def test_wrong_room_is_case_sensitive() -> None:
    refused = _refused(_token(), room="hop")
    assert refused.code == "bad-token" and "'Hop'" in refused.message
    assert _refused(_token(), room="Other").code == "bad-token"


def test_bad_grants_are_refused() -> None:
    bad = jwt.encode({"sub": "x", "room": "Hop", "role": "king", "aud": JOIN_AUDIENCE,
                      "iss": "diemcau", "exp": NOW + 600}, SECRET, algorithm="HS256")
    assert _refused(bad).code == "bad-token"
    with pytest.raises(ValueError, match="role"):
        _token(role="king")


async def test_password_hashing_is_argon2id_and_case_sensitive() -> None:
    passwords = Passwords.fast()
    hashed = await passwords.hash("Mật-khẩu 1")
    assert hashed.startswith("$argon2id$")
    assert await passwords.verify(hashed, "Mật-khẩu 1")
    assert not await passwords.verify(hashed, "mật-khẩu 1")
    assert not await passwords.verify("not a hash", "x")
    assert not await passwords.verify(None, "x")
    assert await passwords.hash("same") != await passwords.hash("same")  # salted
    assert Passwords().hasher.memory_cost >= 64 * 1024  # production cost: memory-hard


def test_secret_tokens_are_stored_hashed() -> None:
    token, token_hash = new_secret_token()
    assert len(token) >= 43 and token not in token_hash
    assert hash_secret_token(token) == token_hash
    assert secret_matches(token_hash, token) and not secret_matches(token_hash, token + "x")


def test_server_secret_created_once_with_0600(tmp_path: Path) -> None:
    secret = load_or_create_secret(tmp_path)
    assert len(secret) == 32
    assert stat.S_IMODE((tmp_path / "jwt_secret").stat().st_mode) == 0o600
    assert load_or_create_secret(tmp_path) == secret


def test_rate_limiter_token_bucket() -> None:
    limiter = RateLimiter({PASSWORD_ACCOUNT: Rate(5, 60.0)})
    for i in range(5):
        assert limiter.take(PASSWORD_ACCOUNT, "lan", 100.0 + 10 * i) == 0
    wait = limiter.take(PASSWORD_ACCOUNT, "lan", 150.0)  # the 6th within a minute
    assert wait == pytest.approx(10.0)
    assert limiter.take(PASSWORD_ACCOUNT, "binh", 150.0) == 0  # other keys are unaffected
    assert limiter.take(PASSWORD_ACCOUNT, "lan", 160.0) == 0  # one token refilled
    assert limiter.retry_after(PASSWORD_ACCOUNT, "lan", 160.0) == pytest.approx(60.0)


def test_rate_limiter_refund_and_all_or_nothing() -> None:
    limiter = RateLimiter({PASSWORD_ACCOUNT: Rate(2, 60.0), PASSWORD_ADDRESS: Rate(3, 1.0)})
    keys = [(PASSWORD_ACCOUNT, "lan"), (PASSWORD_ADDRESS, "10.0.0.1")]
    for _ in range(10):  # successes give their tokens back: never limited
        assert limiter.take_all(keys, 0.0) == 0
        limiter.refund_all(keys, 0.0)
    assert len(limiter) == 0  # full buckets are forgotten
    assert limiter.take_all(keys, 0.0) == 0
    assert limiter.take_all(keys, 0.0) == 0
    assert limiter.take_all(keys, 0.0) > 0  # the account bucket is empty ...
    assert limiter.retry_after(PASSWORD_ADDRESS, "10.0.0.1", 0.0) == 0  # ... nothing else spent


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = RateLimiter({PASSWORD_ADDRESS: Rate(5, 12.0)}, max_keys=100)
    for i in range(1000):
        limiter.take(PASSWORD_ADDRESS, f"10.0.{i // 256}.{i % 256}", float(i) / 1000)
    assert len(limiter) <= 100


def test_token_create_for_the_command_line(tmp_path: Path) -> None:
    from signaling.control import token_create

    token, link = token_create(tmp_path, "Hop", "Chủ tọa", role="host", ttl_s=60)
    grants = verify_join_token(load_or_create_secret(tmp_path), token, time.time(), "Hop")
    assert grants.role == "host" and grants.identity.startswith("token:")
    assert link.startswith("/?room=Hop&token=")
