"""Child process for the kill -9 test: records one VP8 and one Opus track from RTP at real-time
pace, printing ``t=<media seconds submitted>`` after every video frame, until it is killed."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from recorder.recording import Recording
from tests.unit.recorder.media import opus_frames, rtp, vp8_frames, vp8_payloads

MAX_SECONDS = 60.0  # a bound even if nobody kills us


def main(data_dir: Path) -> None:
    # Muxer options can be overridden to measure alternatives (bench only; tests use defaults).
    options = json.loads(os.environ.get("DIEMCAU_RECORDER_OPTIONS", "null"))
    recording = Recording(data_dir, "killed", options=options)
    print(f"id={recording.id}", flush=True)
    video = recording.add_track("cam", "alice", "vp8")
    audio = recording.add_track("mic", "alice", "opus")
    vframes, aframes = vp8_frames(), opus_frames()
    start = time.time()
    video.on_sender_report(1, start, 0, start)
    audio.on_sender_report(2, start, 0, start)
    seq_v = 0
    n_v = n_a = 0
    while True:
        now = time.time()
        media = now - start
        if media > MAX_SECONDS:
            return
        while n_a * 0.02 <= media:
            audio.on_rtp(rtp(aframes[n_a % len(aframes)], n_a, n_a * 960, ssrc=2,
                             payload_type=111), time.time())
            n_a += 1
        while n_v / 30 <= media:
            payloads = vp8_payloads(vframes[n_v % len(vframes)].data, n_v & 0x7FFF)
            for i, payload in enumerate(payloads):
                video.on_rtp(rtp(payload, seq_v, n_v * 3000, marker=i == len(payloads) - 1,
                                 ssrc=1), time.time())
                seq_v += 1
            print(f"t={n_v / 30:.3f}", flush=True)
            n_v += 1
        recording.poll(time.time())
        time.sleep(0.005)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
