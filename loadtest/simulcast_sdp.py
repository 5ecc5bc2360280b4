"""SDP text for the synthetic simulcast publisher: a Chrome-like offer with rids, and the
extension ids and payload types the server's answer gave a section (string work only)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sfu.negotiation import URI_REPAIRED_RID, URI_RID
from sfu.wire.sdp_munging import join_sections, split_sections

EXTMAP = re.compile(r"^a=extmap:(\d+)(?:/\w+)?\s+(\S+)")
RTPMAP = re.compile(r"^a=rtpmap:(\d+)\s+([\w-]+)/(\d+)")


# -- SDP text --------------------------------------------------------------------------------------


def mid_of(section: list[str]) -> str | None:
    return next((line[6:].strip() for line in section if line.startswith("a=mid:")), None)


@dataclass
class SimulcastOfferInfo:
    mid: str
    rid_ext_id: int
    repaired_rid_ext_id: int


def make_simulcast_offer(sdp: str, rids: tuple[str, ...] = ("q", "h", "f")) -> tuple[
        str, SimulcastOfferInfo]:
    """Turn aiortc's offer into what Chrome offers for simulcast on its (first) video m-line.

    Adds the rid / repaired-rid extensions (ids unused anywhere in the offer), ``a=rid:X send``
    and ``a=simulcast:send q;h;f``, and drops the video ``a=ssrc`` / ``a=ssrc-group`` lines.
    """
    session, sections = split_sections(sdp)
    used = {int(m.group(1)) for s in sections for line in s if (m := EXTMAP.match(line))}
    free = [i for i in range(1, 15) if i not in used]
    rid_id, rrid_id = free[-2], free[-1]  # Chrome's own offers use 10 and 11 for these
    for section in sections:
        if not section[0].startswith("m=video"):
            continue
        mid = mid_of(section)
        if mid is None:
            raise ValueError("video section without a=mid")
        kept = [line for line in section if not line.startswith(("a=ssrc:", "a=ssrc-group:"))]
        insert_at = max(i for i, line in enumerate(kept)
                        if line.startswith(("a=extmap:", "a=mid:", "m="))) + 1
        kept[insert_at:insert_at] = [f"a=extmap:{rid_id} {URI_RID}",
                                     f"a=extmap:{rrid_id} {URI_REPAIRED_RID}"]
        kept += [f"a=rid:{rid} send" for rid in rids]
        kept.append("a=simulcast:send " + ";".join(rids))
        section[:] = kept
        return join_sections(session, sections), SimulcastOfferInfo(mid, rid_id, rrid_id)
    raise ValueError("the offer has no video section")


def section_info(sdp: str, mid: str) -> tuple[dict[str, int], dict[str, int]]:
    """({uri: ext id}, {codec name lower: payload type}) of the section with ``mid``."""
    _session, sections = split_sections(sdp)
    for section in sections:
        if mid_of(section) == mid:
            exts = {m.group(2): int(m.group(1)) for line in section if (m := EXTMAP.match(line))}
            codecs: dict[str, int] = {}
            for line in section:
                match = RTPMAP.match(line)
                if match:
                    codecs.setdefault(match.group(2).lower(), int(match.group(1)))
            return exts, codecs
    raise ValueError(f"no section with mid {mid}")
