"""``diemcau loadtest`` options and figures: aggregate per-participant windows, table, plot.

Light on purpose (no aiortc, no load generator): ``diemcau/cli.py`` imports the options.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from pathlib import Path
from typing import Any

LOSS_SLO_PCT = 0.5
DELAY_SLO_MS = 30.0
CPU_SLO_PCT = 85.0  # of the server's cores

RAMP_STEP_S = 8.0
RAMP_MAX_TIME_S = 300.0

REPORT_KEYS = ("joined", "refused", "join_ms", "first_frame_ms", "loss_pct", "delay_ms",
               "jitter_ms", "recv_kbps", "layers", "audio_only", "reconnects", "server")


def stats(values: list[float]) -> dict[str, float | None]:
    """p50 / p95 / max (nearest rank), None when there is nothing."""
    if not values:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]

    return {"p50": round(rank(0.5), 2), "p95": round(rank(0.95), 2),
            "max": round(ordered[-1], 2), "n": len(ordered)}


def hist_stats(hist: Counter[int]) -> dict[str, float | None]:
    total = sum(hist.values())
    if not total:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    keys = sorted(hist)
    out: dict[str, float | None] = {"n": total, "max": float(keys[-1])}
    for name, p in (("p50", 0.5), ("p95", 0.95)):
        need, seen = math.ceil(p * total), 0
        for key in keys:
            seen += hist[key]
            if seen >= need:
                out[name] = float(key)
                break
    return out


def aggregate(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Quality over all participants' windows (one per participant)."""
    loss_pct: list[float] = []
    kbps: list[float] = []
    jitter: list[float] = []
    delay: Counter[int] = Counter()
    layers: Counter[str] = Counter()
    frames: Counter[str] = Counter()
    expected = received = 0
    audio_only = 0
    audio_only_s = 0.0
    elapsed = 0.0
    markers = [0, 0]
    missing_video = 0
    placeholders: dict[str, list[str]] = {}
    videos: list[float] = []
    repair: Counter[str] = Counter()
    for w in windows:
        exp = sum(w["expected"].values())
        rec = sum(w["received"].values())
        expected += exp
        received += rec
        if exp:
            loss_pct.append(100 * (exp - rec) / exp)
        kbps.append(w["recv_bytes"] * 8 / 1000 / w["elapsed_s"])
        jitter.extend(w["jitter_ms"])
        delay.update({int(k): v for k, v in w["delay_hist"].items()})
        layers.update(w["layers"])
        frames.update(w["frames_by_layer"])
        audio_only += bool(w["audio_only"])
        audio_only_s += w["audio_only_s"]
        elapsed += w["elapsed_s"]
        markers[0] += w["marker_ok"]
        markers[1] += w["marker_bad"]
        missing_video += len(w["video_missing_from"])
        if w.get("tiles_without_video"):
            placeholders[w["name"]] = w["tiles_without_video"]
        if "videos_received" in w:
            videos.append(w["videos_received"])
        for key, value in w.get("repair", {}).items():
            repair[key] += value
    total_frames = sum(frames.values())
    return {
        "loss_pct": {**stats(loss_pct),
                     "overall": round(100 * (expected - received) / expected, 3)
                     if expected else None},
        "delay_ms": hist_stats(delay),
        "jitter_ms": stats(jitter),
        "recv_kbps": stats(kbps),
        "layers": {"tracks": dict(layers),
                   "frames_share": {k: round(v / total_frames, 3) for k, v in frames.items()}
                   if total_frames else {}},
        "audio_only": {"participants": audio_only,
                       "share": round(audio_only / len(windows), 3) if windows else None,
                       "time_share": round(audio_only_s / elapsed, 3) if elapsed else None},
        "content_marker": {"ok": markers[0], "bad": markers[1]},
        "video_tracks_missing": missing_video,
        # what a person sees: videos received each (min too: one short page shows there), and
        # tiles of the page the server did not forward (placeholders), by participant
        "videos_per_participant": {**stats(videos), "min": min(videos) if videos else None},
        "tiles_without_video": sum(len(names) for names in placeholders.values()),
        "tiles_without_video_by_participant": placeholders,
        # diagnosis: who got no video from whom, and publishers told to send fewer layers
        "video_missing": {w["name"]: w["video_missing_from"] for w in windows
                          if w.get("video_missing_from")},
        "publishers_sending": {w["name"]: "".join(r for r, on in w["sent_layers"].items() if on)
                               for w in windows},
        "received_packets": received,
        "received_packets_by_kind": {kind: sum(w["received"].get(kind, 0) for w in windows)
                                     for kind in ("audio", "video")},
        # what the receivers sent back as a browser does: NACKed packets, those repaired in
        # time, those not (the picture would break: a PLI), layer switches seen
        "repair": dict(repair),
    }


