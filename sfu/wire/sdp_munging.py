"""SDP text work aiortc cannot do: simulcast in publisher answers, transport-cc in our offers.

aiortc's SDP model ignores ``a=rid`` / ``a=simulcast`` and every header extension it does not
implement, and it re-serialises its own descriptions. So these are pure functions over SDP text:
parse what the remote offered, then add lines to the text we send (never to what aiortc keeps).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sfu.negotiation import URI_REPAIRED_RID, URI_RID, URI_TWCC

_EXTMAP = re.compile(r"^a=extmap:(\d+)(?:/\w+)?\s+(\S+)")
_RTPMAP = re.compile(r"^a=rtpmap:(\d+)\s+([\w-]+)/")


@dataclass
class SimulcastOffer:
    """What one offered video m-section asks for: its rids, lowest quality first."""

    mid: str
    rids: list[str]
    rid_ext_id: int | None = None
    repaired_rid_ext_id: int | None = None
    extensions: dict[str, int] = field(default_factory=dict)


def split_sections(sdp: str) -> tuple[list[str], list[list[str]]]:
    """(session lines, [media section lines]) with line endings stripped."""
    session: list[str] = []
    sections: list[list[str]] = []
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            session.append(line)
    return session, sections


def join_sections(session: list[str], sections: list[list[str]]) -> str:
    lines = session + [line for section in sections for line in section]
    return "\r\n".join(lines) + "\r\n"


def _attribute(section: list[str], name: str) -> list[str]:
    prefix = f"a={name}:"
    return [line[len(prefix):].strip() for line in section if line.startswith(prefix)]


def parse_simulcast_offer(sdp: str) -> dict[str, SimulcastOffer]:
    """Video sections that offer simulcast (``a=simulcast:send``), by mid.

    The order of ``a=simulcast:send`` is taken as lowest to highest quality: the web client
    lists q, h, f so, as mediasoup expects of its clients. Paused rids (``~q``) are kept, since a
    browser may resume them; alternatives (``q,r``) keep their first choice.
    """
    _session, sections = split_sections(sdp)
    offers: dict[str, SimulcastOffer] = {}
    for section in sections:
        if not section[0].startswith("m=video"):
            continue
        mids = _attribute(section, "mid")
        simulcast = _attribute(section, "simulcast")
        if not mids or not simulcast:
            continue
        fields = simulcast[0].split()
        if "send" not in fields or fields.index("send") + 1 >= len(fields):
            continue
        streams = fields[fields.index("send") + 1]
        rids = [entry.split(",")[0].lstrip("~") for entry in streams.split(";") if entry]
        declared = {value.split()[0] for value in _attribute(section, "rid")
                    if len(value.split()) > 1 and value.split()[1] == "send"}
        rids = [rid for rid in rids if rid in declared]
        if len(rids) < 2:
            continue
        extensions: dict[str, int] = {}
        for line in section:
            match = _EXTMAP.match(line)
            if match:
                extensions[match.group(2)] = int(match.group(1))
        offers[mids[0]] = SimulcastOffer(
            mid=mids[0], rids=rids, rid_ext_id=extensions.get(URI_RID),
            repaired_rid_ext_id=extensions.get(URI_REPAIRED_RID), extensions=extensions,
        )
    return offers


def add_simulcast_to_answer(answer: str, offers: dict[str, SimulcastOffer]) -> str:
    """Accept each offered simulcast: echo the rid extensions and add ``a=rid``/``a=simulcast``.

    Without this Chromium sends only its lowest layer (docs/architecture.md).
    """
    if not offers:
        return answer
    session, sections = split_sections(answer)
    for section in sections:
        mids = _attribute(section, "mid")
        offer = offers.get(mids[0]) if mids else None
        if offer is None or offer.rid_ext_id is None or section[0].split()[1] == "0":
            continue
        lines = [f"a=extmap:{offer.rid_ext_id} {URI_RID}"]
        if offer.repaired_rid_ext_id is not None:
            lines.append(f"a=extmap:{offer.repaired_rid_ext_id} {URI_REPAIRED_RID}")
        lines += [f"a=rid:{rid} recv" for rid in offer.rids]
        lines.append("a=simulcast:recv " + ";".join(offer.rids))
        # aiortc writes a=ssrc lines even for recvonly sections; with simulcast they would
        # contradict the rids, so they go.
        section[:] = [line for line in section if not line.startswith(("a=ssrc:",
                                                                         "a=ssrc-group:"))]
        section.extend(lines)
    return join_sections(session, sections)


def add_transport_cc_to_offer(offer: str, ext_id: int) -> str:
    """Offer transport-wide congestion control feedback on every audio/video section.

    aiortc never negotiates it (docs/architecture.md); we implement the send side ourselves.
    """
    session, sections = split_sections(offer)
    for section in sections:
        if not section[0].startswith(("m=audio", "m=video")):
            continue
        if any(URI_TWCC in line for line in section):
            continue
        payload_types = [match.group(1) for line in section
                         if (match := _RTPMAP.match(line)) and match.group(2).lower() != "rtx"]
        insert_at = max(i for i, line in enumerate(section)
                        if line.startswith(("a=extmap:", "a=mid:", "m="))) + 1
        section.insert(insert_at, f"a=extmap:{ext_id} {URI_TWCC}")
        section.extend(f"a=rtcp-fb:{pt} transport-cc" for pt in payload_types)
    return join_sections(session, sections)


def negotiated_extension_id(sdp: str, mid: str, uri: str) -> int | None:
    """The id the remote description gives ``uri`` in the section with ``mid``."""
    _session, sections = split_sections(sdp)
    for section in sections:
        if _attribute(section, "mid")[:1] == [mid]:
            for line in section:
                match = _EXTMAP.match(line)
                if match and match.group(2) == uri:
                    return int(match.group(1))
    return None


def offered_extension_ids(sdp: str, uri: str) -> dict[str, int]:
    """mid -> the id an offer gives ``uri`` in that section (sections without it left out)."""
    _session, sections = split_sections(sdp)
    found: dict[str, int] = {}
    for section in sections:
        mids = _attribute(section, "mid")
        for line in section:
            match = _EXTMAP.match(line)
            if mids and match and match.group(2) == uri:
                found[mids[0]] = int(match.group(1))
    return found


def add_transport_cc_to_answer(answer: str, offered: dict[str, int]) -> str:
    """Accept the offer's transport-cc: echo its extension id and ``rtcp-fb transport-cc``.

    The publisher's own estimator (GoogCC in browsers) then runs on our feedback and probes
    its uplink quickly, instead of following a receiver estimate that ramps at ~8 %/s.
    """
    if not offered:
        return answer
    session, sections = split_sections(answer)
    for section in sections:
        mids = _attribute(section, "mid")
        ext_id = offered.get(mids[0]) if mids else None
        if ext_id is None or section[0].split()[1] == "0" or any(URI_TWCC in x for x in section):
            continue
        payload_types = [match.group(1) for line in section
                         if (match := _RTPMAP.match(line)) and match.group(2).lower() != "rtx"]
        section.append(f"a=extmap:{ext_id} {URI_TWCC}")
        section.extend(f"a=rtcp-fb:{pt} transport-cc" for pt in payload_types)
    return join_sections(session, sections)
