"""Pure rules of the meeting extras (issue 12): chat text, chat and quality rates, and the
connection-quality level shown in the participant list. No sockets, no await, time passed in.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from signaling.limits import Window
from signaling.messages import MAX_CHAT_CHARS

CHAT_HISTORY = 200
"""Lines a late joiner gets (the newest); older ones stay in the store."""
MAX_MEETING_LINES = 5000
"""Lines one sitting keeps (10 MB at most): the rate is per participant, so a full room
typing all day must still not fill the disk."""
CHAT_PER_WINDOW = 10
CHAT_WINDOW_S = 10.0
"""A person types at most a line a second for long; bursts of pasted lines are allowed."""
QUALITY_PER_WINDOW = 3
QUALITY_WINDOW_S = 6.0
"""Clients report every few seconds; more is refused (each report goes to the whole room)."""
HAND_PER_WINDOW = 10
HAND_WINDOW_S = 30.0
DOCS_PER_WINDOW = 10
DOCS_WINDOW_S = 10.0
"""Each ``documents`` request reads the store twice."""
MAX_CHAT_LINES = 40
"""Line breaks in one message: a wall of empty lines pushes the others' lines away."""

_ALLOWED_CONTROLS = {"\n", "\t"}


def clean_chat_text(text: str) -> str:
    """The text as stored and shown, or ValueError saying why it is refused.

    Trimmed; CR LF becomes LF; control and format characters other than LF and TAB are refused
    (they can reorder the text shown to others, e.g. U+202E, or ring terminals), as are blank
    messages and more than ``MAX_CHAT_LINES`` lines. msgspec already bounded the length.
    """
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise ValueError("a chat message must not be blank")
    if len(text) > MAX_CHAT_CHARS:
        raise ValueError(f"a chat message has at most {MAX_CHAT_CHARS} characters")
    for char in text:
        if char in _ALLOWED_CONTROLS:
            continue
        category = unicodedata.category(char)
        if category in ("Cc", "Cf", "Cs", "Co", "Cn") and char != "\u200d":  # ZWJ: emoji
            raise ValueError(f"a chat message must not contain the character U+{ord(char):04X}")
    if text.count("\n") >= MAX_CHAT_LINES:
        raise ValueError(f"a chat message has at most {MAX_CHAT_LINES} lines")
    return text


Level = Literal["good", "fair", "poor"]


def quality_level(loss: float, rtt_ms: int | None) -> Level:
    """What the participant list shows: loss dominates (video freezes over ~5 %), then the
    round trip (talking over each other beyond ~400 ms)."""
    rtt = rtt_ms if rtt_ms is not None else 0
    if loss >= 0.08 or rtt >= 600:
        return "poor"
    if loss >= 0.02 or rtt >= 250:
        return "fair"
    return "good"


@dataclass
class SenderRates:
    """One participant's windows for the messages that go to the whole room."""

    chat: Window = field(default_factory=lambda: Window(CHAT_PER_WINDOW, CHAT_WINDOW_S))
    quality: Window = field(default_factory=lambda: Window(QUALITY_PER_WINDOW,
                                                           QUALITY_WINDOW_S))
    hand: Window = field(default_factory=lambda: Window(HAND_PER_WINDOW, HAND_WINDOW_S))
    documents: Window = field(default_factory=lambda: Window(DOCS_PER_WINDOW, DOCS_WINDOW_S))
