"""Fuzz target: the signaling messages (``signaling.messages.decode``) on random text, JSON,
message-shaped dictionaries with mangled characters and bytes: it raises only ProtocolError with
a documented code and a message.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from signaling.messages import MESSAGE_TYPES, ProtocolError, decode
from tests.unit.fuzz.helpers import FUZZ

FIELD_NAMES = ["type", "room", "name", "token", "sdp", "target", "candidate", "sdpMid",
               "sdpMLineIndex", "kind", "muted", "id"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70)
    | st.sampled_from(list(MESSAGE_TYPES) + ["publisher", "subscriber", "audio", "video", ""]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), children, max_size=5),
    max_leaves=12,
)
MESSAGES = st.fixed_dictionaries(
    {"type": st.sampled_from(MESSAGE_TYPES)},
    optional={name: JSON_VALUES for name in FIELD_NAMES[1:]},
)


def check_decode(raw: str | bytes) -> None:
    try:
        decode(raw)
    except ProtocolError as exc:
        assert exc.code in ("bad-json", "unknown-type", "bad-message")
        assert exc.message


@FUZZ
@given(st.text(max_size=300))
def test_decode_random_text(raw: str) -> None:
    check_decode(raw)


@FUZZ
@given(JSON_VALUES)
def test_decode_random_json(value: object) -> None:
    check_decode(json.dumps(value))


@FUZZ
@given(MESSAGES)
def test_decode_random_messages(message: dict) -> None:
    raw = json.dumps(message)
    check_decode(raw)
    # a dropped or mangled character must not change that
    for i in range(0, len(raw), max(1, len(raw) // 7)):
        check_decode(raw[:i] + raw[i + 1 :])
        check_decode(raw[:i] + chr((ord(raw[i]) + 1) % 128) + raw[i + 1 :])


@FUZZ
@given(st.binary(max_size=300))
def test_decode_random_bytes(raw: bytes) -> None:
    # (the session only passes str: aiohttp rejects text frames that are not UTF-8; invalid
    # UTF-8 inside a JSON string is a known decode() bug, tests/unit/test_messages.py)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    check_decode(raw)


