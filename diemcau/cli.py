"""The ``diemcau`` command: ``serve`` runs everything in one process; ``bench`` measures;
``loadtest`` runs synthetic meetings; ``token`` and ``archive`` are the operator's tools.

Run as ``diemcau ...`` (installed) or ``python -m diemcau ...``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from recorder.cli import add_archive_commands, run_archive
from sfu.worker import MediaConfig
from signaling.config import Config
from signaling.control import BootstrapResult
from signaling.eventloop import new_event_loop
from signaling.limits import JOIN_TIMEOUT_S, MAX_UNJOINED_PER_ADDRESS


def port_range(text: str) -> tuple[int, int]:
    try:
        low, high = (int(part) for part in text.split("-", 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH, got {text!r}") from None
    if not 1024 <= low <= high <= 65535:
        raise argparse.ArgumentTypeError(f"port range {text} must lie within 1024-65535")
    return low, high


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diemcau", description="Self-hosted WebRTC meetings")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run signaling, SFU and web client")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--data-dir", type=Path, default=Path("./data"))
    serve.add_argument("--ice-address", action="append", dest="ice_addresses", metavar="ADDR",
                       help="address for media (ICE host candidates); repeatable; default: "
                            "every non-loopback interface")
    serve.add_argument("--rtc-port-range", type=port_range, default=None, metavar="LOW-HIGH",
                       help="UDP ports for media, e.g. 40000-40999 (default: any)")
    serve.add_argument("--ice-server", action="append", dest="ice_servers", default=[],
                       metavar="URL", help="STUN/TURN server (none by default: self-hosted)")
    serve.add_argument("--audio-only-below", type=int, default=2_000_000, metavar="BPS",
                       help="below this estimate a participant gets audio only (default 2000000)")
    serve.add_argument("--audio-only-recover-factor", type=float, default=1.25,
                       help="video returns above threshold x this factor (default 1.25)")
    serve.add_argument("--audio-only-recover-seconds", type=float, default=5.0,
                       help="... held for this long (default 5)")
    serve.add_argument("--tls", choices=["self-signed"], default=None,
                       help="self-signed: make a certificate for a LAN test (in the data dir)")
    serve.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate chain")
    serve.add_argument("--tls-key", type=Path, default=None, help="PEM private key")
    serve.add_argument("--open-rooms", action="store_true",
                       help="anyone may join any room without credentials (closed networks "
                            "and tests only; logged loudly)")
    serve.add_argument("--room-capacity", type=int, default=None, metavar="N",
                       help="capacity of rooms made on the fly with --open-rooms (default 26)")
    serve.add_argument("--allowed-origin", action="append", dest="allowed_origins", default=[],
                       metavar="ORIGIN", help="browser origin allowed on /ws besides the "
                       "server's own, e.g. https://meet.example.org; repeatable")
    serve.add_argument("--metrics-host", default=None, metavar="ADDR",
                       help="serve /metrics only on this address (default 127.0.0.1 when "
                            "--metrics-port is given)")
    serve.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                       help="serve /metrics only on this port, not on the main listener")
    serve.add_argument("--join-timeout", type=float, default=JOIN_TIMEOUT_S, metavar="S",
                       help=f"close a WebSocket that has not joined after S seconds "
                            f"(default {JOIN_TIMEOUT_S:g})")
    serve.add_argument("--max-unjoined-per-address", type=int,
                       default=MAX_UNJOINED_PER_ADDRESS, metavar="N",
                       help=f"WebSockets one address may hold open before they joined "
                            f"(default {MAX_UNJOINED_PER_ADDRESS}; raise for load generators)")
    serve.add_argument("--record-all", action="store_true",
                       help="record every room while anyone is in it (else: rooms with "
                            "auto_record, and recordings started by a host or operator)")
    serve.add_argument("--recording-retention-days", type=float, default=None, metavar="DAYS",
                       help="delete recordings older than DAYS (checked hourly, logged); "
                            "default: keep them")
    serve.add_argument("--log-level", default="info")
    token = commands.add_parser("token", help="join tokens")
    token_commands = token.add_subparsers(dest="token", required=True)
    create = token_commands.add_parser("create", help="make a signed join token")
    create.add_argument("--data-dir", type=Path, default=Path("./data"))
    create.add_argument("--room", required=True)
    create.add_argument("--name", required=True, help="display name")
    create.add_argument("--identity", default=None)
    create.add_argument("--role", default="member",
                        choices=["host", "member", "guest", "endpoint", "recorder"])
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
    loadtest = commands.add_parser(
        "loadtest", help="synthetic meetings: quality under load, room capacity, room limit")
    from loadtest.report import add_arguments as add_loadtest_arguments

    add_loadtest_arguments(loadtest)
    add_archive_commands(commands)
    return parser


def serve(args: argparse.Namespace) -> None:
    from aiohttp import web

    from signaling.app import create_app

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    private_dir(args.data_dir)
    tls = bool(args.tls_cert or args.tls_key or args.tls)
    config = Config(
        host=args.host, port=args.port, data_dir=args.data_dir, open_rooms=args.open_rooms,
        open_room_capacity=args.room_capacity, allowed_origins=tuple(args.allowed_origins),
        metrics_host=args.metrics_host if args.metrics_port else None,
        metrics_port=args.metrics_port, tls=tls, join_timeout_s=args.join_timeout,
        max_unjoined_per_address=args.max_unjoined_per_address, record_all=args.record_all,
        recording_retention_days=args.recording_retention_days,
        media=MediaConfig(
            ice_addresses=tuple(args.ice_addresses) if args.ice_addresses else None,
            port_range=args.rtc_port_range, ice_servers=tuple(args.ice_servers),
            audio_only_below_bps=args.audio_only_below,
            audio_only_recover_factor=args.audio_only_recover_factor,
            audio_only_recover_s=args.audio_only_recover_seconds,
        ),
    )
    ssl_context = None
    if tls:
        from signaling.tls import self_signed, server_context

        if args.tls == "self-signed":
            cert, key = self_signed(args.data_dir, [args.host, *(args.ice_addresses or [])])
        elif args.tls_cert and args.tls_key:
            cert, key = args.tls_cert, args.tls_key
        else:
            raise SystemExit("diemcau: give both --tls-cert and --tls-key (or --tls self-signed)")
        ssl_context = server_context(cert, key)
    base = f"{'https' if ssl_context else 'http'}://{args.host}:{args.port}"

    def announce(result: BootstrapResult) -> None:
        # Printed once, on the first start: only the hash is stored.
        print(f"diemcau: first start. Operator account {result.username!r}, password "
              f"{result.password}  (shown once; console: {base}/console)", flush=True)
        print(f"diemcau: demo room ready: {base}{result.join_path}&name=YourName", flush=True)

    if args.open_rooms:
        print("diemcau: WARNING --open-rooms: anyone who reaches this server joins any room "
              f"without credentials; try {base}/?room=demo&name=YourName", flush=True)
    loop = new_event_loop()
    print(f"diemcau: listening on {base}", flush=True)
    from signaling.web_security import RedactingAccessLogger

    web.run_app(create_app(config, announce), host=args.host, port=args.port, loop=loop,
                ssl_context=ssl_context, print=None, shutdown_timeout=10,
                access_log_class=RedactingAccessLogger)


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
    )
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
    elif args.command == "bench":
        from bench.forward import run_cli

        return run_cli(args)
    elif args.command == "archive":
        return run_archive(args)
    elif args.command == "loadtest":
        from loadtest.run import run_cli as run_loadtest

        return run_loadtest(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
