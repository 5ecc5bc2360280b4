"""A real PostgreSQL 15 for the tests (issue 14): ``initdb`` into a temporary directory, the
server on a free loopback port below the ephemeral range with its unix socket in that directory,
password (scram) authentication over TCP; one server per test session (``postgres`` fixture in
tests/conftest.py), stopped at the end. Each test gets its own schema (``fresh_url``): cheaper
than a database, and the store's tables, trigger and advisory locks stay apart from the others'.

Debian's ``postgresql`` package (installed by ``scripts/setup.sh --test``) puts the binaries in
/usr/lib/postgresql/15/bin. PostgreSQL refuses to run as root: as root the server runs as the
``postgres`` user (or ``nobody``) through ``setpriv``.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from signaling.store import SqliteStore


def _pg_bin() -> Path:
    """Debian's PostgreSQL 15 (bookworm); else the newest installed, or DIEMCAU_TEST_PG_BIN."""
    if "DIEMCAU_TEST_PG_BIN" in os.environ:
        return Path(os.environ["DIEMCAU_TEST_PG_BIN"])
    preferred = Path("/usr/lib/postgresql/15/bin")
    installed = sorted((p for p in Path("/usr/lib/postgresql").glob("*/bin")
                        if p.parent.name.isdigit()), key=lambda p: int(p.parent.name))
    return preferred if preferred.exists() or not installed else installed[-1]


PG_BIN = _pg_bin()
USER = "diemcau"
DATABASE = "diemcau"
START_TIMEOUT_S = 30.0


def _as_user() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that drops root, and the account it drops to."""
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            continue
        # --pdeathsig: a test run killed outright does not leave PostgreSQL running behind it
        # (set after the change of user, which would clear it).
        return ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
                "--clear-groups", "--pdeathsig", "INT", "--"], account
    pytest.fail("running as root and no postgres/nobody account to run PostgreSQL as")


def _die_with_parent() -> None:
    """In the child before exec (not root): SIGINT ("fast" shutdown) when the test run dies."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGINT)


@dataclass
class PostgresServer:
    directory: Path
    port: int
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    proc: subprocess.Popen[bytes] | None = None
    durable: bool = False
    """True: fsync and synchronous commits as in production (benchmarks); tests go without."""
    _schemas: int = 0

    @property
    def url(self) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> None:
        initdb = PG_BIN / "initdb"
        if not initdb.exists():
            pytest.fail(f"PostgreSQL 15 is not installed ({initdb} missing; "
                        "scripts/setup.sh --test installs the postgresql package)")
        prefix, account = _as_user()
        data = self.directory / "data"
        pwfile = self.directory / "pw"
        pwfile.write_text(self.password)
        if account is not None:
            for path in (self.directory, pwfile):
                os.chown(path, account.pw_uid, account.pw_gid)
        subprocess.run([*prefix, str(initdb), "-D", str(data), "-U", USER, "--pwfile", str(pwfile),
                        "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                        "--locale=C.UTF-8", *([] if self.durable else ["--no-sync"])],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.launch()
        self.admin(f"CREATE DATABASE {DATABASE}")

    def launch(self) -> None:
        """Run the server on the initialised data directory (again, after ``stop``)."""
        prefix, _account = _as_user()
        data = self.directory / "data"
        log = self.directory / "postgres.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [*prefix, str(PG_BIN / "postgres"), "-D", str(data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1",
                 "-c", f"unix_socket_directories={self.directory}",
                 *([] if self.durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                                            "-c", "full_page_writes=off"]),
                 "-c", "max_connections=200", "-c", "shared_buffers=32MB"],
                stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=None if prefix else _die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("postgres did not start: " + log.read_text(errors="replace"))
            time.sleep(0.1)

    def _ready(self) -> bool:
        done = subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", str(self.directory),
                               "-p", str(self.port), "-U", USER, "-d", "postgres"], check=False)
        return done.returncode == 0

    def admin(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(host=str(self.directory), port=self.port, user=USER,
                             dbname=database, autocommit=True) as conn:
            conn.execute(sql)  # test-made text

    def fresh_url(self) -> str:
        """A new empty schema, and the store URL whose connections use it."""
        self._schemas += 1
        schema = f"t{os.getpid()}_{self._schemas}"
        self.admin(f"CREATE SCHEMA {schema}", DATABASE)
        return f"{self.url}?options=-csearch_path%3D{schema}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown (SIGTERM waits for clients)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def start_postgres(durable: bool = False) -> PostgresServer:
    from tests.serverproc import free_port  # below the ephemeral range (see there)

    directory = Path(tempfile.mkdtemp(prefix="diemcau-pg-"))  # reachable by the postgres user
    server = PostgresServer(directory, free_port(), durable=durable)
    try:
        server.start()
    except BaseException:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return server


def stop_postgres(server: PostgresServer) -> None:
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)


async def open_store_for(tmp_path: Path, url: str | None) -> SqliteStore:
    """The store a backend-parametrized test uses: the SQLite file ``tmp_path/db.sqlite3`` or
    the PostgreSQL schema at ``url`` (the same on every call: a reopen sees the same data)."""
    if url is None:
        return await SqliteStore.open(tmp_path / "db.sqlite3")
    from signaling.store.pg import PgStore

    return await PgStore.open(url)
