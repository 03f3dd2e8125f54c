"""``/health`` probes the dependencies itself: with no traffic at all, a database, Qdrant server or
embeddings service that goes away shows within one probe interval (``health.interval_s``), named
by what it is, with ``dependency_details`` describing each configured one."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .fixtures_pg import PostgresServer, postgres
from .servers import CoordinatorServer, FakeUpstream, coordinator_settings, free_port, running

__all__ = ["postgres"]  # the fixture

# qdrant-client warns (in a thread) that it cannot ask an unreachable server for its version
pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version:UserWarning")

INTERVAL_S = 0.5  # health.interval_s in these tests


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream("local", ["llama"]).start()
    yield upstream
    upstream.kill()


def settings(fake: FakeUpstream, state: Path, **extra: Any) -> Any:
    return coordinator_settings(
        [{"name": "ollama", "kind": "local", "base_url": fake.base_url}],
        state_dir=str(state),
        health={"interval_s": INTERVAL_S, "timeout_s": 2.0, "failure_threshold": 2},
        **extra,
    )


def health(server: CoordinatorServer) -> dict[str, Any]:
    report: dict[str, Any] = httpx.get(f"{server.url}/health", timeout=5).json()
    return report


def within(seconds: float, check: Callable[[dict[str, Any]], bool], server: CoordinatorServer):
    """The first health report ``check`` accepts within ``seconds``; fails with the last one."""
    deadline = time.monotonic() + seconds
    while True:
        report = health(server)
        if check(report):
            return report
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {report}")
        time.sleep(0.05)


def test_postgres_going_away_shows_without_traffic(postgres: PostgresServer, fake, tmp_path):
    url = postgres.create_database()
    with running(settings(fake, tmp_path, database={"url": url})) as server:
        report = within(5, lambda h: h["dependencies"].get("postgres") == "healthy", server)
        assert "sqlite" not in report["dependencies"]
        # without a key /health shows a URL's host, not its user or database
        host = url.split("@")[1].split("/")[0]
        assert report["dependency_details"]["postgres"] == f"postgres postgresql://{host}"
        postgres.stop()
        try:
            # one probe interval, plus the probe's own connect time
            report = within(
                INTERVAL_S + 1.5, lambda h: h["dependencies"]["postgres"] == "down", server
            )
            assert report["status"] == "degraded"
        finally:
            postgres.start()
        within(15, lambda h: h["dependencies"]["postgres"] == "healthy", server)


def test_an_unusable_sqlite_file_shows_without_traffic(fake, tmp_path):
    with running(settings(fake, tmp_path)) as server:
        report = within(5, lambda h: h["dependencies"].get("sqlite") == "healthy", server)
        database = tmp_path / "telemetry.sqlite3"
        assert "postgres" not in report["dependencies"]
        details = report["dependency_details"]["sqlite"]
        assert details == "sqlite (path hidden) (database.url unset)"  # no key: no path
        for path in tmp_path.glob("telemetry.sqlite3*"):
            path.unlink()
        database.mkdir()  # a directory where the file was: it cannot be opened again
        report = within(INTERVAL_S + 1.0, lambda h: h["dependencies"]["sqlite"] == "down", server)
        assert report["status"] == "degraded"


def test_a_qdrant_server_and_an_embeddings_service_going_away_show_without_traffic(tmp_path):
    embedder = FakeUpstream("embedder", ["nomic-embed-text"]).start()
    local = FakeUpstream("local", ["llama"]).start()
    try:
        qdrant = f"http://127.0.0.1:{free_port()}"  # nothing listens
        extra = {
            "qdrant": {"url": qdrant},
            "embeddings": {"url": embedder.base_url},
        }
        with running(settings(local, tmp_path, **extra)) as server:
            report = within(
                INTERVAL_S + 3,
                lambda h: (
                    h["dependencies"]["qdrant"] == "down"
                    and h["dependencies"]["embeddings"] == "healthy"
                ),
                server,
            )
            assert report["status"] == "degraded"
            assert report["dependency_details"]["qdrant"] == f"server {qdrant}"
            assert report["dependency_details"]["embeddings"].startswith(embedder.url)
            embedder.kill()
            within(INTERVAL_S + 3, lambda h: h["dependencies"]["embeddings"] == "down", server)
    finally:
        embedder.kill()
        local.kill()
