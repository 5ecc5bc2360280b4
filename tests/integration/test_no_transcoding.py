"""The server forwards RTP and never decodes or encodes: proved on a real server process.

The server runs in a subprocess whose aiortc codec classes are trapped: constructing any
encoder or decoder appends its name to a marker file. Two aiortc participants then meet through
it and decode each other's media (so media really flowed), and the marker must stay empty; the
server process must also have no decoder thread left running.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from loadtest.client import SyntheticParticipant
from tests.serverproc import running_server

pytestmark = pytest.mark.media

TRAPPED_SERVER = textwrap.dedent(
    """
    import pathlib, sys
    marker = pathlib.Path(sys.argv[1])
    from aiortc.codecs import h264, opus, vpx

    def trap(cls):
        original = cls.__init__
        def __init__(self, *args, **kwargs):
            with marker.open("a") as out:
                out.write(cls.__name__ + "\\n")
            original(self, *args, **kwargs)
        cls.__init__ = __init__

    for cls in (vpx.Vp8Decoder, vpx.Vp8Encoder, opus.OpusDecoder, opus.OpusEncoder,
                h264.H264Decoder, h264.H264Encoder):
        trap(cls)
    from diemcau.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def thread_names(pid: int) -> list[str]:
    return [
        (task / "comm").read_text().strip() for task in Path(f"/proc/{pid}/task").iterdir()
    ]


async def test_server_never_decodes_or_encodes(tmp_path: Path) -> None:
    marker = tmp_path / "codecs-created.txt"
    with running_server(tmp_path, python_args=("-c", TRAPPED_SERVER, str(marker)),
                        log_level="warning") as server:
        people = [SyntheticParticipant(server.base_url, "no-transcoding", name)
                  for name in ("An", "Binh")]
        try:
            for person in people:
                await person.join()
            a, b = people

            def both_decoded() -> bool:
                return all(
                    p.received[o.participant_id]["video"] >= 10
                    and p.received[o.participant_id]["audio"] >= 10
                    for p, o in ((a, b), (b, a))
                )

            assert await a.wait_for(both_decoded, timeout=30), (a.received, b.received)
            assert server.proc.poll() is None, "server died"
            assert not marker.exists(), f"server created codecs: {marker.read_text()}"
            names = thread_names(server.proc.pid)
            assert not [n for n in names if "decoder" in n or "encoder" in n], names
        finally:
            await asyncio.gather(*(p.leave() for p in people), return_exceptions=True)
