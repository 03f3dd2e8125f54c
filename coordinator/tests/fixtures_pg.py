"""A real, throwaway PostgreSQL server for tests: ``initdb`` into a temporary directory, started
on a free port (and a Unix socket in that directory), stoppable and restartable for fault tests.

PostgreSQL refuses to run as root; as root the server runs as ``nobody`` (via ``setpriv``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import free_port

__all__ = ["PostgresServer", "find_bindir", "postgres"]


def find_bindir() -> Path | None:
    """Where initdb and pg_ctl are: pg_config's bindir, Debian's layout, or $PATH."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        result = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    candidates += [Path(p) for p in versions]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    return None


class PostgresServer:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="hydra-pg-"))
        self.data = self.base / "data"
        self.socket_dir = self.base / "sock"
        self.logfile = self.base / "postgres.log"
        self.user: str | None = "nobody" if os.geteuid() == 0 else None
        self.running = False

    def _run(self, *args: str) -> None:
        command = [str(a) for a in args]
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            command = [
                "setpriv",
                f"--reuid={entry.pw_uid}",
                f"--regid={entry.pw_gid}",
                "--clear-groups",
                *command,
            ]
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, cwd=self.base, timeout=120
        )
        if result.returncode != 0:
            log = self.logfile.read_text() if self.logfile.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}\n{log[-3000:]}"
            )

    def init(self) -> PostgresServer:
        self.socket_dir.mkdir()
        self.base.chmod(0o755)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in (self.base, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            self.bindir / "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        return self

    def start(self, *, durable: bool = False) -> None:
        """Start (again); ``durable`` keeps fsync on (benchmarks), tests run without it."""
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            self.bindir / "pg_ctl", "-D", str(self.data), "-l", str(self.logfile),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        self._run(self.bindir / "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def socket_url(self, database: str = "postgres") -> str:
        """The peer-auth style the NixOS module uses: no host, a socket directory."""
        return f"postgresql:///{database}?host={self.socket_dir}&port={self.port}&user=postgres"

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"hydra_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def query(self, url: str, sql: str) -> list[tuple[object, ...]]:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            return list(conn.execute(sql).fetchall())

    def destroy(self) -> None:
        if self.running:
            with contextlib.suppress(RuntimeError):
                self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        pytest.fail(
            "PostgreSQL server binaries (initdb, pg_ctl) are not installed; tests/run installs them"
        )
    server = PostgresServer(bindir).init()
    server.start()
    try:
        yield server
    finally:
        server.destroy()