def slo_breaches(quality: dict[str, Any], server_cpu_pct: float | None,
                 server_cores: float, max_loss_pct: float = LOSS_SLO_PCT,
                 max_delay_ms: float = DELAY_SLO_MS) -> list[str]:
    out = []
    loss = quality["loss_pct"].get("overall")
    if loss is not None and loss > max_loss_pct:
        out.append(f"loss {loss:.2f}% > {max_loss_pct}%")
    p95 = quality["delay_ms"].get("p95")
    if p95 is not None and p95 > max_delay_ms:
        out.append(f"delay p95 {p95:.0f} ms > {max_delay_ms:.0f} ms")
    if server_cpu_pct is not None and server_cpu_pct > CPU_SLO_PCT * server_cores:
        out.append(f"server CPU {server_cpu_pct:.0f}% > {CPU_SLO_PCT * server_cores:.0f}%")
    if quality["video_tracks_missing"]:
        out.append(f"{quality['video_tracks_missing']} remote video tracks never arrived")
    if quality.get("tiles_without_video"):
        out.append(f"{quality['tiles_without_video']} gallery tiles shown without video "
                   f"(not forwarded)")
    return out


# -- table ----------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_rows(rows: list[dict[str, Any]]) -> str:
    """One line per run/step: participants, quality p50/p95/max, server."""
    head = (f"{'N':>4} {'join ms p50/p95':>16} {'1st frame ms':>14} {'loss % p50/p95/max':>19} "
            f"{'delay ms p50/p95/max':>21} {'jitter p95':>10} {'kbps p50/p95':>13} "
            f"{'layers q/h/f':>13} {'videos min/p50':>14} {'a-only':>6} {'srv CPU%':>8} "
            f"{'RSS MB':>6} {'us/pkt':>6} "
            f"{'gen CPU%':>8} {'machine%':>8} {'load1':>5}")
    lines = [head]
    for row in rows:
        q, s = row, row.get("server", {})
        lay = q.get("layers", {}).get("tracks", {})
        vids = q.get("videos_per_participant") or {}
        lines.append(
            f"{row['participants']:>4} "
            f"{_fmt(q['join_ms']['p50']):>7}/{_fmt(q['join_ms']['p95']):<8} "
            f"{_fmt(q['first_frame_ms']['p50']):>6}/{_fmt(q['first_frame_ms']['p95']):<7} "
            f"{_fmt(q['loss_pct']['p50'], 2):>5}/{_fmt(q['loss_pct']['p95'], 2)}/"
            f"{_fmt(q['loss_pct']['max'], 2):<6} "
            f"{_fmt(q['delay_ms']['p50']):>6}/{_fmt(q['delay_ms']['p95'])}/"
            f"{_fmt(q['delay_ms']['max']):<7} "
            f"{_fmt(q['jitter_ms']['p95'], 1):>10} "
            f"{_fmt(q['recv_kbps']['p50']):>6}/{_fmt(q['recv_kbps']['p95']):<6} "
            f"{lay.get('q', 0):>5}/{lay.get('h', 0)}/{lay.get('f', 0):<5} "
            f"{_fmt(vids.get('min')):>7}/{_fmt(vids.get('p50'), 1):<6} "
            f"{q['audio_only']['participants']:>6} "
            f"{_fmt(s.get('cpu_pct'), 1):>8} {_fmt(s.get('rss_mb')):>6} "
            f"{_fmt(s.get('cpu_us_per_packet'), 1):>6} "
            f"{_fmt(row.get('loadgen_cpu_pct'), 1):>8} {_fmt(row.get('machine_cpu_pct'), 0):>8} "
            f"{_fmt(row.get('load_average_1m'), 1):>5}")
        if row.get("breaches"):
            lines.append(f"     SLO broken: {'; '.join(row['breaches'])}")
    return "\n".join(lines)


# -- plot -----------------------------------------------------------------------------------------


