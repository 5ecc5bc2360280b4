"""Recording for the archive: one file per track, encoded frames muxed as they came (no
transcoding), a hash-chained manifest per recording, crash recovery, offline archive tools.

- ``depacketize``: RTP -> encoded frames (VP8, Opus, H.264), drops counted by FrameDropReason.
- ``clock``: RTP timestamps -> the common clock through sender reports.
- ``track``: TrackRecorder, the pure core of one track (frames, timestamps, key frame requests).
- ``track_writer``: TrackWriter, PyAV muxing on a thread behind a bounded queue.
- ``manifest``: the manifest (append, read, verify a recording folder).
- ``recording``: Recording / RecordedTrack, the shell the media plane drives.
- ``recovery``: finish recordings interrupted by a crash (at start).
- ``archive`` / ``cli`` / ``export``: list, verify, export; offline on the data dir.
"""
