"""Settings: defaults < TOML file < DIEMCAU_* environment < flags, and errors naming the key and
its source (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from diemcau.cli import main
from signaling.settings import ConfigError, describe, load, to_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "diemcau.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_flags_beat_environment_beats_file_beats_defaults(tmp_path: Path) -> None:
    config_file = write(tmp_path, 'port = 7000\nhost = "0.0.0.0"\njoin_timeout = 4.5\n'
                                  'ice_servers = ["stun:a.example"]\nlog_level = "debug"\n')
    env = {"DIEMCAU_PORT": "7100", "DIEMCAU_JOIN_TIMEOUT": "6", "DIEMCAU_OPEN_ROOMS": "true",
           "DIEMCAU_ICE_SERVERS": "turn:b.example, stun:c.example",
           "DIEMCAU_PUBLIC_CORPORA": "/elsewhere"}  # not ours: ignored
    loaded = load({"port": "7200"}, env, config_file)
    settings = loaded.settings
    assert settings.port == 7200 and loaded.sources["port"] == "flag --port"
    assert settings.join_timeout == 6.0
    assert loaded.sources["join_timeout"] == "env DIEMCAU_JOIN_TIMEOUT"
    assert settings.open_rooms is True
    assert settings.ice_servers == ["turn:b.example", "stun:c.example"]
    assert settings.host == "0.0.0.0" and loaded.sources["host"] == f"file {config_file}"
    assert settings.log_level == "debug"
    assert settings.max_unjoined_per_address == 16
    assert loaded.sources["max_unjoined_per_address"] == "default"
    config = to_config(settings)
    assert config.port == 7200 and config.join_timeout_s == 6.0 and config.open_rooms
    assert config.media.ice_servers == ("turn:b.example", "stun:c.example")
    text = describe(loaded)
    assert "port                       = 7200   # flag --port" in text
    assert f"# file {config_file}" in text


def test_config_file_from_environment_and_serve_table(tmp_path: Path) -> None:
    config_file = write(tmp_path, '[serve]\nrtc_port_range = "40000-40099"\n')
    loaded = load({}, {"DIEMCAU_CONFIG": str(config_file)})
    assert to_config(loaded.settings).media.port_range == (40000, 40099)


@pytest.mark.parametrize(("flags", "env", "text", "expected"), [
    ({"port": "http"}, {}, "", "value 'http' for 'port' (from flag --port): Expected `int`"),
    ({}, {"DIEMCAU_PORT": "70000"}, "",
     "invalid value '70000' for 'port' (from env DIEMCAU_PORT): Expected `int` <= 65535"),
    ({}, {}, "port = -1\n", "for 'port' (from file "),
    ({}, {}, "prot = 80\n", "unknown key 'prot' (did you mean 'port'?)"),
    ({}, {}, "port = \n", "not valid TOML"),
    ({}, {}, 'rtc_port_range = "9-8"\n',
     "invalid value for 'rtc_port_range' (from file "),
    ({}, {"DIEMCAU_RTC_PORT_RANGE": "40000"}, "",
     "'rtc_port_range' (from env DIEMCAU_RTC_PORT_RANGE): expected LOW-HIGH, got '40000'"),
    ({"log_level": "loud"}, {}, "",
     "(from flag --log-level): Invalid enum value 'loud'; one of: debug, info"),
    ({"webhook_urls": ["http://127.0.0.1:9/hook"]}, {}, "",
     "'webhook_urls' (from flag --webhook-url): webhooks are signed: set webhook_secret"),
    ({}, {"DIEMCAU_WEBHOOK_SECRET": "short"}, "", "'webhook_secret' (from env "
                                                  "DIEMCAU_WEBHOOK_SECRET): too short"),
    ({}, {}, 'webhook_urls = ["ftp://x"]\nwebhook_secret = "0123456789abcdef"\n',
     "'ftp://x' is not an http:// or https:// URL"),
    ({"tls_cert": "/etc/cert.pem"}, {}, "", "'tls_key' (from default): give both"),
])
def test_errors_name_the_key_and_where_it_came_from(
        tmp_path: Path, flags: dict[str, object], env: dict[str, str], text: str,
        expected: str) -> None:
    config_file = write(tmp_path, text) if text else None
    with pytest.raises(ConfigError) as caught:
        load(flags, env, config_file)
    assert expected in str(caught.value)


def test_secret_is_never_printed(tmp_path: Path) -> None:
    loaded = load({}, {"DIEMCAU_WEBHOOK_SECRET": "s3cret-s3cret-s3cret"})
    assert "s3cret" not in describe(loaded)
    with pytest.raises(ConfigError) as caught:
        load({}, {"DIEMCAU_WEBHOOK_SECRET": "x" * 5})
    assert "x" * 5 not in str(caught.value)


def test_the_store_from_file_environment_or_flag(tmp_path: Path) -> None:
    url = "postgresql://dc:s3cret-pw@10.0.0.9:5432/diemcau"
    from_file = load({}, {}, write(tmp_path, f'store = "{url}"\n'))
    assert to_config(from_file.settings).store_url == url
    assert load({}, {"DIEMCAU_STORE": url}).settings.store == url
    assert load({"store": url}, {}).sources["store"] == "flag --store"
    assert to_config(load({}, {}).settings).store_url is None  # the SQLite file, as before
    assert "s3cret-pw" not in describe(from_file)


def test_config_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    config_file = write(tmp_path, "port = 7000\nrecord_all = true\n")
    monkeypatch.setenv("DIEMCAU_PORT", "7100")
    assert main(["config", "check", "--config", str(config_file)]) == 0
    out = capsys.readouterr().out
    assert "port                       = 7100   # env DIEMCAU_PORT" in out
    assert f"record_all                 = true   # file {config_file}" in out
    assert main(["config", "check", "--config", str(config_file), "--port", "0"]) == 2
    assert "'port' (from flag --port)" in capsys.readouterr().err


def test_the_shipped_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "packaging" / "diemcau.toml.example"
    loaded = load({}, {}, example)
    assert loaded.sources["rtc_port_range"] == f"file {example}"
    assert to_config(loaded.settings).media.port_range == (40000, 40999)


def test_turn_and_reconnection_come_through_the_settings(tmp_path: Path) -> None:
    """TURN servers, their secret file and the reconnection grace, from a file and the flags."""
    secret = tmp_path / "turn-secret"
    secret.write_text("s3cret-s3cret-s3cret\n")
    path = tmp_path / "diemcau.toml"
    path.write_text(f'turn_urls = ["turn:127.0.0.1:3478?transport=udp"]\n'
                    f'turn_secret_file = "{secret}"\nreconnect_grace = 5\n')
    config = to_config(load({"turn_ttl": "600"}, environ={}, config_file=path).settings)
    assert config.turn is not None and config.turn.secret == "s3cret-s3cret-s3cret"
    assert config.turn.ttl_s == 600 and config.reconnect_grace_s == 5
    with pytest.raises(ConfigError, match="turn_urls"):
        load({"turn_username": "u"}, environ={})


def test_relay_sources_are_origins() -> None:
    config = to_config(load({"relay_sources": ["wss://Tinh.Example.vn/", "http://10.0.0.5:8080"]},
                            environ={}).settings)
    assert config.relay_sources == ("https://tinh.example.vn", "http://10.0.0.5:8080")
    with pytest.raises(ConfigError, match="relay_sources"):
        load({"relay_sources": ["file:///etc/passwd"]}, environ={})
