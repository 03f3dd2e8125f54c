"""Telemetry without servers: the spool, the SQLite default, prompts, a full spool, the CLI."""

from __future__ import annotations

import json
import logging
import os
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hydra_coordinator.cli import parse_duration
from hydra_coordinator.telemetry.spool import Position, Spool, SpoolLocked
from hydra_coordinator.telemetry.stats import percentile

from .servers import FakeUpstream, free_port, running
from .telemetry_helpers import (
    chat,
    events,
    seed_spool_with_malformed_lines,
    telemetry_settings,
    wait_for,
)

# --- the spool ----------------------------------------------------------------------------------


def lines(n: int, start: int = 0) -> list[bytes]:
    return [json.dumps({"request_id": f"r{i}"}).encode() + b"\n" for i in range(start, start + n)]


def drain(spool: Spool, batch: int = 1000) -> list[bytes]:
    got: list[bytes] = []
    while True:
        read = spool.read(batch)
        if not read.lines and read.end == spool.committed:
            return got
        got += read.lines
        spool.commit(read.end)


def test_spool_reads_in_order_rotates_and_deletes_committed_segments(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=100)
    spool.open()
    for line in lines(50):
        assert spool.append(line)
    assert len(list(tmp_path.glob("*.spool"))) > 10
    got = drain(spool, batch=7)
    assert got == [line.rstrip(b"\n") for line in lines(50)]
    assert len(list(tmp_path.glob("*.spool"))) == 1  # only the active segment is left
    assert spool.backlog() == 0
    spool.close()


def test_spool_survives_a_crash_and_resumes_from_the_committed_position(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=150)
    spool.open()
    for line in lines(20):
        spool.append(line)
    first = spool.read(5)
    spool.commit(first.end)
    # a crash: nothing closed, a torn line after the last one in the active segment (the
    # rest of the segment is the zeros it was reserved with)
    active = max(tmp_path.glob("*.spool"))
    assert active.stat().st_size == 150 and active.read_bytes().endswith(b"\0")
    with active.open("r+b") as file:
        file.seek(spool._sizes[spool._active])
        file.write(b'{"request_id": "tor')
    os.close(spool._lock_fd)  # what the kernel does when the process dies
    spool._lock_fd = -1

    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=150)
    again.open()
    assert again.backlog() > 0
    for line in lines(3, start=100):
        again.append(line)
    got = drain(again)
    expected = [line.rstrip(b"\n") for line in lines(15, start=5) + lines(3, start=100)]
    assert got == expected  # in order, no duplicates, the torn line skipped
    again.close()


