"""The ``diemcau`` command: ``serve`` runs everything in one process; ``bench`` measures;
``loadtest`` runs synthetic meetings; ``token`` and ``archive`` are the operator's tools.

Run as ``diemcau ...`` (installed) or ``python -m diemcau ...``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from diemcau.ops import add_ops_commands, run_ops
from recorder.cli import add_archive_commands, run_archive
from sfu.policy.last_n import DEFAULT_LAST_N, MAX_LAST_N
from signaling.control import BootstrapResult
from signaling.eventloop import new_event_loop
from signaling.limits import JOIN_TIMEOUT_S, MAX_UNJOINED_PER_ADDRESS
from signaling.turn import add_turn_arguments


def add_serve_options(serve: argparse.ArgumentParser) -> None:
    """The serve flags. No defaults here (the parser's are SUPPRESS): only the flags given
    reach signaling/settings.py, which merges them over the file, the environment and its
    defaults, and validates the result naming the key."""
    serve.add_argument("--config", type=Path, metavar="FILE",
                       help="TOML file of settings (keys as these flags, with underscores); "
                            "also DIEMCAU_CONFIG. Precedence: flags > DIEMCAU_* env > file")
    serve.add_argument("--host")
    serve.add_argument("--port")
    serve.add_argument("--data-dir")
    serve.add_argument("--ice-address", action="append", dest="ice_addresses", metavar="ADDR",
                       help="address for media (ICE host candidates); repeatable; default: "
                            "every non-loopback interface")
    serve.add_argument("--rtc-port-range", metavar="LOW-HIGH",
                       help="UDP ports for media, e.g. 40000-40999 (default: any)")
    serve.add_argument("--ice-server", action="append", dest="ice_servers",
                       metavar="URL", help="STUN/TURN server (none by default: self-hosted)")
    serve.add_argument("--audio-only-below", metavar="BPS",
                       help="below this estimate a participant gets audio only (default 2000000)")
    serve.add_argument("--audio-only-recover-factor",
                       help="video returns above threshold x this factor (default 1.25)")
    serve.add_argument("--audio-only-recover-seconds",
                       help="... held for this long (default 5)")
    serve.add_argument("--last-n", metavar="N",
                       help="videos each participant receives, 0 for all (default "
                            f"{DEFAULT_LAST_N}: a 3x3 gallery page; at most {MAX_LAST_N})")
    serve.add_argument("--room-last-n", action="append", dest="room_last_n",
                       metavar="ROOM=N", help="--last-n for one room (repeatable)")
    serve.add_argument("--tls", choices=["self-signed"],
                       help="self-signed: make a certificate for a LAN test (in the data dir)")
    serve.add_argument("--tls-cert", help="PEM certificate chain")
    serve.add_argument("--tls-key", help="PEM private key")
    serve.add_argument("--open-rooms", action="store_true",
                       help="anyone may join any room without credentials (closed networks "
                            "and tests only; logged loudly)")
    serve.add_argument("--room-capacity", metavar="N",
                       help="capacity of rooms made on the fly with --open-rooms (default 26)")
    serve.add_argument("--allowed-origin", action="append", dest="allowed_origins",
                       metavar="ORIGIN", help="browser origin allowed on /ws besides the "
                       "server's own, e.g. https://meet.example.org; repeatable")
    serve.add_argument("--metrics-host", metavar="ADDR",
                       help="serve /metrics only on this address (default 127.0.0.1 when "
                            "--metrics-port is given)")
    serve.add_argument("--metrics-port", metavar="PORT",
                       help="serve /metrics only on this port, not on the main listener")
    serve.add_argument("--join-timeout", metavar="S",
                       help=f"close a WebSocket that has not joined after S seconds "
                            f"(default {JOIN_TIMEOUT_S:g})")
    serve.add_argument("--max-unjoined-per-address", metavar="N",
                       help=f"WebSockets one address may hold open before they joined "
                            f"(default {MAX_UNJOINED_PER_ADDRESS}; raise for load generators)")
    serve.add_argument("--record-all", action="store_true",
                       help="record every room while anyone is in it (else: rooms with "
                            "auto_record, and recordings started by a host or operator)")
    serve.add_argument("--recording-retention-days", metavar="DAYS",
                       help="delete recordings older than DAYS (checked hourly, logged); "
                            "default: keep them")
    serve.add_argument("--store", metavar="URL",
                       help="keep accounts, rooms and records in this PostgreSQL database "
                            "(postgresql://user@host:5432/db), shared by every node; default: "
                            "the data directory's SQLite file")
    serve.add_argument("--redis", metavar="URL",
                       help="join a cluster through this Redis (redis://host:6379/0): rooms "
                            "placed on one node, exact room limits across nodes")
    serve.add_argument("--node-address", metavar="URL",
                       help="with --redis: this node's base URL as browsers reach it "
                            "(default: the listener's own http[s]://host:port)")
    serve.add_argument("--node-id", help="with --redis: a stable node id (default: random "
                                         "per start)")
    serve.add_argument("--audit-retention-days", metavar="DAYS",
                       help="prune audit trail rows older than DAYS (default 365)")
    serve.add_argument("--workers", metavar="N",
                       help="SFU worker processes, each owning whole rooms (default: the "
                            "number of cores); 0 or 1: media in the signaling process")
    add_turn_arguments(serve)
    serve.add_argument("--relay-source", action="append", dest="relay_sources", metavar="ORIGIN",
                       help="a far server hosts may relay from (https://tinh.example.vn); "
                            "repeatable; operators may relay from any")
    serve.add_argument("--reconnect-grace", metavar="S",
                       help="a participant whose connection drops keeps its seat S seconds "
                            "for automatic reconnection (default 15; 0: leave at once)")
    serve.add_argument("--log-level", help="debug, info (default), warning, error")
    serve.add_argument("--log-format", choices=["text", "json"],
                       help="json: one object a line, with room and participant ids")
    serve.add_argument("--webhook-url", action="append", dest="webhook_urls", metavar="URL",
                       help="POST signed events here (secret: webhook_secret in the file or "
                            "DIEMCAU_WEBHOOK_SECRET); repeatable")
    serve.add_argument("--support-lead-minutes", metavar="MIN",
                       help="tell support staff of a scheduled meeting this long before it "
                            "starts (default 60)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diemcau", description="Self-hosted WebRTC meetings")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run signaling, SFU and web client",
                                argument_default=argparse.SUPPRESS)
    add_serve_options(serve)
    add_ops_commands(commands, add_serve_options)
    token = commands.add_parser("token", help="join tokens")
    token_commands = token.add_subparsers(dest="token", required=True)
    create = token_commands.add_parser("create", help="make a signed join token")
    create.add_argument("--data-dir", type=Path, default=Path("./data"))
    from signaling.ops_cli import add_store_argument

    add_store_argument(create)
    create.add_argument("--room", required=True)
    create.add_argument("--name", required=True, help="display name")
    create.add_argument("--identity", default=None)
    create.add_argument("--role", default="member",
                        choices=["host", "member", "guest", "endpoint", "recorder", "relay"])
    create.add_argument("--ttl", type=float, default=6 * 3600, help="seconds (default 6 h)")
    create.add_argument("--no-publish", action="store_true")
    create.add_argument("--no-subscribe", action="store_true")
    create.add_argument("--url", default="http://127.0.0.1:8080")
    bench = commands.add_parser("bench", help="benchmarks")
    bench_commands = bench.add_subparsers(dest="bench", required=True)
    forward = bench_commands.add_parser("forward", help="CPU per forwarded packet")
    forward.add_argument("--subscribers", default="1,4,16,64")
    forward.add_argument("--duration", type=float, default=10.0)
    forward.add_argument("--json", type=Path, default=None)
    from bench.forward import add_against_arguments

    add_against_arguments(forward)
    from bench.recording import add_arguments as add_bench_recording_arguments

    add_bench_recording_arguments(bench_commands.add_parser(
        "recording", help="server CPU recorded vs not; recorder memory under a slow disk"))
    from bench.workers import add_arguments as add_bench_workers_arguments

    add_bench_workers_arguments(bench_commands.add_parser(
        "workers", help="many 10-person rooms: forwarded packets/s, 1 process vs N workers"))
    loadtest = commands.add_parser(
        "loadtest", help="synthetic meetings: quality under load, room capacity, room limit")
    from loadtest.report import add_arguments as add_loadtest_arguments

    add_loadtest_arguments(loadtest)
    add_archive_commands(commands)
    from signaling.ops_cli import add_ops_commands as add_report_commands

    add_report_commands(commands)  # report daily, audit [verify] (issue 13)
    return parser


def serve(args: argparse.Namespace) -> None:
    from sfu.memtune import tune_allocator

    tune_allocator()  # glibc's options, before any thread starts (sfu/memtune.py)
    from aiohttp import web

    from signaling import settings as settings_module
    from signaling.app import create_app
    from signaling.logsetup import configure_logging
    from signaling.ops import RELOAD, Reloader

    flags = {key: value for key, value in vars(args).items() if key not in ("command", "config")}
    try:
        loaded = settings_module.load(flags, config_file=getattr(args, "config", None))
    except settings_module.ConfigError as exc:
        raise SystemExit(f"diemcau: {exc}") from None
    settings = loaded.settings
    configure_logging(settings.log_level, settings.log_format)
    config = settings_module.to_config(settings)
    private_dir(config.data_dir)
    if config.workers > 1 and config.media.port_range is not None:
        from sfu.plane_pool import split_port_range

        try:
            split_port_range(config.media.port_range, config.workers)
        except ValueError as exc:
            raise SystemExit(f"diemcau: {exc}; widen --rtc-port-range or lower --workers") from None
    ssl_context = None
    if config.tls:
        from signaling.tls import self_signed, server_context

        if settings.tls == "self-signed":
            cert, key = self_signed(config.data_dir, [settings.host, *settings.ice_addresses])
        else:
            assert settings.tls_cert and settings.tls_key  # checked by settings.load
            cert, key = Path(settings.tls_cert), Path(settings.tls_key)
        ssl_context = server_context(cert, key)
    base = f"{'https' if ssl_context else 'http'}://{settings.host}:{settings.port}"

    def announce(result: BootstrapResult) -> None:
        # Printed once, on the first start: only the hash is stored.
        print(f"diemcau: first start. Operator account {result.username!r}, password "
              f"{result.password}  (shown once; console: {base}/console)", flush=True)
        # No name in the link: the page asks each person for theirs (issue 12).
        print(f"diemcau: demo room ready: {base}{result.join_path}", flush=True)

    if settings.open_rooms:
        print("diemcau: WARNING --open-rooms: anyone who reaches this server joins any room "
              f"without credentials; try {base}/?room=demo", flush=True)
    loop = new_event_loop()
    print(f"diemcau: listening on {base}", flush=True)
    from sfu.native import describe

    where = " (this process; each media worker logs its own)" if config.workers > 1 else ""
    print(f"diemcau: media fan-out: {describe()}{where}", flush=True)
    from signaling.web_security import RedactingAccessLogger

    app = create_app(config, announce)
    # SIGHUP re-reads the file and the environment; the flags given stay as they were.
    app[RELOAD] = Reloader(settings, lambda: settings_module.load(
        flags, config_file=loaded.file).settings)
    from sfu.gctune import tune_for_forwarding

    tune_for_forwarding()  # imports and the app built: frozen, never rescanned (sfu/gctune.py)
    from signaling.store import StoreError

    try:
        web.run_app(app, host=settings.host, port=settings.port, loop=loop,
                    ssl_context=ssl_context, print=None, shutdown_timeout=10,
                    access_log_class=RedactingAccessLogger)
    except StoreError as exc:  # --store unreachable, refused, or not a database we can use
        raise SystemExit(f"diemcau: {exc}") from None


def private_dir(path: Path) -> None:
    """The data dir holds password hashes, the signing key and addresses: owner only (0700).
    An existing one that others may read is tightened, and said so."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        path.chmod(0o700)
        logging.getLogger(__name__).warning("data dir %s was mode %o; now 0700", path, mode)


def token_create_cli(args: argparse.Namespace) -> int:
    from signaling.control import token_create

    token, path = token_create(
        args.data_dir, args.room, args.name, identity=args.identity, role=args.role,
        ttl_s=args.ttl, can_publish=not args.no_publish, can_subscribe=not args.no_subscribe,
        store_url=args.store,
    )
    from signaling.ops_cli import audit_offline

    audit_offline(args.data_dir, "cli.token_create", args.room, args.identity or args.name,
                  {"role": args.role, "ttl_s": args.ttl}, store_url=args.store)
    print(token)
    print(args.url.rstrip("/") + path)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        serve(args)
    elif args.command == "token":
        return token_create_cli(args)
    elif args.command == "bench" and args.bench == "recording":
        from bench.recording import run_cli as run_bench_recording

        return run_bench_recording(args)
    elif args.command == "bench" and args.bench == "workers":
        from bench.workers import run_cli as run_bench_workers

        return run_bench_workers(args)
    elif args.command == "bench":
        from bench.forward import run_cli

        return run_cli(args)
    elif args.command in ("config", "backup"):
        return run_ops(args)
    elif args.command == "archive":
        return run_archive(args)
    elif args.command in ("report", "audit"):
        from signaling.ops_cli import run_audit, run_report

        return run_report(args) if args.command == "report" else run_audit(args)
    elif args.command == "loadtest":
        from loadtest.run import run_cli as run_loadtest

        return run_loadtest(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
