"""Logging for ``diemcau serve``: text (the default) or JSON, one object a line, for a log
collector. Both carry the room and participant a line is about when the code that logs runs for
one participant: the session binds them in a ``contextvars`` context at join, and every task the
session's task starts afterwards inherits it (asyncio copies the context into each new task).
"""

from __future__ import annotations

import contextvars
import json
import logging
import time

ROOM: contextvars.ContextVar[str | None] = contextvars.ContextVar("diemcau_room", default=None)
PARTICIPANT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "diemcau_participant", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"


def bind_log_context(room: str | None, participant: str | None) -> None:
    """Name the room and participant of the current task (and the tasks it starts)."""
    ROOM.set(room)
    PARTICIPANT.set(participant)


class ContextFilter(logging.Filter):
    """Copies the bound ids onto every record (``record.room``, ``record.participant``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        room, participant = ROOM.get(), PARTICIPANT.get()
        # An explicit extra={"room": ...} on the call wins over the bound context.
        room = getattr(record, "room", None) or room
        participant = getattr(record, "participant", None) or participant
        setattr(record, "room", room)  # noqa: B010 (LogRecord declares no such attribute)
        setattr(record, "participant", participant)  # noqa: B010
        parts = [f"room={room}" if room else "",
                 f"participant={participant}" if participant else ""]
        text = " ".join(part for part in parts if part)
        setattr(record, "context", f" [{text}]" if text else "")  # noqa: B010
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("room", "participant"):
            value = getattr(record, key, None)
            if value:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
