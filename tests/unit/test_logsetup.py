"""Logs name the room and participant bound to the task that logs (and to the tasks it starts),
as text or as one JSON object a line (issue 13)."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from signaling.logsetup import TEXT_FORMAT, ContextFilter, JsonFormatter, bind_log_context


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.logsetup.{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, stream


async def test_json_lines_carry_the_bound_ids_into_child_tasks() -> None:
    logger, stream = capture(JsonFormatter())

    async def session(room: str, participant: str) -> None:
        bind_log_context(room, participant)

        async def child() -> None:
            logger.info("from a task the session started")

        await asyncio.ensure_future(child())
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")

    await asyncio.gather(session("hue", "p1"), session("hanoi", "p2"))
    logger.info("outside any session")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    children = {(r["room"], r["participant"]) for r in lines if r["message"].startswith("from")}
    assert children == {("hue", "p1"), ("hanoi", "p2")}
    failed = [r for r in lines if r["message"] == "failed"]
    assert len(failed) == 2 and all("ValueError: boom" in r["exception"] for r in failed)
    outside = lines[-1]
    assert "room" not in outside and outside["level"] == "info"


def test_text_lines_show_the_ids() -> None:
    logger, stream = capture(logging.Formatter(TEXT_FORMAT))
    logger.info("plain", extra={"room": "quang-nam", "participant": "p9"})
    assert "[room=quang-nam participant=p9]: plain" in stream.getvalue()