def test_spool_segments_are_reserved_then_cut_to_their_lines_on_close(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    spool.open()
    (active,) = tmp_path.glob("*.spool")
    assert active.stat().st_size == 4096  # reserved up front
    long_line = b'{"request_id": "' + b"x" * 10_000 + b'"}\n'
    for line in [*lines(3), long_line, *lines(2, start=3)]:
        assert spool.append(line)
    spool.close()
    sizes = sorted(path.stat().st_size for path in tmp_path.glob("*.spool"))
    assert sizes == sorted([len(b"".join(lines(3))), len(long_line), len(b"".join(lines(2, 3)))])
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    again.open()
    expected = [line.rstrip(b"\n") for line in [*lines(3), long_line, *lines(2, start=3)]]
    assert drain(again) == expected
    again.close()


def test_appends_after_a_sync_find_their_pages_already_faulted_in(tmp_path):
    """Each sync faults in the pages the next lines go to (MADV_POPULATE_WRITE, Linux 5.14+),
    so appends on the request path do not take a page fault every ~10 lines."""
    line = b'{"request_id": "' + b"x" * 400 + b'"}\n'
    faults, supported = {}, True
    for prefault in (True, False):
        spool = Spool(tmp_path / str(prefault), max_bytes=1 << 24, segment_bytes=1 << 20)
        spool.open()
        spool._prefaulting &= prefault
        assert spool.append(line)
        spool.sync()
        if prefault:
            supported = spool._prefaulting  # False after the sync on an older kernel
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        for _ in range(100):  # ~42 KB: within the 64 KiB faulted in ahead
            assert spool.append(line)
        faults[prefault] = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
        spool.close()
        again = Spool(tmp_path / str(prefault), max_bytes=1 << 24)
        again.open()
        assert drain(again) == [line.rstrip(b"\n")] * 101  # the zeros ahead are not lines
        again.close()
    assert faults[False] >= 5  # a page every ~10 lines
    if supported:
        assert faults[True] <= 1, faults
    else:  # an older kernel: appends fault in their pages themselves, and nothing else changes
        assert faults[True] >= 5


def test_a_spool_that_cannot_reserve_a_segment_refuses_lines(tmp_path, monkeypatch, caplog):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=100)
    spool.open()

    def disk_full(fd: int, offset: int, length: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", disk_full)
    accepted = [spool.append(line) for line in lines(10)]
    assert accepted[0] and not all(accepted)  # the first fits; the next segment cannot be made
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "cannot reserve" in caplog.records[0].message
    monkeypatch.undo()
    assert spool.append(lines(1, start=99)[0])  # space again: a new segment
    spool.close()


def test_spool_is_capped_and_single_user(tmp_path):
    spool = Spool(tmp_path, max_bytes=1000, segment_bytes=200)
    spool.open()
    accepted = sum(spool.append(line) for line in lines(100))
    assert 0 < accepted < 100 and spool.size <= 1000
    with pytest.raises(SpoolLocked):
        Spool(tmp_path, max_bytes=1000).open()
    drain(spool)
    assert spool.append(lines(1)[0])  # room again once written out
    spool.close()
    assert Position(1, 0) < Position(1, 5) < Position(2, 0)


def test_percentile_matches_percentile_cont():
    assert percentile([], 0.5) is None
    assert percentile([1.0], 0.99) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([float(i) for i in range(101)], 0.95) == pytest.approx(95.0)


def test_parse_duration():
    assert parse_duration("24h") == 86400
    assert parse_duration("90") == 90
    assert parse_duration("30m") == 1800
    with pytest.raises(Exception, match="duration"):
        parse_duration("soon")


# --- the coordinator with the SQLite default ----------------------------------------------------


@pytest.fixture(scope="module")
def fake():
    upstream = FakeUpstream("local", ["llama"]).start()
    yield upstream
    upstream.kill()


def rows(state: Path, sql: str = "SELECT request_id, prompt, stream FROM telemetry"):
    path = state / "telemetry.sqlite3"
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return []


def test_sqlite_default_stores_one_row_per_request_without_prompts(fake, tmp_path):
    settings = telemetry_settings(fake, state_dir=str(tmp_path))
    with running(settings) as server:
        ids = [chat(server.url, "secret question") for _ in range(5)]
        ids.append(chat(server.url, "secret stream", stream=True))
        health = httpx.get(f"{server.url}/health").json()
        found = wait_for(lambda: len(rows(tmp_path)) == 6 and rows(tmp_path), what="6 rows")
        assert wait_for(lambda: events(server.url, "written") == 6, what="written=6")
        assert events(server.url, "spooled") == 6
        assert events(server.url, "dropped") == 0
    assert health["dependencies"]["sqlite"] in ("healthy", "degraded")
    assert "postgres" not in health["dependencies"]
    assert health["dependency_details"]["sqlite"].startswith("sqlite ")
    assert {r[0] for r in found} == set(ids)
    assert all(r[1] is None for r in found)  # no prompt text by default
    assert sorted(r[2] for r in found) == [0, 0, 0, 0, 0, 1]
    (stream_row,) = rows(
        tmp_path,
        "SELECT route, backend, status, prompt_tokens, completion_tokens, ttft_s, reasons "
        f"FROM telemetry WHERE request_id = '{ids[-1]}'",
    )
    assert stream_row[:3] == ("local", "ollama", 200)
    assert stream_row[3] and stream_row[4] and stream_row[5] is not None
    assert isinstance(json.loads(stream_row[6]), list)


def test_malformed_spool_lines_are_dropped_and_the_rest_written(fake, tmp_path):
    seeded = seed_spool_with_malformed_lines(tmp_path)
    with running(telemetry_settings(fake, state_dir=str(tmp_path))) as server:
        wait_for(lambda: len(rows(tmp_path)) == 2, what="2 rows")
        assert wait_for(lambda: events(server.url, "dropped") == 4, what="dropped=4")
    assert {r[0] for r in rows(tmp_path)} == seeded


def test_prompts_are_stored_only_with_the_flag(fake, tmp_path):
    settings = telemetry_settings(fake, state_dir=str(tmp_path), telemetry={"store_prompts": True})
    with running(settings) as server:
        request_id = chat(server.url, "what is in the prompt column?")
        wait_for(lambda: rows(tmp_path), what="a row")
    ((stored_id, prompt, _),) = rows(tmp_path)
    assert stored_id == request_id
    assert json.loads(prompt) == [{"role": "user", "content": "what is in the prompt column?"}]


def test_a_full_spool_is_reported_not_a_crash(fake, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="hydra_coordinator")
    settings = telemetry_settings(
        fake,
        state_dir=str(tmp_path),
        database={"url": f"postgresql://nobody@127.0.0.1:{free_port()}/none"},  # nothing there
        telemetry={"spool_max_bytes": 4096},
    )
    with running(settings) as server:
        for _ in range(30):
            chat(server.url)  # every request is still answered
        health = httpx.get(f"{server.url}/health").json()
        assert events(server.url, "dropped") > 0
        assert events(server.url, "spooled") + events(server.url, "dropped") == 30
        spool = metric_value(server.url, "hydra_telemetry_spool_bytes")
        assert 0 < spool <= metric_value(server.url, "hydra_telemetry_spool_limit_bytes") == 4096
    assert health["status"] == "degraded"
    assert health["dependencies"]["postgres"] == "down"
    assert "TELEMETRY SPOOL NEARLY FULL" in caplog.text
    assert "TELEMETRY EVENTS DROPPED" in caplog.text


def metric_value(url: str, name: str) -> float:
    from .telemetry_helpers import metric

    return metric(url, name)


def cli(*args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "hydra_coordinator", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in {**os.environ, **(env or {})}.items() if k != "STATE_DIRECTORY"},
    )


