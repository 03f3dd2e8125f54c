"""``serve`` and ``hydra-coordinator mcp`` (stdio) on one state directory: both record their
requests (each process spools on its own), and what a stopped process left in its spool is
written by another."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import orjson
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from hydra_coordinator.telemetry.record import RequestRecord
from hydra_coordinator.telemetry.spool import Spool

from .fixtures_pg import PostgresServer, postgres
from .mcp_client import ok
from .servers import FakeUpstream, coordinator_settings, env_without_proxies, free_port, running
from .servers import serving as serve_process


def request_ids(state: Path) -> set[str]:
    path = state / "telemetry.sqlite3"
    if not path.exists():
        return set()
    with sqlite3.connect(path) as conn:
        try:
            return {row[0] for row in conn.execute("SELECT request_id FROM telemetry")}
        except sqlite3.OperationalError:
            return set()


def wait_for_rows(state: Path, wanted: set[str], timeout: float = 20) -> set[str]:
    deadline = time.monotonic() + timeout
    while not wanted <= (found := request_ids(state)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


__all__ = ["postgres"]  # the fixture


async def ask_over_stdio(config: Path, state: Path, errlog: Any) -> tuple[dict, dict]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "hydra_coordinator", "mcp", "--config", str(config)],
        cwd=str(Path(__file__).parent.parent),
        env={**env_without_proxies(), "STATE_DIRECTORY": str(state)},
    )
    async with (
        stdio_client(params, errlog=errlog) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        answer = ok(await session.call_tool("ask", {"query": "Hello over stdio"}))
        health = ok(await session.call_tool("backend_health", {}))
    return answer, health


def both_record(
    tmp_path: Path, found_ids: Callable[[], set[str]], **config: Any
) -> tuple[str, dict[str, Any]]:
    """``serve`` and stdio ``mcp`` with one config and state directory each answer a request;
    both requests' rows are written. The dependencies the stdio process reports."""
    fake = FakeUpstream("local", ["llama"]).start()
    state = tmp_path / "state"
    port = free_port()
    path = tmp_path / "hydra.json"
    path.write_text(
        json.dumps(
            {
                "listen": {"port": port},
                "backends": [{"name": "ollama", "kind": "local", "base_url": fake.base_url}],
                **config,
            }
        )
    )
    try:
        with serve_process(path, state=state) as served:
            with openai.OpenAI(
                base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0
            ) as client:
                served_id = client.chat.completions.with_raw_response.create(
                    model="auto", messages=[{"role": "user", "content": "hi"}]
                ).headers["x-hydra-request-id"]
            with (tmp_path / "mcp.log").open("w+") as errlog:
                answer, health = asyncio.run(ask_over_stdio(path, state, errlog))
                errlog.seek(0)
                mcp_log = errlog.read()
            wanted = {served_id, answer["request_id"]}
            deadline = time.monotonic() + 20
            while not wanted <= (found := found_ids()) and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        fake.kill()
    assert wanted <= found, (found, mcp_log, served.stderr)
    assert "events will be dropped" not in mcp_log and "DROPPED" not in mcp_log
    assert f"this one spools to {state / 'telemetry-spool-2'}" in mcp_log
    dependencies: dict[str, Any] = health["dependencies"]
    return mcp_log, dependencies


def test_serve_and_stdio_mcp_on_one_state_directory_both_record(tmp_path):
    _, dependencies = both_record(tmp_path, lambda: request_ids(tmp_path / "state"))
    assert dependencies["sqlite"] == "healthy", dependencies


def test_serve_and_stdio_mcp_on_one_state_directory_both_record_on_postgres(
    tmp_path, postgres: PostgresServer
):
    url = postgres.create_database()

    def found() -> set[str]:
        try:
            return {str(row[0]) for row in postgres.query(url, "SELECT request_id FROM telemetry")}
        except Exception:  # the table is not there before the first start's migration
            return set()

    _, dependencies = both_record(tmp_path, found, database={"url": url})
    assert dependencies["postgres"] == "healthy", dependencies  # not "down"


def test_what_a_stopped_process_left_in_its_spool_is_written(tmp_path):
    # the spool of a process that stopped while the database was unreachable
    left = Spool(tmp_path / "telemetry-spool-3", 1 << 20)
    left.open()
    for request_id in ("left-1", "left-2"):
        record = RequestRecord(request_id, None, "local", "ollama", "llama", 200, False, 0.1)
        assert left.append(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
    left.close()
    fake = FakeUpstream("local", ["llama"]).start()
    try:
        settings = coordinator_settings(
            [{"name": "ollama", "kind": "local", "base_url": fake.base_url}],
            state_dir=str(tmp_path),
        )
        with running(settings):
            found = wait_for_rows(tmp_path, {"left-1", "left-2"})
    finally:
        fake.kill()
    assert {"left-1", "left-2"} <= found
    reopened = Spool(tmp_path / "telemetry-spool-3", 1 << 20)
    reopened.open(append=False)
    assert reopened.backlog() == 0
    reopened.close()