def plot(rows: list[dict[str, Any]], path: Path, title: str,
         capacity: int | None = None) -> None:
    """Quality against participants: loss, delay p95, receive kbps, server CPU."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["participants"] for r in rows]

    def series(key: str, sub: str) -> list[float]:
        values = [(r.get(key) or {}).get(sub) if key else r.get(sub) for r in rows]
        return [float("nan") if v is None else v for v in values]

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    panels = [
        (axes[0][0], "packet loss %", [("loss_pct", "overall", "overall"),
                                      ("loss_pct", "max", "worst participant")],
         LOSS_SLO_PCT),
        (axes[0][1], "end-to-end delay ms", [("delay_ms", "p50", "p50"),
                                            ("delay_ms", "p95", "p95")], DELAY_SLO_MS),
        (axes[1][0], "receive kbit/s per participant", [("recv_kbps", "p50", "p50"),
                                                        ("recv_kbps", "max", "max")], None),
        (axes[1][1], "CPU % of one core", [("server", "cpu_pct", "server"),
                                          ("", "loadgen_cpu_pct", "load generator")], None),
    ]
    for ax, label, lines, slo in panels:
        for key, sub, name in lines:
            ax.plot(xs, series(key, sub), marker="o", label=name)
        if slo is not None:
            ax.axhline(slo, color="red", linestyle="--", linewidth=1, label="objective")
        if label.startswith("CPU") and rows and rows[0].get("cpu_slo_pct"):
            ax.axhline(rows[0]["cpu_slo_pct"], color="red", linestyle="--", linewidth=1,
                       label="objective")
        if capacity:
            ax.axvline(capacity, color="green", linestyle=":", label="capacity")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("participants")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -- command line ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--participants", type=int, default=10)
    parser.add_argument("--rooms", type=int, default=1)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--ramp", action="store_true", help="grow one room until quality breaks")
    parser.add_argument("--max-participants", type=int, default=60)
    parser.add_argument("--step", type=int, default=4)
    parser.add_argument("--step-duration", type=float, default=RAMP_STEP_S)
    parser.add_argument("--max-time", type=float, default=RAMP_MAX_TIME_S,
                        help="the ramp stops adding participants after this many seconds")
    parser.add_argument("--room-capacity", type=int, default=None, metavar="K",
                        help="start the server with this room capacity; K join, the rest "
                             "must be refused with room-full")
    parser.add_argument("--target", choices=["diemcau", "janus"], default="diemcau",
                        help="janus: the same load against diemcau, then Janus 1.1.2")
    parser.add_argument("--url", default=None, help="an already running diemcau (loopback)")
    parser.add_argument("--workers", type=int, default=2,
                        help="load-generator processes (0: in this process)")
    parser.add_argument("--downlink-kbps", type=int, default=20_000,
                        help="the REMB every participant sends (its downlink)")
    parser.add_argument("--uplink-kbps", type=int, default=20_000,
                        help="the uplink every participant reports, as browsers do (0: none: "
                             "the server then relies on its own estimate)")
    parser.add_argument("--no-tiles", action="store_true",
                        help="send no gallery layout (the server then forwards top layers)")
    parser.add_argument("--server-cores", type=float, default=1.0,
                        help="cores the server can use (one event loop: 1)")
    parser.add_argument("--keep-going", action="store_true",
                        help="ramp: carry on past the first broken step (CPU and memory "
                             "figures up to --max-participants; the verdict is unchanged)")
    parser.add_argument("--max-loss-pct", type=float, default=LOSS_SLO_PCT,
                        help="ramp objective: packet loss at most this")
    parser.add_argument("--max-delay-ms", type=float, default=DELAY_SLO_MS,
                        help="ramp objective: end-to-end delay p95 at most this")
    parser.add_argument("--speakers", type=int, default=3, metavar="K",
                        help="participants who speak (the first K); the others send Opus at "
                             "the level of silence, as a muted browser does; 0: everyone "
                             "(always with --target janus)")
    parser.add_argument("--server-cpu", type=int, default=None, metavar="N",
                        help="pin the server to core N and the load generator to the other "
                             "cores (the capacity of one core)")
    parser.add_argument("--last-n", type=int, default=9, metavar="N",
                        help="videos each participant shows (a gallery page; passed to the "
                             "server as --last-n when it has that option); 0: every video")
    parser.add_argument("--added-delay-ms", type=float, default=0.0,
                        help="validation: publishers stamp frames this much before sending; "
                             "the measured delay must grow by it")
    parser.add_argument("--lose-every", type=int, default=0, metavar="N",
                        help="validation: publishers leave out every Nth video packet (kept "
                             "for retransmission); the server must NACK it and get it as RTX")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