def test_stats_and_migrate_commands_on_sqlite(fake, tmp_path):
    settings = telemetry_settings(fake, state_dir=str(tmp_path))
    with running(settings) as server:
        for _ in range(4):
            chat(server.url)
        wait_for(lambda: len(rows(tmp_path)) == 4, what="4 rows")
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"state_dir": str(tmp_path)}))
    result = cli("stats", "--config", str(config), "--json", "--since", "1h")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["database"] == "sqlite" and stats["requests"] == 4
    assert stats["routes"] == {"local": 4} and stats["backends"] == {"ollama": 4}
    assert stats["latency_ms"]["p50"] > 0 and stats["tokens"]["completion"] > 0
    assert stats["database_location"] == str(tmp_path / "telemetry.sqlite3")
    text = cli("stats", "--config", str(config))
    assert text.returncode == 0 and "requests:   4" in text.stdout
    assert f"database:   sqlite {tmp_path / 'telemetry.sqlite3'}" in text.stdout
    assert f"config:     {config}" in text.stdout
    migrate = cli("migrate", "--config", str(config))
    assert migrate.returncode == 0 and "up to date" in migrate.stdout


def test_stats_says_which_database_and_creates_none(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "HYDRA_COORDINATOR_CONFIG": ""}
    result = cli("stats", env=env)
    assert result.returncode == 1
    expected = home / ".local" / "state" / "hydra-coordinator" / "telemetry.sqlite3"
    assert f"no telemetry in sqlite {expected}" in result.stderr
    assert "embedded defaults" in result.stderr and "--config" in result.stderr
    assert list(home.iterdir()) == []  # no state directory, no database file
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"state_dir": str(tmp_path / "state")}))
    result = cli("stats", "--config", str(config), "--json")
    assert result.returncode == 1 and str(tmp_path / "state" / "telemetry.sqlite3") in result.stderr
    assert not (tmp_path / "state").exists()


def test_migrate_on_a_fresh_state_directory(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"state_dir": str(tmp_path / "state")}))
    first = cli("migrate", "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert "applied 0001_telemetry" in first.stdout
    second = cli("migrate", "--config", str(config))
    assert "up to date" in second.stdout and "applied 0001" not in second.stdout


def test_the_database_password_is_redacted_and_bad_urls_are_refused(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"database": {"url": "postgresql://hydra:s3cret@db/hydra"}}))
    result = cli("check-config", str(config))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["database"]["url"] == "postgresql://hydra:***@db/hydra"
    assert "s3cret" not in result.stdout
    config.write_text(json.dumps({"database": {"url": "mysql://db/x"}, "telemetry": {"x": 1}}))
    result = cli("check-config", str(config))
    assert result.returncode == 1
    assert "database.url: must start with postgresql://" in result.stderr
    assert "telemetry.x: unknown key" in result.stderr
