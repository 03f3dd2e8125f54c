"""What ``hydra-coordinator serve`` writes to its log, read from a real process's stderr."""

from __future__ import annotations

import asyncio
import json
import re

import openai
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
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
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
