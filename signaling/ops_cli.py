"""``diemcau report daily`` and ``diemcau audit [verify]``: operator commands that read the
store in ``--data-dir`` (safe while the server runs: SQLite WAL lets readers in beside it), or
the PostgreSQL store given by ``--store``/DIEMCAU_STORE."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from signaling.auth import load_or_create_secret
from signaling.journal import verify_audit
from signaling.report import DEFAULT_UTC_OFFSET_MIN, daily_report, parse_day
from signaling.report_render import FORMATS, render
from signaling.store import DB_FILE, SqliteStore, Store, StoreError, open_store
from signaling.store.journal_models import AuditEntry, AuditRow, Detail
from signaling.store.locate import check_store_url


def add_ops_commands(commands: Any) -> None:
    report = commands.add_parser("report", help="usage and problem reports")
    kinds = report.add_subparsers(dest="report", required=True)
    daily = kinds.add_parser("daily", help="one day's meetings, participants and problems")
    daily.add_argument("--data-dir", type=Path, default=Path("./data"))
    add_store_argument(daily)
    daily.add_argument("--date", type=report_day, default=None, metavar="YYYY-MM-DD",
                       help="the local day (default: today)")
    daily.add_argument("--format", choices=FORMATS, default="md")
    daily.add_argument("--utc-offset", type=int, default=DEFAULT_UTC_OFFSET_MIN,
                       metavar="MIN", help="local time zone in minutes east of UTC "
                       f"(default {DEFAULT_UTC_OFFSET_MIN}, Vietnam)")
    daily.add_argument("--output", "-o", type=Path, default=None,
                       help="write to this file (default: standard output)")
    audit = commands.add_parser("audit", help="the audit trail: list, or verify its chain")
    audit.add_argument("--data-dir", type=Path, default=Path("./data"))
    add_store_argument(audit)
    audit.add_argument("--since", type=since_time, default=None, metavar="WHEN",
                       help="YYYY-MM-DD[THH:MM] (UTC) or an age like 90m, 24h, 7d")
    audit.add_argument("--room", default=None)
    audit.add_argument("--actor", default=None)
    audit.add_argument("--limit", type=int, default=1000)
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    actions = audit.add_subparsers(dest="audit", required=False)
    verify = actions.add_parser("verify", help="walk the hash chain; exit 1 if broken")
    verify.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)


def report_day(text: str) -> dt.date:
    try:
        return parse_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def since_time(text: str) -> float:
    if match := re.fullmatch(r"(\d+)([mhd])", text):
        return time.time() - int(match[1]) * {"m": 60, "h": 3600, "d": 86400}[match[2]]
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD[THH:MM] or 24h/7d, got "
                                         f"{text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    """``--store URL`` for a command that reads or writes the store offline (default: the
    DIEMCAU_STORE environment variable, as for ``serve``; else the data directory's file)."""
    parser.add_argument("--store", default=os.environ.get("DIEMCAU_STORE") or None,
                        metavar="URL", help="the server's PostgreSQL store (default: "
                        "$DIEMCAU_STORE, else the SQLite file in --data-dir)")


async def _open(data_dir: Path, store_url: str | None = None) -> Store:
    if store_url is not None:
        try:
            return await open_store(data_dir, check_cli_url(store_url))
        except StoreError as exc:
            raise SystemExit(f"diemcau: {exc}") from None
    path = data_dir / DB_FILE
    if not path.exists():
        raise SystemExit(f"diemcau: no store at {path} (see --data-dir)")
    return await SqliteStore.open(path)


def run_report(args: argparse.Namespace) -> int:
    async def build() -> str:
        store = await _open(args.data_dir, args.store)
        try:
            now = time.time()
            tz = dt.timezone(dt.timedelta(minutes=args.utc_offset))
            day = args.date or dt.datetime.fromtimestamp(now, tz).date()
            report = await daily_report(store, day, now, args.utc_offset)
        finally:
            await store.close()
        return await asyncio.to_thread(render, report, args.format)

    text = asyncio.run(build())
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def run_audit(args: argparse.Namespace) -> int:
    if args.audit == "verify":
        return asyncio.run(_verify(args.data_dir, args.store))
    rows = asyncio.run(_list(args))
    for row in reversed(rows):  # oldest first, like a log
        print(format_row(row, args.json))
    return 0


async def _list(args: argparse.Namespace) -> list[AuditRow]:
    store = await _open(args.data_dir, args.store)
    try:
        return await store.list_audit(since=args.since, room=args.room, actor=args.actor,
                                      limit=args.limit)
    finally:
        await store.close()


async def _verify(data_dir: Path, store_url: str | None) -> int:
    store = await _open(data_dir, store_url)
    try:
        walk = await verify_audit(store)
    finally:
        await store.close()
    for problem in walk.problems:
        print(f"BROKEN {problem}")
    if walk.problems:
        print(f"audit trail: {len(walk.problems)} problem(s) in {walk.rows} rows")
        return 1
    print(f"audit trail intact: {walk.rows} rows (from #{walk.first_seq}), head {walk.head}")
    return 0


def format_row(row: AuditRow, as_json: bool) -> str:
    if as_json:
        return msgspec.json.encode(row).decode()
    when = dt.datetime.fromtimestamp(row.at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    where = f" [{row.room}]" if row.room else ""
    target = f" {row.target}" if row.target else ""
    detail = "" if row.detail == "{}" else f" {row.detail}"
    return (f"#{row.seq} {when}Z {row.actor} {row.action}{where}{target} from "
            f"{row.address or '-'}: {row.outcome}{detail}")


def audit_offline(data_dir: Path, action: str, room: str, target: str, detail: Detail,
                  store_url: str | None = None) -> None:
    """An act of the command line (a join token signed offline) on the audit trail, if the data
    directory has a store yet, or on the shared store (who: the local user running the
    command)."""
    if store_url is None and not (data_dir / DB_FILE).exists():
        return

    try:
        user = getpass.getuser()
    except Exception:  # no name for this uid (a container)
        user = "unknown"

    async def append() -> None:
        store = await (_open(data_dir, store_url) if store_url is not None
                       else SqliteStore.open(data_dir / DB_FILE))
        try:
            await store.append_audit([AuditEntry(
                at=time.time(), actor=f"cli:{user}", action=action, room=room,
                target=target, address="local", detail=detail)])
        finally:
            await store.close()

    asyncio.run(append())


def check_cli_url(url: str) -> str:
    try:
        return check_store_url(url)
    except ValueError as exc:
        raise SystemExit(f"diemcau: --store: {exc}") from None


def networked_signing(data_dir: Path, store_url: str, room: str) -> tuple[bytes, str | None]:
    """For ``diemcau token create --store``: the secret the nodes sign with and the room's
    instance, from the shared store (a data directory's own secret would not be accepted)."""
    async def read() -> tuple[bytes, str | None]:
        store = await _open(data_dir, store_url)
        try:
            secret = await store.signing_secret(  # type: ignore[attr-defined]
                load_or_create_secret(data_dir))
            stored = await store.find_room(room)
            return secret, None if stored is None else stored.instance
        finally:
            await store.close()
    return asyncio.run(read())
