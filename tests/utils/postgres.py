"""A real PostgreSQL for the tests.

Order of preference: ``CAPANDEX_TEST_POSTGRES`` (a server URL), the machine's server on
127.0.0.1:5432 (trust auth), or a throw-away cluster made here with ``initdb``/``pg_ctl`` (run as
an unprivileged user when the tests run as root; ``CAPANDEX_TEST_POSTGRES=throwaway`` forces it).
Each test session gets its own database with Supabase's roles and ``auth.uid()``
(tests/sql/supabase_shim.sql) and every committed migration applied in order (as a deployed
project got its schema), and drops it at the end, so parallel runs never see each other's rows.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path

import psycopg

from tests.utils.http_server import free_port

ROOT = Path(__file__).resolve().parents[2]
SHIM = ROOT / "tests" / "sql" / "supabase_shim.sql"
MIGRATIONS = sorted((ROOT / "supabase" / "migrations").glob("*.sql"))


class PostgresUnavailable(RuntimeError):
    pass


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class ThrowawayCluster:
    """initdb + pg_ctl in a temporary directory, on a free port; stopped and removed on close."""

    def __init__(self) -> None:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not (initdb and pg_ctl):
            raise PostgresUnavailable("no PostgreSQL server reachable and no initdb/pg_ctl installed")
        self.pg_ctl = pg_ctl
        self.dir = Path(tempfile.mkdtemp(prefix="capandex-pg-"))
        self.port = free_port()
        self.user = None if os.geteuid() != 0 else _unprivileged_user()
        if self.user:
            shutil.chown(self.dir, user=self.user)
        self._run([initdb, "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres", "--no-sync"])
        self._run([pg_ctl, "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", "-o",
                   f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start"])
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, cmd: list[str]) -> None:
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)

    def close(self) -> None:
        self._run([self.pg_ctl, "-D", str(self.dir / "data"), "-m", "immediate", "stop"])
        shutil.rmtree(self.dir, ignore_errors=True)


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PostgresUnavailable("running as root and no unprivileged user to run initdb as")


def server_url() -> tuple[str, ThrowawayCluster | None]:
    """A URL of a server we may create databases on (and the cluster to close, if we made one)."""
    url = os.environ.get("CAPANDEX_TEST_POSTGRES")
    if url and url != "throwaway":
        return url, None
    if url != "throwaway" and _reachable("127.0.0.1", 5432):
        user = os.environ.get("PGUSER") or pwd.getpwuid(os.geteuid()).pw_name
        return f"postgresql://{user}@127.0.0.1:5432/test", None
    cluster = ThrowawayCluster()
    return cluster.url, cluster


def create_test_database(server: str, scripts: Iterable[str] | None = None) -> str:
    """A fresh database with the Supabase shim and ``scripts`` applied, each in its own transaction
    (default: every file of supabase/migrations in version order, as ``supabase db push`` applies
    them); returns its URL. ``server`` may be the URL of any database on the server."""
    name = f"capandex_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = server.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SHIM.read_text())
        for script in (m.read_text() for m in MIGRATIONS) if scripts is None else scripts:
            conn.execute(script)  # several statements, one query: an implicit transaction
    return url


def drop_database(server: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
