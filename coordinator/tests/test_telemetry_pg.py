"""Telemetry against a real PostgreSQL server (started by the test): outages, kill -9,
concurrent migrations, stats."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from hydra_coordinator.telemetry.db import PostgresDatabase, migrations

from .fixtures_pg import PostgresServer, postgres
from .servers import FakeUpstream, free_port, running, wait_http
from .telemetry_helpers import (
    chat,
    events,
    seed_spool_with_malformed_lines,
    telemetry_settings,
    wait_for,
)

__all__ = ["postgres"]  # the fixture

pytestmark = pytest.mark.needs_server


@pytest.fixture(scope="module")
def fake():
    upstream = FakeUpstream("local", ["llama"]).start()
    yield upstream
    upstream.kill()


def count(postgres: PostgresServer, url: str) -> tuple[int, int]:
    try:
        ((total, distinct),) = postgres.query(
            url, "SELECT count(*), count(DISTINCT request_id) FROM telemetry"
        )
    except Exception:  # not migrated yet, or the server is down
        return -1, -1
    return int(total), int(distinct)


def ids_in(postgres: PostgresServer, url: str) -> set[str]:
    return {str(row[0]) for row in postgres.query(url, "SELECT request_id FROM telemetry")}


def test_nothing_is_lost_while_postgres_is_down(postgres, fake, tmp_path):
    url = postgres.create_database()
    settings = telemetry_settings(fake, state_dir=str(tmp_path), database={"url": url})
    n, m = 20, 30
    with running(settings) as server:
        ids = [chat(server.url, stream=i % 2 == 0) for i in range(n)]
        wait_for(lambda: count(postgres, url) == (n, n), what=f"{n} rows")
        assert httpx.get(f"{server.url}/health").json()["dependencies"]["postgres"] == "healthy"
        postgres.stop()
        try:
            ids += [chat(server.url, stream=i % 2 == 0) for i in range(m)]
            health = wait_for(
                lambda: (
                    (h := httpx.get(f"{server.url}/health").json())["dependencies"]["postgres"]
                    == "down"
                    and h
                ),
                what="postgres down in /health",
            )
            assert health["status"] == "degraded"
        finally:
            postgres.start()
        wait_for(lambda: count(postgres, url) == (n + m, n + m), timeout=30, what="n+m rows")
        assert ids_in(postgres, url) == set(ids)
        assert events(server.url, "written") + events(server.url, "replayed") == n + m
        assert events(server.url, "replayed") >= 1
        wait_for(
            lambda: (
                httpx.get(f"{server.url}/health").json()["dependencies"]["postgres"] == "healthy"
            ),
            what="postgres healthy again",
        )


def _serve(config: Path, state: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.Popen(
        [sys.executable, "-m", "hydra_coordinator", "serve", "--config", str(config)],
        env={**env, "STATE_DIRECTORY": str(state)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_kill_9_under_load_loses_nothing_acknowledged(postgres, fake, tmp_path):
    url = postgres.create_database()
    port = free_port()
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "listen": {"port": port},
                "backends": [{"name": "ollama", "kind": "local", "base_url": fake.base_url}],
                "database": {"url": url},
                # slow flushes: at the kill, answered requests are only in the spool
                "telemetry": {"flush_interval_s": 5.0, "batch_size": 100000},
                "log": {"level": "warning", "access": False},
            }
        )
    )
    base = f"http://127.0.0.1:{port}"
    process = _serve(config, tmp_path / "state")
    acknowledged: list[str] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                acknowledged.append(chat(base, f"w{worker} #{i}", stream=i % 3 == 0, timeout=5))
            except Exception:  # the server is gone
                if stop.is_set() or process.poll() is not None:
                    return

    try:
        wait_http(f"{base}/health")
        threads = [threading.Thread(target=load, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(acknowledged) >= 200, timeout=60, what="200 answers")
        process.send_signal(signal.SIGKILL)
        process.wait()
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        answered = set(acknowledged)
        assert len(answered) == len(acknowledged) >= 200
        assert len(ids_in(postgres, url) & answered) < len(answered)  # some only in the spool
        process = _serve(config, tmp_path / "state")  # replays the spool
        wait_http(f"{base}/health")
        wait_for(
            lambda: answered <= ids_in(postgres, url), timeout=30, what="every answered request"
        )
        total, distinct = count(postgres, url)
        assert total == distinct  # no duplicates from the replay
        # SIGTERM flushes what is in flight (a 5 s flush interval would not have yet)
        late = {chat(base, f"late {i}") for i in range(5)}
        process.terminate()
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)
        assert late <= ids_in(postgres, url)
    finally:
        stop.set()
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=15)


def test_migrations_are_idempotent_and_run_once_under_concurrent_starts(postgres):
    url = postgres.create_database()

    async def many() -> list[list[object]]:
        databases = [PostgresDatabase(url) for _ in range(4)]
        try:
            return list(await asyncio.gather(*(db.migrate() for db in databases)))
        finally:
            for db in databases:
                await db.close()

    results = asyncio.run(many())
    versions = [m.version for m in migrations("postgres")]
    assert sorted(len(r) for r in results) == [0, 0, 0, len(versions)]
    rows = postgres.query(url, "SELECT version FROM schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == versions
    assert asyncio.run(many()) == [[], [], [], []]
    assert postgres.query(url, "SELECT count(*) FROM feedback") == [(0,)]  # with telemetry


def test_two_coordinators_starting_together_migrate_once(postgres, fake, tmp_path):
    url = postgres.create_database()
    configs = []
    for i in range(2):
        path = tmp_path / f"c{i}.json"
        state = str(tmp_path / f"s{i}")
        path.write_text(json.dumps({"database": {"url": url}, "state_dir": state}))
        configs.append(path)
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "hydra_coordinator", "migrate", "--config", str(c)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for c in configs
    ]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert sum("applied 0001_telemetry" in out for out, _ in outputs) == 1
    assert postgres.query(url, "SELECT count(*) FROM schema_migrations") == [
        (len(migrations("postgres")),)
    ]


def test_stats_on_postgres_and_the_socket_url(postgres, fake, tmp_path):
    url = postgres.create_database()
    database = url.rsplit("/", 1)[1]
    socket_url = postgres.socket_url(database)  # what the NixOS module's peer auth looks like
    settings = telemetry_settings(fake, state_dir=str(tmp_path), database={"url": socket_url})
    with running(settings) as server:
        for i in range(10):
            chat(server.url, stream=i % 2 == 0)
        wait_for(lambda: count(postgres, url) == (10, 10), what="10 rows")
        stats = asyncio.run(_stats_in_loop(server, 3600))
        assert stats["requests"] == 10 and stats["database"] == "postgres"
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"database": {"url": socket_url}}))
    result = subprocess.run(
        [sys.executable, "-m", "hydra_coordinator", "stats", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    cli_stats = json.loads(result.stdout)
    assert cli_stats["database"] == "postgres" and cli_stats["database_location"] == socket_url
    assert cli_stats["requests"] == 10 and cli_stats["routes"] == {"local": 10}
    latency = cli_stats["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert cli_stats["tokens"]["prompt"] > 0


def test_stats_on_an_empty_postgres_database_creates_nothing(postgres, tmp_path):
    url = postgres.create_database()
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"database": {"url": url}}))
    result = subprocess.run(
        [sys.executable, "-m", "hydra_coordinator", "stats", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert f"no telemetry in postgres {url}" in result.stderr
    tables = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
    assert postgres.query(url, tables) == [(0,)]


async def _stats_in_loop(server, since_s: float):
    """runtime.telemetry.stats / recent_decisions on their own connection (another loop)."""
    from hydra_coordinator.telemetry.stats import recent_decisions, stats

    db = PostgresDatabase(server.settings.database.url)
    try:
        result = await stats(db, since_s)
        recent = await recent_decisions(db, 3)
        assert len(recent) == 3 and recent[0]["route"] == "local"
        assert isinstance(recent[0]["reasons"], list)
        return result
    finally:
        await db.close()


def test_the_database_comes_up_after_the_coordinator(postgres, fake, tmp_path):
    """PostgreSQL unreachable at start: the coordinator answers, and catches up later."""
    url = postgres.create_database()
    postgres.stop()
    try:
        settings = telemetry_settings(fake, state_dir=str(tmp_path), database={"url": url})
        with running(settings) as server:
            ids = [chat(server.url) for _ in range(5)]
            time.sleep(0.3)
            assert httpx.get(f"{server.url}/health").json()["dependencies"]["postgres"] == "down"
            postgres.start()
            wait_for(lambda: count(postgres, url) == (5, 5), timeout=30, what="5 rows")
            assert ids_in(postgres, url) == set(ids)
    finally:
        if not postgres.running:
            postgres.start()


def test_copy_keeps_awkward_text_intact(postgres):
    url = postgres.create_database()
    awkward = 'tab\there\nnew "line"\\back\\slash\r\u00e9\u2028 \\N'
    event = {
        "request_id": "awkward",
        "key_id": None,
        "route": "cloud",
        "backend": "b\tx",
        "model": "m",
        "status": 502,
        "stream": True,
        "latency_s": 1.5,
        "ttft_s": None,
        "confidence": None,
        "reasons": [awkward],
        "prompt_tokens": None,
        "completion_tokens": None,
        "cost_usd": None,
        "error": "upstream_status",
        "cache_hit": True,
        "timestamp": 1_700_000_000.25,
        "prompt": awkward,
    }

    async def insert_twice() -> None:
        db = PostgresDatabase(url)
        try:
            await db.migrate()
            await db.insert([orjson.dumps(event)])
            await db.insert([orjson.dumps(event)])  # a replay: ignored
        finally:
            await db.close()

    asyncio.run(insert_twice())
    ((prompt, reasons, backend, key_id, cache_hit, stamp, count_),) = postgres.query(
        url,
        "SELECT prompt, reasons, backend, key_id, cache_hit, extract(epoch FROM timestamp), "
        "(SELECT count(*) FROM telemetry) FROM telemetry",
    )
    assert prompt == awkward and reasons == [awkward] and backend == "b\tx"
    assert key_id is None and cache_hit is True and float(stamp) == 1_700_000_000.25
    assert count_ == 1


def test_malformed_spool_lines_are_dropped_and_the_rest_written(postgres, fake, tmp_path):
    url = postgres.create_database()
    seeded = seed_spool_with_malformed_lines(tmp_path)
    settings = telemetry_settings(fake, state_dir=str(tmp_path), database={"url": url})
    with running(settings) as server:
        wait_for(lambda: count(postgres, url) == (2, 2), what="2 rows")
        assert wait_for(lambda: events(server.url, "dropped") == 4, what="dropped=4")
        request_id = chat(server.url)
        wait_for(lambda: count(postgres, url) == (3, 3), what="3 rows")
    assert ids_in(postgres, url) == seeded | {request_id}
