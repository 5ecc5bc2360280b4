"""Which m-lines of an offer no longer send: a stopped screen share (web/screenshare.js).

Read from the text, as the rest of sfu/wire does with SDP aiortc does not expose: aiortc keeps
a transceiver whose remote side went inactive, and never tells its receiver.
"""

from __future__ import annotations


def silent_mids(sdp: str) -> set[str]:
    """Mids of media sections that are rejected (port 0) or send nothing (inactive/recvonly)."""
    out: set[str] = set()
    for section in sdp.split("\nm=")[1:]:
        lines = section.replace("\r", "").split("\n")
        fields = lines[0].split()
        rejected = len(fields) > 1 and fields[1] == "0"
        mid = None
        silent = rejected
        for line in lines[1:]:
            if line.startswith("a=mid:"):
                mid = line[len("a=mid:"):].strip()
            elif line in ("a=inactive", "a=recvonly"):
                silent = True
        if mid and silent:
            out.add(mid)
    return out
