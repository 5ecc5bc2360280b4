"""The pure cores behind the signaling limits and HTTP hygiene (signaling/limits.py,
signaling/web_security.py); the attacks themselves run in tests/integration/test_abuse.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from signaling.limits import (
    MAX_OFFER_SECTIONS,
    LimitExceeded,
    Window,
    announced_scopes,
    check_offer,
    count_sections,
    refused_candidate_address,
)
from signaling.web_security import origin_allowed, redact_query

WEB = Path(__file__).resolve().parents[2] / "web"


def test_sections_are_counted_on_the_text() -> None:
    assert count_sections("v=0\r\nm=audio 9 X 0\r\nm=video 9 X 96\r\n") == 2
    assert count_sections("m=audio 9 X 0\nm=video 9 X 96\n") == 2
    assert count_sections("v=0\r\na=x:m=video\r\n") == 0
    check_offer("v=0\n" + "m=audio 9 X 0\n" * MAX_OFFER_SECTIONS)
    with pytest.raises(LimitExceeded, match="9 media sections") as refusal:
        check_offer("v=0\n" + "m=audio 9 X 0\n" * (MAX_OFFER_SECTIONS + 1))
    assert refusal.value.limit == MAX_OFFER_SECTIONS


def test_window_allows_limit_events_per_period() -> None:
    window = Window(3, 60.0)
    assert [window.retry_after(t) for t in (0.0, 1.0, 2.0)] == [0.0, 0.0, 0.0]
    assert window.retry_after(30.0) == pytest.approx(30.0)  # the one at 0.0 leaves at 60.0
    assert window.retry_after(60.0) == 0.0
    assert window.retry_after(60.5) == pytest.approx(0.5)


@pytest.mark.parametrize(("ip", "announced", "refused"), [
    ("127.0.0.1", ["192.0.2.1"], "loopback"),
    ("127.0.0.1", None, "loopback"),
    ("127.0.0.1", ["127.0.0.1"], None),  # tests: the server itself lives on loopback
    ("::1", ["127.0.0.1"], None),
    ("::ffff:127.0.0.1", ["192.0.2.1"], "loopback"),
    ("169.254.1.1", ["192.0.2.1"], "link-local"),
    ("fe80::1", ["fe80::2"], None),
    ("0.0.0.0", ["0.0.0.0"], "unspecified"),  # never announced as such: never a peer
    ("::", ["127.0.0.1"], "unspecified"),
    ("224.0.0.251", ["127.0.0.1"], "multicast/broadcast"),
    ("192.0.2.7", ["192.0.2.1"], None),
    ("10.1.2.3", None, None),
    ("a1b2c3.local", None, None),
])
def test_candidate_addresses(ip: str, announced: list[str] | None, refused: str | None) -> None:
    allowed = announced_scopes(announced) - {"unspecified", "multicast/broadcast"}
    assert refused_candidate_address(ip, allowed) == refused


def test_malformed_candidate_address_raises() -> None:
    with pytest.raises(ValueError, match="999.1.1.1"):
        refused_candidate_address("999.1.1.1", frozenset())


def test_access_log_query_redaction() -> None:
    assert redact_query("/?room=a&invite=S3CRET&name=An") == "/?room=a&invite=REDACTED&name=An"
    assert redact_query("/api/x?token=t&password=p&Password=q") == \
        "/api/x?token=REDACTED&password=REDACTED&Password=REDACTED"
    assert redact_query("/static/app.js") == "/static/app.js"
    assert redact_query("/?room=a") == "/?room=a"
    assert "s3cret" not in redact_query("https://h/?room=r&invite=s3cret")


def test_origin_check() -> None:
    assert origin_allowed(None, "meet:8080", ())  # not a browser page
    assert origin_allowed("http://meet:8080", "meet:8080", ())
    assert origin_allowed("https://meet:8080", "meet:8080", ())  # behind a TLS proxy
    assert not origin_allowed("https://evil.example", "meet:8080", ())
    assert not origin_allowed("http://meet:8081", "meet:8080", ())
    assert not origin_allowed("null", "meet:8080", ())
    assert origin_allowed("https://Meet.Example.org/", "10.0.0.1:8080",
                          ("https://meet.example.org",))


def test_pages_have_no_inline_script_or_style() -> None:
    """The CSP allows scripts and styles from /static only: nothing inline may be needed."""
    pages = sorted(WEB.glob("*.html"))
    assert pages
    for page in pages:
        html = page.read_text()
        for script in re.findall(r"<script\b[^>]*>", html, re.I):
            assert "src=" in script, (page.name, script)
        assert not re.search(r"<style\b", html, re.I), page.name
        assert not re.search(r"\sstyle\s*=", html, re.I), page.name
        assert not re.search(r"\son[a-z]+\s*=", html, re.I), page.name
        assert "javascript:" not in html.lower(), page.name
