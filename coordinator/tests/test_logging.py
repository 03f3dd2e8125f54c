"""What ``hydra-coordinator serve`` writes to its log, read from a real process's stderr."""

from __future__ import annotations

import asyncio
import json
import re
import time

import openai
import pytest
from mcp import ClientSession

from .mcp_client import http_streams
from .servers import FakeUpstream, free_port, serving

LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: "
)


def log_lines(log: str) -> tuple[list[str], list[dict]]:
    """(plain lines, access lines); fails on a line in neither of the coordinator's formats."""
    plain, access = [], []
    for line in log.splitlines():
        if line.startswith("{"):
            access.append(json.loads(line))
        elif LINE.match(line):
            plain.append(line)
        elif line.startswith((" ", "Traceback")):  # a logged traceback's lines
            continue
        else:
            raise AssertionError(f"a log line in another format: {line!r}\n--- log:\n{log}")
    return plain, access


async def _mcp_tool(url: str, name: str) -> None:
    async with (
        http_streams(f"{url}/mcp", {}) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        await session.call_tool(name, {})


def test_mcp_use_keeps_every_log_line_in_the_coordinators_format(tmp_path):
    fake = FakeUpstream("local", ["llama"]).start()
    port = free_port()
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "listen": {"port": port},
                "log": {"level": "info", "access": True},
                "backends": [{"name": "ollama", "kind": "local", "base_url": fake.base_url}],
            }
        )
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with serving(config, state=tmp_path / "state") as served:
            asyncio.run(_mcp_tool(url, "backend_health"))
            asyncio.run(_mcp_tool(url, "route_query"))
            with openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0) as client:
                client.chat.completions.create(
                    model="auto", messages=[{"role": "user", "content": "hi"}]
                )
        log = served.stderr
    finally:
        fake.kill()
    plain, access = log_lines(log)
    assert any(f"serving on http://127.0.0.1:{port}" in line for line in plain)
    assert any("hydra-coordinator stopped" in line for line in plain)
    assert [a["status"] for a in access if a.get("route") == "local"] == [200]


def test_backend_troubles_are_logged_with_what_to_check(tmp_path):
    flaky = FakeUpstream("flaky", ["flaky-model"]).start()
    picky = FakeUpstream("picky", ["picky-model"], api_key="the-right-key").start()
    (tmp_path / "picky-key").write_text("a-wrong-key\n")
    port, dead_port = free_port(), free_port()
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "listen": {"port": port},
                "health": {"interval_s": 60, "failure_threshold": 2, "cooldown_s": 0.5},
                "backends": [
                    {"name": "flaky", "kind": "local", "base_url": flaky.base_url},
                    {
                        "name": "dead",
                        "kind": "local",
                        "base_url": f"http://127.0.0.1:{dead_port}/v1",
                        "models": ["m"],
                    },
                    {
                        "name": "picky",
                        "kind": "cloud",
                        "base_url": picky.base_url,
                        "api_key_file": "picky-key",
                        "models": ["picky-model"],
                    },
                ],
            }
        )
    )
    url = f"http://127.0.0.1:{port}"
    body = {"model": "flaky-model", "messages": [{"role": "user", "content": "hi"}]}
    try:
        with (
            serving(config, state=tmp_path / "state") as served,
            openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0) as client,
        ):
            flaky.control(fail_status=500)
            for _ in range(2):  # the breaker opens after two failed requests (probes pass)
                with pytest.raises(openai.InternalServerError):
                    client.chat.completions.create(**body)
            flaky.control(fail_status=0)
            time.sleep(0.7)  # the cooldown: then one request tries again, and succeeds
            client.chat.completions.create(**body)
        log = served.stderr
    finally:
        flaky.kill()
        picky.kill()
    plain, _ = log_lines(log)
    # the first probe's report, with what to check
    dead = next(line for line in plain if line.split(": ", 1)[1].startswith("backend dead "))
    assert "WARNING" in dead and "did not answer its first probe" in dead
    assert f"127.0.0.1:{dead_port}" in dead and "base_url" in dead
    picky_line = next(line for line in plain if "backend picky " in line)
    assert "HTTP 401" in picky_line and "refused the key from backends[].api_key_file" in picky_line
    down = [line for line in plain if "backend flaky is down" in line]
    assert len(down) == 1 and "WARNING" in down[0]
    assert "2 requests in a row failed (last: status)" in down[0]
    assert any("backend flaky is healthy again" in line for line in plain)
