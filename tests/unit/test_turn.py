"""TURN credentials (signaling/turn.py): coturn's REST maths, URL checks, the CLI options."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from signaling.turn import (
    TurnConfig,
    TurnConfigError,
    add_turn_arguments,
    check_url,
    rest_credentials,
    turn_config_from_args,
)

SECRET = "north-district-shared-secret"


def test_rest_credentials_match_an_independent_hmac() -> None:
    # Computed with OpenSSL, not with Python's hmac:
    #   printf '1700086400:p1234' | openssl dgst -sha1 -hmac "$SECRET" -binary | base64
    username, password = rest_credentials(SECRET, "p1234", now=1_700_000_000.0, ttl_s=86400)
    assert username == "1700086400:p1234"
    assert password == "XtwGrKx6M6mZ3/h+f0GxscSw9q8="


def test_rest_credentials_expire_after_the_ttl_and_differ_per_user() -> None:
    a, pa = rest_credentials(SECRET, "a", now=1000.5, ttl_s=60)
    b, pb = rest_credentials(SECRET, "b", now=1000.5, ttl_s=60)
    assert a.split(":")[0] == b.split(":")[0] == "1060"
    assert pa != pb


def test_rest_user_part_may_not_hold_a_colon() -> None:
    with pytest.raises(ValueError, match="':'"):
        rest_credentials(SECRET, "a:b", now=0, ttl_s=60)


def test_ice_servers_with_a_secret_give_time_limited_credentials() -> None:
    config = TurnConfig(urls=("stun:127.0.0.1:3478", "turn:127.0.0.1:3478?transport=udp",
                              "turns:turn.example.org:5349?transport=tcp"), secret=SECRET)
    servers = config.ice_servers("p1234", now=1_700_000_000.0)
    assert servers[0] == {"urls": ["stun:127.0.0.1:3478"]}
    assert servers[1]["urls"] == ["turn:127.0.0.1:3478?transport=udp",
                                  "turns:turn.example.org:5349?transport=tcp"]
    assert servers[1]["username"] == "1700086400:p1234"
    assert servers[1]["credential"] == "XtwGrKx6M6mZ3/h+f0GxscSw9q8="


def test_ice_servers_with_static_credentials() -> None:
    config = TurnConfig(urls=("turn:[::1]:3478?transport=tcp",), username="room",
                        password="pw-123")
    assert config.ice_servers("x", now=0) == [
        {"urls": ["turn:[::1]:3478?transport=tcp"], "username": "room", "credential": "pw-123"}]


@pytest.mark.parametrize("url", [
    "turn:127.0.0.1", "turn:turn.example.org:3478?transport=udp", "turns:a.b:5349",
    "turns:a.b:443?transport=tcp", "stun:[2001:db8::1]:3478",
])
def test_good_urls(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize("url, why", [
    ("http://turn.example.org", "expected turn:"),
    ("turn:", "expected turn:"),
    ("turn:host:99999", "out of range"),
    ("turn:host:0", "out of range"),
    ("turns:host:5349?transport=udp", "TLS runs over TCP"),
    ("turn:host?transport=sctp", "expected turn:"),
    ("turn:host\r\nX-Injected: 1", "expected turn:"),
    ("turn:user@host", "expected turn:"),
])
def test_bad_urls_are_refused_by_name(url: str, why: str) -> None:
    with pytest.raises(TurnConfigError, match=why):
        check_url(url)


@pytest.mark.parametrize("kwargs, why", [
    ({"urls": ()}, "no --turn URL"),
    ({"urls": ("turn:h",)}, "need credentials"),
    ({"urls": ("turn:h",), "username": "u"}, "go together"),
    ({"urls": ("turn:h",), "secret": "short"}, "shorter than 16"),
    ({"urls": ("turn:h",), "secret": SECRET, "username": "u", "password": "p"}, "not both"),
    ({"urls": ("turn:h",), "secret": SECRET, "ttl_s": 5.0}, "between"),
    ({"urls": ("turn:h",) * 17, "secret": SECRET}, "at most 16"),
])
def test_bad_configurations_are_refused(kwargs: dict[str, object], why: str) -> None:
    with pytest.raises(TurnConfigError, match=why):
        TurnConfig(**kwargs)  # type: ignore[arg-type]


def test_stun_only_needs_no_credentials() -> None:
    assert TurnConfig(urls=("stun:h:3478",)).ice_servers("x", 0) == [{"urls": ["stun:h:3478"]}]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_turn_arguments(parser)
    return parser.parse_args(argv)


def test_cli_reads_the_secret_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "turn-secret"
    path.write_text(SECRET + "\n")
    config = turn_config_from_args(_parse(
        ["--turn", "turn:127.0.0.1:3478", "--turn-secret-file", str(path), "--turn-ttl", "600"]))
    assert config is not None and config.secret == SECRET and config.ttl_s == 600
    assert turn_config_from_args(_parse([])) is None


def test_cli_refuses_credentials_without_urls_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(TurnConfigError, match="no --turn URL"):
        turn_config_from_args(_parse(["--turn-username", "u"]))
    with pytest.raises(TurnConfigError, match="cannot read"):
        turn_config_from_args(_parse(["--turn", "turn:h", "--turn-secret-file",
                                      str(tmp_path / "missing")]))
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(TurnConfigError, match="empty"):
        turn_config_from_args(_parse(["--turn", "turn:h", "--turn-secret-file",
                                      str(tmp_path / "empty")]))
