"""One SFU worker process seen from signaling: spawn it, send it calls, read its reports, and
notice when it dies or hangs.

The child is ``python -c`` running ``sfu.plane_server.main`` from this same source tree, given
one end of a socketpair (``pass_fds``); nothing else is shared. The parent never blocks on it:
calls are written to the socket's buffer (a worker that stops reading until its buffer passes
``MAX_BUFFERED`` is declared hung), answers are awaited with a deadline, and a worker silent for
``HUNG_S`` (it sends ``Stats`` every 0.5 s) is killed with SIGKILL. Either way ``on_lost`` is
called once, and every call still waiting fails with ``WorkerLost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import sfu
from sfu.plane_wire import (
    AddIce,
    Call,
    FrameError,
    Hello,
    Leave,
    Publish,
    Ready,
    Reply,
    Report,
    Shutdown,
    decode_report,
    frame,
    read_frame,
)
from sfu.worker import MediaConfig

logger = logging.getLogger(__name__)

READY_S = 30.0
"""How long a new worker process may take to import aiortc and say it is ready."""
CALL_S = 30.0
"""Deadline of one answered call (publish, ICE candidate, leave)."""
HUNG_S = 10.0
"""A worker not heard from for this long (stats come every 0.5 s) is killed."""
CHECK_S = 1.0
"""How often the watchdog looks."""
MAX_BUFFERED = 32 << 20
"""Bytes of calls a worker has not read, past which it is declared hung."""
SHUTDOWN_S = 12.0

_SOURCE_ROOT = str(Path(sfu.__file__).resolve().parents[1])
_BOOT = ("import sys; sys.path.insert(0, sys.argv[2]); "
         "from sfu.plane_server import main; main(sys.argv[1:2])")


class WorkerLost(RuntimeError):
    """The worker process died, hung or was closed before answering."""


class WorkerProcess:
    """The connection to one worker process (made by ``spawn``)."""

    def __init__(self, index: int, proc: asyncio.subprocess.Process,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 on_report: Callable[[WorkerProcess, Report], None],
                 on_lost: Callable[[WorkerProcess, str], None]) -> None:
        self.index = index
        self.proc = proc
        self.reader = reader
        self.writer = writer
        self.on_report = on_report
        self.on_lost = on_lost
        self.lost: str | None = None  # why, once it is gone
        self.closing = False
        self.bad_reports = 0
        self.fanout = ""  # how it forwards, from its Ready (sfu.native.describe() there)
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._ids = itertools.count(1)
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.last_heard = loop.time()
        self._reader_task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._last_check = self.last_heard

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.lost is None and not self.closing

    @classmethod
    async def spawn(cls, index: int, config: MediaConfig, log_level: str,
                    on_report: Callable[[WorkerProcess, Report], None],
                    on_lost: Callable[[WorkerProcess, str], None]) -> WorkerProcess:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = await asyncio.create_subprocess_exec(
                # The slot index last: `ps` shows which worker a process is.
                sys.executable, "-c", _BOOT, str(theirs.fileno()), _SOURCE_ROOT,
                f"diemcau-media-worker={index}",
                pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=1 << 16)
        worker = cls(index, proc, reader, writer, on_report, on_lost)
        try:
            writer.write(frame(Hello(index, config, log_level)))
            body = await asyncio.wait_for(read_frame(reader), READY_S)
            ready = decode_report(body) if body is not None else None
            if not isinstance(ready, Ready):
                raise WorkerLost(f"worker {index} did not say ready: {ready!r}")
            worker.fanout = ready.fanout  # the worker logs it itself; kept for operators' tools
        except BaseException:
            worker.closing = True
            worker._kill()
            writer.close()
            raise
        worker.start_reading()
        return worker

    def start_reading(self) -> None:
        """Read reports and watch for silence from now on (``spawn`` calls it once ready)."""
        self.last_heard = self._last_check = self._loop.time()
        self._reader_task = asyncio.ensure_future(self._read_forever())
        self._watchdog = self._loop.call_later(CHECK_S, self._check)

    # -- out --------------------------------------------------------------------------------------

    def send(self, call: Call) -> None:
        """One-way call, in order; raises ``WorkerLost`` if the worker is gone."""
        if self.lost is not None:
            raise WorkerLost(f"media worker {self.index} is gone ({self.lost})")
        if self.writer.transport.get_write_buffer_size() > MAX_BUFFERED:
            # Declared from a timer, not here: the caller may be in the middle of a change.
            self._loop.call_soon(self.lose, "hung: not reading its calls")
            raise WorkerLost(f"media worker {self.index} does not read its calls")
        self.writer.write(frame(call))

    async def call(self, make: Callable[[int], Leave | Publish | AddIce | Shutdown],
                   timeout: float = CALL_S) -> Reply:
        """A call that is answered; raises ``WorkerLost`` or ``TimeoutError``."""
        call_id = next(self._ids)
        future: asyncio.Future[Reply] = self._loop.create_future()
        self._pending[call_id] = future
        try:
            self.send(make(call_id))
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(call_id, None)

    # -- in ---------------------------------------------------------------------------------------

    async def _read_forever(self) -> None:
        reason = "exited"
        try:
            while True:
                body = await read_frame(self.reader)
                if body is None:
                    break
                self.last_heard = self._loop.time()
                try:
                    report = decode_report(body)
                except ValueError as exc:
                    self.bad_reports += 1
                    logger.error("media worker %d: %s", self.index, exc)
                    continue
                if isinstance(report, Reply):
                    future = self._pending.get(report.id)
                    if future is not None and not future.done():
                        future.set_result(report)
                    continue
                try:
                    self.on_report(self, report)
                except Exception:
                    logger.exception("media worker %d: handling %s failed", self.index,
                                     type(report).__name__)
        except FrameError as exc:
            reason = f"broken stream: {exc}"
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            reason = f"exited ({type(exc).__name__})"
        except asyncio.CancelledError:
            return
        self.lose(reason)

    def _check(self) -> None:
        self._watchdog = None
        if self.lost is not None:
            return
        now = self._loop.time()
        # If this process itself did not run for a while (a busy machine), the worker's frames
        # may be waiting unread in our socket: judge it only after the reader had its turn.
        stalled = now - self._last_check > CHECK_S + 1.0
        self._last_check = now
        silent = now - self.last_heard
        if silent > HUNG_S and not stalled:
            self.lose(f"hung: silent for {silent:.1f} s")
            return
        self._watchdog = self._loop.call_later(CHECK_S, self._check)

    # -- the end ----------------------------------------------------------------------------------

    def _kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)

    def lose(self, reason: str) -> None:
        """The worker is gone (or made to go): kill it, fail its calls, tell the owner once."""
        if self.lost is not None:
            return
        self.lost = reason
        self._kill()
        self.writer.close()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(WorkerLost(f"media worker {self.index} lost: {reason}"))
        self._pending.clear()
        if self._reader_task is not None and self._reader_task is not asyncio.current_task():
            self._reader_task.cancel()
        if not self.closing:
            self.on_lost(self, reason)
        asyncio.ensure_future(self._reap())

    async def _reap(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 5.0)

    async def close(self) -> None:
        """Graceful: the worker drains its rooms, answers, and exits; killed if it does not."""
        if self.lost is not None:
            return
        self.closing = True
        try:
            await self.call(Shutdown, timeout=SHUTDOWN_S)
        except Exception as exc:
            logger.warning("media worker %d did not shut down cleanly: %r", self.index, exc)
        self.writer.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5.0)
        except TimeoutError:
            logger.warning("media worker %d did not exit; killed", self.index)
        self.lose("closed")
        await self._reap()
