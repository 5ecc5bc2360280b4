"""The pure rules of the meeting extras (issue 12): chat text, quality levels, document names
and types, document download keys."""

from __future__ import annotations

import io
import re
import zipfile

import pytest

from signaling.chat import MAX_CHAT_LINES, clean_chat_text, quality_level
from signaling.documents import download_key, key_valid, sanitise_name, sniff_kind
from signaling.messages import MAX_CHAT_CHARS, ProtocolError, decode
from signaling.store import Room


def docx_bytes(with_document: bool = True) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        if with_document:
            archive.writestr("word/document.xml", "<w:document/>")
    return buffer.getvalue()


def test_chat_text_is_trimmed_and_kept() -> None:
    assert clean_chat_text("  Chào cả nhà 👋\r\nHọp lúc 9 giờ  ") == "Chào cả nhà 👋\nHọp lúc 9 giờ"
    assert clean_chat_text("👨‍👩‍👧") == "👨‍👩‍👧"  # ZWJ sequences stay


@pytest.mark.parametrize("text, why", [
    ("   \n\t ", "blank"),
    ("abc\u202edef", "U+202E"),  # right-to-left override: reorders what others see
    ("bell\x07", "U+0007"),
    ("x" + "\n" * MAX_CHAT_LINES + "y", "lines"),
    ("x" * (MAX_CHAT_CHARS + 1), "characters"),
])
def test_bad_chat_text_is_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        clean_chat_text(text)


def test_chat_messages_are_bounded_and_typed_by_the_decoder() -> None:
    ok = decode('{"type": "chat", "text": "' + "a" * MAX_CHAT_CHARS + '"}')
    assert getattr(ok, "text", "") == "a" * MAX_CHAT_CHARS
    for raw in ('{"type": "chat", "text": "' + "a" * (MAX_CHAT_CHARS + 1) + '"}',
                '{"type": "chat", "text": 5}', '{"type": "chat"}', '{"type": "chat", "text": ""}',
                '{"type": "chat_delete", "id": -1}', '{"type": "quality", "loss": 2}',
                '{"type": "hand", "raised": "yes"}'):
        with pytest.raises(ProtocolError) as caught:
            decode(raw)
        assert caught.value.code == "bad-message", raw


def test_quality_levels() -> None:
    assert quality_level(0.0, 40) == "good"
    assert quality_level(0.03, 40) == "fair"
    assert quality_level(0.0, 300) == "fair"
    assert quality_level(0.1, None) == "poor"
    assert quality_level(0.0, 900) == "poor"


@pytest.mark.parametrize("given, kind, expected", [
    ("Kế hoạch họp.pdf", "pdf", "Kế hoạch họp.pdf"),
    ("../../etc/passwd", "pdf", "passwd.pdf"),
    ("..\\..\\Windows\\win.ini.docx", "docx", "win.ini.docx"),
    ("/abs/path/báo cáo.DOCX", "docx", "báo cáo.docx"),
    ("..", "pdf", "tai-lieu.pdf"),
    (".hidden.pdf", "pdf", "hidden.pdf"),
    ("a\x00b\u202ec.pdf", "pdf", "abc.pdf"),
    ("renamed.exe", "pdf", "renamed.exe.pdf"),
    ("x" * 500 + ".pdf", "pdf", "x" * 116 + ".pdf"),
])
def test_document_names_are_only_names(given: str, kind: str, expected: str) -> None:
    name = sanitise_name(given, kind)  # type: ignore[arg-type]
    assert name == expected
    assert "/" not in name and "\\" not in name and not name.startswith(".")


def test_document_type_is_read_from_the_bytes() -> None:
    assert sniff_kind(b"%PDF-1.7\n...") == "pdf"
    assert sniff_kind(docx_bytes()) == "docx"
    assert sniff_kind(docx_bytes(with_document=False)) is None  # some other zip
    assert sniff_kind(b"MZ\x90\x00" + b"\x00" * 100) is None  # a Windows program
    assert sniff_kind(b"PK\x03\x04 not really a zip") is None
    assert sniff_kind(b"") is None


def test_download_keys_name_the_room_instance_and_expire() -> None:
    room = Room(1, "Hop", 1, 26, "multipoint", False, False, False, None, 0.0, "inst-a")
    later = Room(1, "Hop", 1, 26, "multipoint", False, False, False, None, 0.0, "inst-b")
    key, expires = download_key(b"s" * 32, room, 1000.0)
    assert key_valid(b"s" * 32, room, key, 1000.0)
    assert not key_valid(b"s" * 32, room, key, expires + 1)
    assert not key_valid(b"s" * 32, later, key, 1000.0)  # a new room of the same name
    assert not key_valid(b"t" * 32, room, key, 1000.0)
    forged = f"{expires + 10**6}.{key.split('.')[1]}"
    assert not key_valid(b"s" * 32, room, forged, 1000.0)
    assert not key_valid(b"s" * 32, room, "garbage", 1000.0)
