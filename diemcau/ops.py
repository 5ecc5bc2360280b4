"""``diemcau config check`` and ``diemcau backup``: the operator's service tools (issue 13)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path


def add_ops_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                     add_serve_options: Callable[[argparse.ArgumentParser], None]) -> None:
    config = commands.add_parser("config", help="settings: check a config file")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser(
        "check", argument_default=argparse.SUPPRESS,
        help="validate the settings (file, DIEMCAU_* environment, flags) and print the "
             "effective value of each with its source")
    add_serve_options(check)
    backup = commands.add_parser(
        "backup", help="a consistent copy of the store, safe while the server runs "
                       "(SQLite online backup)")
    backup.add_argument("dest", type=Path,
                        help="file to write, or a directory (gets diemcau-<UTC time>.sqlite3)")
    backup.add_argument("--data-dir", type=Path, default=None,
                        help="the server's data directory (default: from the config, "
                             "./data)")
    backup.add_argument("--config", type=Path, default=None, metavar="FILE")
    backup.add_argument("--store", default=None, metavar="URL",
                        help="the server's --store (default: from the config or DIEMCAU_STORE); "
                             "a PostgreSQL store is backed up with pg_dump, not here")


def run_ops(args: argparse.Namespace) -> int:
    from signaling import settings as settings_module

    if args.command == "config":
        flags = {k: v for k, v in vars(args).items()
                 if k not in ("command", "config_command", "config")}
        try:
            loaded = settings_module.load(flags, config_file=getattr(args, "config", None))
        except settings_module.ConfigError as exc:
            print(f"diemcau: {exc}", file=sys.stderr)
            return 2
        print(settings_module.describe(loaded))
        print("# ok")
        return 0
    data_dir, store_url = args.data_dir, args.store
    if data_dir is None or store_url is None:
        try:
            settings = settings_module.load({}, config_file=args.config).settings
        except settings_module.ConfigError as exc:
            print(f"diemcau: {exc}", file=sys.stderr)
            return 2
        data_dir = data_dir or Path(settings.data_dir)
        store_url = store_url or settings.store
    if store_url is not None:
        from signaling.backup import pg_dump_advice

        print(pg_dump_advice(store_url), file=sys.stderr)
        return 2
    from signaling.backup import backup_store

    try:
        result = backup_store(data_dir, args.dest, now=time.time())
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"diemcau: backup failed: {exc}", file=sys.stderr)
        return 1
    print(f"diemcau: backup of {result.source} written to {result.dest}: {result.pages} pages, "
          f"schema version {result.schema_version}, {result.rows} rows")
    return 0
