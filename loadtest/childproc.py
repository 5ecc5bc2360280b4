"""Load-generator worker processes: a spawned child with its own event loop, driven over a pipe.

The parent sends ``(command, argument)``; the child answers ``(command, result)``. The child
first sends a greeting (``("ready", None)``, or what its ``start`` returns: ``("error", text)``
ends it), obeys until ``stop``, the parent going away or ``CHILD_LIFETIME_S``, then stops its
work and says ``("stopped", None)``. Used by ``diemcau bench forward`` (subscribers) and
``diemcau loadtest`` (participants).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import multiprocessing
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from signaling.eventloop import new_event_loop

CHILD_LIFETIME_S = 1800.0  # a worker process never outlives this, whatever happens to us

Handler = Callable[[Any], Any]  # a command's argument -> its result (or an awaitable of it)


def child_main(child: Callable[..., Coroutine[Any, Any, None]], conn: Any, *args: Any) -> None:
    """Entry point of a worker process (spawned): runs ``child(conn, *args)`` on our loop."""
    logging.basicConfig(level=logging.WARNING)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(child(conn, *args))


async def obey_parent(
    conn: Any,
    handlers: dict[str, Handler],
    stop: Callable[[], Awaitable[Any]],
    stop_timeout: float,
    start: Callable[[], Awaitable[tuple[str, Any]]] | None = None,
) -> None:
    """The child's side: greet, answer commands with ``handlers`` until told to stop, stop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CHILD_LIFETIME_S
    try:
        greeting = await start() if start is not None else ("ready", None)
        conn.send(greeting)
        if greeting[0] == "error":
            return
        while loop.time() < deadline:
            if not await loop.run_in_executor(None, conn.poll, 0.5):
                continue
            command, argument = conn.recv()
            if command == "stop":
                break
            result = handlers[command](argument)
            if inspect.isawaitable(result):
                result = await result
            conn.send((command, result))
    except (EOFError, OSError):
        pass  # the parent went away
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stop(), stop_timeout)
        with contextlib.suppress(Exception):
            conn.send(("stopped", None))


class ChildProcess:
    """The parent's side of one worker process."""

    error: type[Exception] = RuntimeError  # what a dead or silent child raises
    poll_s = 0.1

    def __init__(self, child: Callable[..., Awaitable[None]], args: tuple[Any, ...],
                 name: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self.process = context.Process(target=child_main, args=(child, child_conn, *args),
                                       daemon=True, name=name)
        self._lock = asyncio.Lock()

    async def _reply(self, timeout: float) -> tuple[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if await loop.run_in_executor(None, self._conn.poll, self.poll_s):
                return self._conn.recv()
            if not self.process.is_alive():
                raise self.error(f"worker process exited ({self.process.exitcode})")
        raise self.error(f"worker process did not answer within {timeout} s")

    async def _start(self, timeout: float) -> tuple[str, Any]:
        """Start the process; its greeting."""
        self.process.start()
        return await self._reply(timeout)

    async def _call(self, command: str, argument: Any, timeout: float) -> Any:
        async with self._lock:
            self._conn.send((command, argument))
            kind, value = await self._reply(timeout)
            if kind != command:
                raise RuntimeError(f"worker answered {kind} to {command}")
            return value

    async def _stop(self, timeout: float) -> None:
        """Ask the process to stop (waiting up to ``timeout`` s), else terminate it."""
        if self.process.is_alive():
            with contextlib.suppress(Exception):
                async with self._lock:
                    self._conn.send(("stop", None))
                    await self._reply(timeout)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.process.join, 5)
        if self.process.is_alive():
            self.process.terminate()
            await loop.run_in_executor(None, self.process.join, 5)
        self._conn.close()
