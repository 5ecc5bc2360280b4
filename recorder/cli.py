"""``diemcau archive list|verify|export``: operator commands that work offline on ``--data-dir``.

Wired into ``diemcau/cli.py`` with ``add_archive_commands(commands)`` in ``build_parser`` and
``return run_archive(args)`` for ``args.command == "archive"`` in ``main``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from recorder.archive import list_recordings, verify

__all__ = ["add_archive_commands", "run_archive"]


def add_archive_commands(commands: Any) -> argparse.ArgumentParser:
    """Add ``archive`` to the top-level sub-parsers (``parser.add_subparsers(...)``)."""
    archive = commands.add_parser("archive", help="recordings on this machine (offline)")
    sub = archive.add_subparsers(dest="archive", required=True)
    listing = sub.add_parser("list", help="the recordings and their files")
    listing.add_argument("--data-dir", type=Path, default=Path("./data"))
    listing.add_argument("--json", action="store_true", help="one JSON array")
    listing.set_defaults(archive_handler=archive_list)
    check = sub.add_parser("verify", help="check hashes and manifest chains; exit 1 on damage")
    check.add_argument("id", nargs="?", default=None, help="one recording (default: all)")
    check.add_argument("--data-dir", type=Path, default=Path("./data"))
    check.set_defaults(archive_handler=archive_verify)
    export = sub.add_parser("export", help="one composite MP4 (decodes; offline only)")
    export.add_argument("id")
    export.add_argument("--layout", choices=["grid", "speaker"], default="grid")
    export.add_argument("-o", "--output", type=Path, required=True)
    export.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT (default 1280x720)")
    export.add_argument("--fps", type=int, default=25)
    export.add_argument("--data-dir", type=Path, default=Path("./data"))
    export.set_defaults(archive_handler=archive_export)
    return archive


def run_archive(args: argparse.Namespace) -> int:
    return int(args.archive_handler(args))


def archive_list(args: argparse.Namespace) -> int:
    recordings = list_recordings(args.data_dir)
    if args.json:
        json.dump(recordings, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not recordings:
        print(f"no recordings in {args.data_dir}")
    for rec in recordings:
        print(f"{rec['id']}  room={rec['room']}  state={rec['state']}  files={len(rec['files'])}")
        for f in rec["files"]:
            duration = "?" if f["duration_s"] is None else f"{f['duration_s']:.1f}s"
            print(f"    {f['kind']:5} {f['codec']:5} {duration:>8} {f['bytes']:>12} B  "
                  f"{f['participant']}  {f['path']}")
    return 0


def archive_verify(args: argparse.Namespace) -> int:
    ok, culprit = verify(args.data_dir, args.id)
    if ok:
        print("ok: every file and manifest chain is intact")
        return 0
    print(f"damaged: {culprit}", file=sys.stderr)
    return 1


def archive_export(args: argparse.Namespace) -> int:
    from recorder.export import export_recording  # numpy/decoders only when exporting

    try:
        width, height = (int(part) for part in args.size.lower().split("x", 1))
        result = export_recording(args.data_dir, args.id, args.output, layout=args.layout,
                                  width=width, height=height, fps=args.fps)
    except (ValueError, OSError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {result.path}: {result.duration_s:.1f} s, {len(result.participants)} "
          f"participants, layout {args.layout}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m recorder.cli archive list`` until diemcau/cli.py wires it in."""
    parser = argparse.ArgumentParser(prog="diemcau")
    add_archive_commands(parser.add_subparsers(dest="command", required=True))
    return run_archive(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
