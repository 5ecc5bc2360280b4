"""The daily report as Markdown, JSON and printable HTML (with matplotlib plots, Agg backend:
no display needed, safe in a server thread)."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import re
import threading
from typing import Any

import msgspec

from signaling.report import DailyReport, RoomReport

FORMATS = ("md", "json", "html")
SEPARATOR = re.compile(r"\|(-+\|)+")


def render(report: DailyReport, fmt: str) -> str:
    if fmt == "json":
        return msgspec.json.format(msgspec.json.encode(report).decode(), indent=2)
    if fmt == "html":
        return render_html(report)
    if fmt == "md":
        return render_md(report)
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


def _clock(report: DailyReport, t: float | None) -> str:
    if t is None:
        return "-"
    tz = dt.timezone(dt.timedelta(minutes=report.utc_offset_min))
    return dt.datetime.fromtimestamp(t, tz).strftime("%H:%M")


def _offset(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _codes(refusals: dict[str, int]) -> str:
    return ", ".join(f"{code} {n}" for code, n in refusals.items()) or "none"


def render_md(report: DailyReport) -> str:
    t = report.totals
    lines = [
        f"# Daily report {report.date} ({_offset(report.utc_offset_min)})", "",
        "| | |", "|---|---|",
        f"| Meetings held | {t.meetings} ({t.scheduled} scheduled, {t.ad_hoc} ad hoc) |",
        f"| Participants | {t.participants} |",
        f"| Participant minutes | {t.participant_minutes:g} |",
        f"| Peak concurrent | {t.peak_concurrent} (at {_clock(report, t.peak_at)}) |",
        f"| Recordings | {t.recordings} |",
        f"| Join refusals | {sum(t.refusals.values())} ({_codes(t.refusals)}) |",
        f"| Reconnections | {t.reconnections} |",
        f"| Time audio-only | {t.audio_only_minutes:g} min |",
        f"| Participants with poor quality | {t.poor_quality_participants} |",
        f"| Problems | {t.problems} |", "",
    ]
    for room in report.rooms:
        lines += _room_md(report, room)
    return "\n".join(lines) + "\n"


def _room_md(report: DailyReport, room: RoomReport) -> list[str]:
    lines = [f"## Room {room.room}", "",
             f"Participant minutes {room.participant_minutes:g}; peak concurrent "
             f"{room.peak_concurrent} at {_clock(report, room.peak_at)}; reconnections "
             f"{room.reconnections}; audio-only {room.audio_only_minutes:g} min; join refusals "
             f"{_codes(room.refusals)}.", ""]
    if room.meetings:
        lines += ["| Meeting | From | To | Minutes |", "|---|---|---|---|"]
        lines += [f"| {m.title or ('scheduled' if m.scheduled else 'ad hoc')}"
                  f"{' (scheduled)' if m.scheduled and m.title else ''} | "
                  f"{_clock(report, m.started_at)} | "
                  f"{_clock(report, m.ended_at) if m.ended_at else 'still on'} | "
                  f"{m.minutes:g} |" for m in room.meetings]
        lines.append("")
    if room.participants:
        lines += ["| Participant | Minutes | Joins |", "|---|---|---|"]
        lines += [f"| {_cell(a.name)} | {a.minutes:g} | {a.joins} |" for a in room.participants]
        lines.append("")
    if room.recordings:
        lines += ["| Recording | Started | Minutes | State |", "|---|---|---|---|"]
        lines += [f"| {r.id} | {_clock(report, r.started_at)} | {r.minutes:g} | {r.state} |"
                  for r in room.recordings]
        lines.append("")
    if room.poor_quality:
        lines += ["| Poor quality | Samples | Worst loss | Worst round trip | From | To |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {_cell(p.identity)} | {p.samples} | {p.worst_loss * 100:.1f} % | "
                  f"{'-' if p.worst_rtt_ms is None else f'{p.worst_rtt_ms:g} ms'} | "
                  f"{_clock(report, p.first_at)} | {_clock(report, p.last_at)} |"
                  for p in room.poor_quality]
        lines.append("")
    if room.problems:
        lines += ["Problems:", ""]
        lines += [f"- {_clock(report, p.at)} {p.kind} ({_cell(p.who)}): {_cell(p.text)}"
                  for p in room.problems]
        lines.append("")
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- HTML ------------------------------------------------------------------------------------


def render_html(report: DailyReport) -> str:
    """A self-contained page (plots inline as PNG) an office can print on A4."""
    body = _md_to_html(render_md(report))
    plots = "".join(f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,'
                    f'{png}"><figcaption>{html.escape(title)}</figcaption></figure>'
                    for title, png in _plots(report))
    return (
        "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\">"
        f"<title>Daily report {html.escape(report.date)}</title><style>"
        "body{font-family:sans-serif;margin:1.5cm;color:#000}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #888;"
        "padding:2px 8px;text-align:left}figure{margin:1em 0;page-break-inside:avoid}"
        "img{max-width:100%}h2{page-break-before:auto;margin-top:1.2em}"
        "@page{size:A4;margin:1.5cm}@media print{body{margin:0}}"
        f"</style></head><body>{body}{plots}</body></html>\n")


def _md_to_html(md: str) -> str:
    """Just the Markdown ``render_md`` writes: headings, pipe tables, bullets, paragraphs."""
    out: list[str] = []
    rows: list[list[str]] = []

    def flush_table() -> None:
        if rows:
            head, *rest = rows
            out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>"
                                 for r in rest) + "</table>")
            rows.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            if not SEPARATOR.fullmatch(line):
                rows.append([html.escape(c.strip().replace("\\|", "|"))
                             for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])])
            continue
        flush_table()
        text = html.escape(line)
        if line.startswith("## "):
            out.append(f"<h2>{text[3:]}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{text[2:]}</h1>")
        elif line.startswith("- "):
            out.append(f"<li>{text[2:]}</li>")
        elif line:
            out.append(f"<p>{text}</p>")
    flush_table()
    return "\n".join(out)


_PLOTTING = threading.Lock()
"""matplotlib's font and text caches are not thread-safe: one report's plots at a time."""


def _plots(report: DailyReport) -> list[tuple[str, str]]:
    with _PLOTTING:
        return _draw(report)


def _draw(report: DailyReport) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # no pyplot: no global state, thread-safe
    from matplotlib.ticker import MaxNLocator

    tz = dt.timezone(dt.timedelta(minutes=report.utc_offset_min))

    def hours(t: float) -> float:
        local = dt.datetime.fromtimestamp(t, tz)
        return local.hour + local.minute / 60 + local.second / 3600

    plots: list[tuple[str, str]] = []
    if not report.rooms:
        return plots
    fig = Figure(figsize=(8, 3), layout="constrained")
    ax = fig.subplots()
    for room in report.rooms:
        if room.concurrency:
            xs = [0.0] + [hours(at) for at, _ in room.concurrency] + [24.0]
            ys = [0] + [n for _, n in room.concurrency] + [room.concurrency[-1][1]]
            ax.step(xs, ys, where="post", label=_plain(room.room))
    _hours_axis(ax, report)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("participants")
    ax.legend(fontsize="small")
    plots.append(("Participants in each room through the day", _png(fig)))

    fig = Figure(figsize=(8, 3), layout="constrained")
    ax = fig.subplots()
    names = [_plain(r.room) for r in report.rooms]
    ax.bar(names, [r.participant_minutes for r in report.rooms], label="participant minutes")
    ax.bar(names, [r.audio_only_minutes for r in report.rooms], label="audio-only minutes")
    ax.set_ylabel("minutes")
    ax.legend(fontsize="small")
    plots.append(("Participant minutes and audio-only minutes per room", _png(fig)))

    problems = [(hours(p.at), p.kind) for r in report.rooms for p in r.problems]
    if problems:
        kinds = sorted({k for _, k in problems})
        fig = Figure(figsize=(8, 2.5), layout="constrained")
        ax = fig.subplots()
        ax.scatter([h for h, _ in problems], [kinds.index(k) for _, k in problems], marker="|",
                   s=200)
        ax.set_yticks(range(len(kinds)), kinds)
        _hours_axis(ax, report)
        plots.append(("Problems through the day", _png(fig)))
    return plots


def _plain(text: str) -> str:
    """A room's name as plain text: matplotlib reads $...$ as mathematics (and raises on a
    malformed formula), and a name is whatever its host typed."""
    return text.replace("$", r"\$")


def _hours_axis(ax: Any, report: DailyReport) -> None:
    ax.set_xlim(0, 24)
    ax.set_xticks(range(0, 25, 2))
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(f"hour ({_offset(report.utc_offset_min)})")


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode()
