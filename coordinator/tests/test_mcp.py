"""The MCP server through the SDK's own client: streamable HTTP against the real app on uvicorn
(loopback), and stdio against ``hydra-coordinator mcp`` in a subprocess."""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from hydra_coordinator import __version__
from hydra_coordinator.auth import key_id
from hydra_coordinator.mcp import parse_since
from hydra_coordinator.routing.recent import RecentDecisions
from hydra_coordinator.routing.router import Decision

from .mcp_client import MAJOR, http_streams, is_error, ok, resource_text, text_of, wire
from .servers import (
    CoordinatorServer,
    FakeUpstream,
    coordinator_settings,
    env_without_proxies,
    running,
)

KEY = "mcp-test-key-0123456789"
TOOLS = {
    "route_query",
    "ask",
    "search_knowledge",
    "record_feedback",
    "coordinator_stats",
    "backend_health",
}
HARD = (
    "Design the architecture for a multi-region database, compare the trade-offs of consensus "
    "protocols step by step and prove the invariants:\n```python\ndef commit(): ...\n```"
)


def backends(local: FakeUpstream, cloud: FakeUpstream) -> list[dict[str, Any]]:
    return [
        {"name": "ollama", "kind": "local", "base_url": local.base_url},
        {"name": "openai", "kind": "cloud", "base_url": cloud.base_url, "models": ["gpt-4o"]},
    ]


@pytest.fixture(scope="module")
def keyed(
    local_fake: FakeUpstream, cloud_fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CoordinatorServer]:
    """A coordinator that requires an API key (as every non-loopback one does)."""
    keys = tmp_path_factory.mktemp("keys") / "client-key"
    keys.write_text(KEY + "\n")
    settings = coordinator_settings(
        backends(local_fake, cloud_fake), auth={"api_key_files": [str(keys)]}
    )
    with running(settings) as server:
        yield server


@asynccontextmanager
async def http_session(server: CoordinatorServer, key: str = KEY) -> AsyncIterator[ClientSession]:
    headers = {"authorization": f"Bearer {key}"}
    async with (
        http_streams(f"{server.url}/mcp", headers) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def post_mcp(
    url: str, headers: dict[str, str], body: dict[str, Any] | None = None
) -> tuple[int, bytes]:
    body = body or {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "probe", "version": "0"},
        },
    }
    request = urllib.request.Request(
        f"{url}/mcp",
        data=json.dumps(body).encode(),
        headers={
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            **headers,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()


# --- tools over streamable HTTP ------------------------------------------------------------


async def test_lists_the_tools_with_schemas_and_descriptions(keyed):
    async with http_session(keyed) as session:
        tools = {tool.name: wire(tool) for tool in (await session.list_tools()).tools}
    assert set(tools) == TOOLS
    for name, tool in tools.items():
        assert tool["description"] and len(tool["description"]) > 40, name
        assert tool["inputSchema"]["type"] == "object"
        assert tool["outputSchema"] is not None, name
    ask = tools["ask"]["inputSchema"]
    assert ask["required"] == ["query"]
    assert {"query", "model", "system", "max_tokens", "temperature"} <= set(ask["properties"])
    assert "ctx" not in ask["properties"]
    output = tools["ask"]["outputSchema"]
    assert output is not None
    assert set(output["properties"]) >= {"answer", "route", "request_id"}
    assert set(tools["record_feedback"]["inputSchema"]["required"]) == {"request_id", "rating"}
    assert tools["route_query"]["annotations"]["readOnlyHint"] is True
    assert tools["ask"]["annotations"]["readOnlyHint"] is False


async def test_route_query_gives_the_decision_with_reasons(keyed, local_fake, cloud_fake):
    async with http_session(keyed) as session:
        simple = ok(await session.call_tool("route_query", {"query": "What is 2 + 2?"}))
        hard = ok(await session.call_tool("route_query", {"query": HARD}))
        forced = ok(await session.call_tool("route_query", {"query": HARD, "model": "local"}))
    assert simple["route"] == "local"
    assert simple["backend"] == "ollama"
    # little raised the cloud's cold-start gain above its level for a plain question (0.12)
    assert simple["local_confidence"] > 0.75
    assert hard["local_confidence"] < 0.5
    assert 0.5 < simple["confidence"] <= 1.0  # the route it chose is the likelier better one
    assert simple["expected"]["route"] == "local" and len(simple["estimates"]) == 2
    assert hard["route"] == "cloud"
    assert hard["backend"] == "openai"
    assert any("design and architecture" in reason for reason in hard["reasons"])
    assert forced["route"] == "local" and forced["confidence"] == 1.0  # the client chose
    # no model was called
    assert local_fake.requests() == []
    assert cloud_fake.requests() == []


async def test_ask_answers_through_the_chat_path(keyed, local_fake, cloud_fake):
    async with http_session(keyed) as session:
        result = ok(
            await session.call_tool(
                "ask",
                {"query": "What is the capital of France?", "system": "Be brief.", "max_tokens": 9},
            )
        )
        hard = ok(await session.call_tool("ask", {"query": HARD}))
    assert result["answer"] == "local: What is the capital of France?"
    assert result["route"] == "local"
    assert result["backend"] == "ollama"
    assert result["model"] == "llama-3.1-8b"
    assert len(result["request_id"]) == 24
    seen = local_fake.requests()[-1]["body"]
    assert seen["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    assert seen["max_tokens"] == 9
    assert seen["stream"] is False
    assert hard["route"] == "cloud"
    assert hard["answer"].startswith("cloud: Design")
    assert cloud_fake.requests()[-1]["body"]["model"] == "gpt-4o"


async def test_ask_errors_are_tool_errors_and_the_session_goes_on(keyed, local_fake):
    async with http_session(keyed) as session:
        unknown = await session.call_tool("ask", {"query": "hi", "model": "no-such-model"})
        assert is_error(unknown)
        assert "'no-such-model' does not exist on any backend" in text_of(unknown)

        local_fake.control(fail_status=400)
        refused = await session.call_tool("ask", {"query": "hi", "model": "local"})
        assert is_error(refused)
        assert "upstream error (HTTP 400): local failing on purpose" in text_of(refused)
        local_fake.reset()

        again = ok(await session.call_tool("ask", {"query": "hi again"}))
        assert again["answer"] == "local: hi again"


async def test_bad_arguments_are_clear_tool_errors(keyed):
    async with http_session(keyed) as session:
        missing = await session.call_tool("ask", {})
        wrong_type = await session.call_tool("route_query", {"query": ["not", "a", "string"]})
        out_of_range = await session.call_tool("record_feedback", {"request_id": "x", "rating": 5})
        bad_since = await session.call_tool("coordinator_stats", {"since": "yesterday"})
        unknown = await session.call_tool("no_such_tool", {})
        # the session is still usable afterwards
        health = ok(await session.call_tool("backend_health", {}))
    assert is_error(missing)
    assert "invalid arguments for ask: query: Field required" in text_of(missing)
    assert is_error(wrong_type)
    assert "invalid arguments for route_query: query: Input should be a valid string" in (
        text_of(wrong_type)
    )
    assert is_error(out_of_range)
    assert "rating: Input should be less than or equal to 1" in text_of(out_of_range)
    assert is_error(bad_since)
    assert "since must be a number and a unit" in text_of(bad_since)
    assert is_error(unknown)
    assert "Unknown tool: no_such_tool" in text_of(unknown)
    assert health["status"] in ("healthy", "degraded")


async def test_backend_health_reports_every_backend(keyed):
    async with http_session(keyed) as session:
        health = ok(await session.call_tool("backend_health", {}))
    assert health["service"] == "hybrid-coordinator"
    assert health["backends"] == {"ollama": "healthy", "openai": "healthy"}
    assert health["status"] == "healthy", health


# --- tools over the runtime's services (in-test fakes until the real services land) --------


class FakeKnowledge:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def search(
        self, query: str, limit: int = 5, key_id: str | None = None
    ) -> list[dict[str, Any]]:
        self.calls.append((query, limit, key_id))
        return [
            {"question": "q1", "answer": "a1", "backend": "ollama", "rating": 1.0, "score": 0.9}
        ]


class FakeTelemetry:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str | None]] = []

    async def stats(self, since_s: float, *, key_id: str | None = None) -> dict[str, Any]:
        self.calls.append((since_s, key_id))
        return {"requests": 3, "routes": {"local": 2, "cloud": 1}, "cost_usd": 0.01}


class FakeFeedback:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def record(
        self, request_id: str, rating: float, comment: str | None, key_id: str | None
    ) -> dict[str, Any]:
        self.calls.append((request_id, rating, comment, key_id))
        return {"request_id": request_id, "rating": rating, "recorded": True}


async def test_service_tools_pass_arguments_through(keyed, monkeypatch):
    knowledge, telemetry, feedback = FakeKnowledge(), FakeTelemetry(), FakeFeedback()
    monkeypatch.setattr(keyed.runtime, "knowledge", knowledge, raising=False)
    monkeypatch.setattr(keyed.runtime, "telemetry", telemetry, raising=False)
    monkeypatch.setattr(keyed.runtime, "feedback", feedback, raising=False)
    async with http_session(keyed) as session:
        found = ok(await session.call_tool("search_knowledge", {"query": "sky", "limit": 3}))
        stats = ok(await session.call_tool("coordinator_stats", {"since": "7d"}))
        default_stats = ok(await session.call_tool("coordinator_stats", {}))
        rated = ok(
            await session.call_tool(
                "record_feedback", {"request_id": "abc123", "rating": -1, "comment": "wrong"}
            )
        )
    assert found == {
        "results": [
            {"question": "q1", "answer": "a1", "backend": "ollama", "rating": 1.0, "score": 0.9}
        ]
    }
    assert knowledge.calls == [("sky", 3, key_id(KEY))]
    assert stats == {
        "requests": 3,
        "routes": {"local": 2, "cloud": 1},
        "cost_usd": 0.01,
        "scope": f"key {key_id(KEY)}",
    }
    assert default_stats == stats
    # a key that is not an admin key gets its own requests' statistics
    assert telemetry.calls == [(7 * 86400, key_id(KEY)), (24 * 3600, key_id(KEY))]
    assert rated == {"request_id": "abc123", "rating": -1, "recorded": True}
    assert feedback.calls == [("abc123", -1, "wrong", key_id(KEY))]


async def test_service_tools_say_when_a_service_is_missing(keyed, monkeypatch):
    monkeypatch.setattr(keyed.runtime, "knowledge", None)  # as without a knowledge base
    monkeypatch.setattr(keyed.runtime, "telemetry", None)  # as without telemetry
    monkeypatch.setattr(keyed.runtime, "feedback", None)  # and without feedback
    for name in ("knowledge", "telemetry", "feedback"):
        assert getattr(keyed.runtime, name, None) is None
    async with http_session(keyed) as session:
        search = await session.call_tool("search_knowledge", {"query": "sky"})
        stats = await session.call_tool("coordinator_stats", {"since": "1h"})
        rate = await session.call_tool("record_feedback", {"request_id": "r", "rating": 1})
    assert is_error(search)
    assert "the knowledge base is not available" in text_of(search)
    assert is_error(stats)
    assert "the telemetry store is not available" in text_of(stats)
    assert is_error(rate)
    assert "feedback is not available" in text_of(rate)


def test_parse_since():
    assert parse_since("30m") == 1800
    assert parse_since("24h") == 86400
    assert parse_since(" 7D ") == 7 * 86400
    assert parse_since("1.5h") == 5400
    assert parse_since("90s") == 90
    assert parse_since("2w") == 14 * 86400
    for bad in ("", "24", "h", "-1h", "0h", "1y", "400d", "24 hours"):
        with pytest.raises(ValueError, match="since"):
            parse_since(bad)


# --- resources ------------------------------------------------------------------------------


async def test_resources_config_and_recent_decisions(keyed):
    async with http_session(keyed) as session:
        listed = {str(r.uri): wire(r) for r in (await session.list_resources()).resources}
        asked = ok(await session.call_tool("ask", {"query": "a secret prompt text"}))
        ok(await session.call_tool("route_query", {"query": HARD}))
        config = await session.read_resource("hydra://config")
        recent = await session.read_resource("hydra://decisions/recent")
    assert set(listed) == {"hydra://config", "hydra://decisions/recent"}
    assert listed["hydra://config"]["mimeType"] == "application/json"

    effective = json.loads(resource_text(config))  # what concerns this (not admin) key
    assert [b["name"] for b in effective["backends"]] == ["ollama", "openai"]
    assert effective["key_id"] == key_id(KEY)
    assert KEY not in resource_text(config)

    text = resource_text(recent)
    decisions = json.loads(text)["decisions"]
    assert decisions[0]["kind"] == "route"  # newest first
    assert decisions[0]["route"] == "cloud"
    assert decisions[0]["request_id"] is None
    assert decisions[1]["kind"] == "chat"
    assert decisions[1]["request_id"] == asked["request_id"]
    assert decisions[1]["backend"] == "ollama"
    assert set(decisions[1]) >= {"time", "route", "backend", "confidence", "reasons", "model"}
    assert "secret prompt" not in text


def test_recent_decisions_are_bounded_and_newest_first():
    recent = RecentDecisions(maxlen=3)
    for i in range(5):
        decision = Decision("local", "ollama", 1.0 - i / 10, (f"reason {i}",), ("ollama",))
        recent.add(decision, kind="chat", model="auto", request_id=f"r{i}")
    assert len(recent) == 3
    assert [d["request_id"] for d in recent.latest()] == ["r4", "r3", "r2"]
    assert [d["request_id"] for d in recent.latest(2)] == ["r4", "r3"]
    assert recent.latest()[0]["reasons"] == ["reason 4"]
    assert recent.latest()[0]["candidates"] == ["ollama"]


# --- auth and transport security --------------------------------------------------------------


def test_mcp_needs_the_api_key(keyed):
    status, body = post_mcp(keyed.url, {})
    assert status == 401
    assert json.loads(body)["error"]["type"] == "authentication_error"
    status, body = post_mcp(keyed.url, {"authorization": "Bearer wrong"})
    assert status == 401
    assert "invalid API key" in json.loads(body)["error"]["message"]
    # with the key, any Host works (the coordinator's real names; the key is the protection)
    status, _ = post_mcp(keyed.url, {"authorization": f"Bearer {KEY}", "host": "hydra-ai:8092"})
    assert status == 200


def leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from leaves(inner)
    else:
        yield error


def test_mcp_bodies_have_the_api_size_limit(keyed):
    # declare a body over limits.max_body_bytes: refused before any of it is read (sending it
    # all would race the server closing the connection)
    connection = http.client.HTTPConnection("127.0.0.1", keyed.settings.listen.port, timeout=10)
    try:
        connection.putrequest("POST", "/mcp")
        for name, value in {
            "authorization": f"Bearer {KEY}",
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "content-length": str(keyed.settings.limits.max_body_bytes + 1),
        }.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "request_too_large"
    finally:
        connection.close()


def test_server_info_names_the_coordinator(keyed):
    status, body = post_mcp(keyed.url, {"authorization": f"Bearer {KEY}"})
    assert status == 200
    info = json.loads(body)["result"]["serverInfo"]
    assert info == {"name": "hydra-coordinator", "version": __version__}


async def test_the_sdk_client_is_refused_without_a_key(keyed):
    try:
        async with http_session(keyed, key="wrong"):
            pass
    except Exception as error:  # the SDK raises the refusal inside an exception group
        if MAJOR >= 2:  # 2.x turns a non-2xx answer into the request's JSON-RPC error
            refused = [leaf for leaf in leaves(error) if type(leaf).__name__ == "MCPError"]
            assert refused, repr(error)
        else:  # 1.x raises the HTTP error
            assert any("401 Unauthorized" in str(leaf) for leaf in leaves(error)), repr(error)
    else:
        pytest.fail("the session started without a valid key")


def test_without_keys_only_loopback_hosts_are_served(coordinator):
    # no keys (allowed on loopback only): DNS-rebinding protection accepts loopback names only
    port = coordinator.settings.listen.port
    assert post_mcp(coordinator.url, {"host": f"127.0.0.1:{port}"})[0] == 200
    assert post_mcp(coordinator.url, {"host": f"localhost:{port}"})[0] == 200
    assert post_mcp(coordinator.url, {"host": "attacker.example"})[0] == 421
    assert post_mcp(coordinator.url, {"origin": "http://attacker.example"})[0] == 403


# --- stdio ----------------------------------------------------------------------------------


@asynccontextmanager
async def stdio_session(config: Path, errlog: Any) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "hydra_coordinator", "mcp", "--config", str(config)],
        cwd=str(Path(__file__).parent.parent),
        # the SDK passes only a minimal environment by default (no PYTHONPATH: the Nix build)
        env=env_without_proxies(),
    )
    async with (
        stdio_client(params, errlog=errlog) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def test_stdio_refuses_a_bad_config(tmp_path):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"routing": {"threshold": "high"}}))
    result = subprocess.run(
        [sys.executable, "-m", "hydra_coordinator", "mcp", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "routing.threshold" in result.stderr
    assert result.stdout == ""


async def test_stdio_serves_the_same_tools(tmp_path, local_fake, cloud_fake):
    config = tmp_path / "hydra.json"
    settings = coordinator_settings(backends(local_fake, cloud_fake))
    config.write_text(settings.model_dump_json())
    errlog = (tmp_path / "stderr.log").open("w+")
    with errlog:
        async with stdio_session(config, errlog) as session:
            tools = {tool.name for tool in (await session.list_tools()).tools}
            decision = ok(await session.call_tool("route_query", {"query": HARD}))
            answer = ok(await session.call_tool("ask", {"query": "Hello over stdio"}))
            bad = await session.call_tool("ask", {"query": 42})
            knowledge = ok(await session.call_tool("search_knowledge", {"query": "sky"}))
            health = ok(await session.call_tool("backend_health", {}))
            resources = {str(r.uri) for r in (await session.list_resources()).resources}
            recent = await session.read_resource("hydra://decisions/recent")
        errlog.seek(0)
        stderr = errlog.read()
    assert tools == TOOLS, stderr
    assert decision["route"] == "cloud"
    assert answer["answer"] == "local: Hello over stdio"
    assert answer["backend"] == "ollama"
    assert local_fake.requests()[-1]["body"]["messages"][-1]["content"] == "Hello over stdio"
    assert is_error(bad)
    assert "invalid arguments for ask: query: Input should be a valid string" in text_of(bad)
    # the knowledge base runs under stdio too; the answer may not be stored yet
    assert isinstance(knowledge["results"], list)
    assert set(health["backends"]) == {"ollama", "openai"}
    assert resources == {"hydra://config", "hydra://decisions/recent"}
    kinds = [d["kind"] for d in json.loads(resource_text(recent))["decisions"]]
    assert kinds == ["chat", "route"]


async def test_service_tools_end_to_end_with_the_real_services(local_fake, cloud_fake, tmp_path):
    """ask, then rate it, find it in the knowledge base and see it in the stats, all over MCP
    against the coordinator's real telemetry (SQLite), feedback and knowledge base."""
    keys = tmp_path / "client-key"
    keys.write_text(KEY + "\n")
    settings = coordinator_settings(
        backends(local_fake, cloud_fake),
        auth={"api_key_files": [str(keys)]},
        state_dir=str(tmp_path / "state"),
    )
    question = "Which planet is closest to the sun?"
    with running(settings) as server:
        async with http_session(server) as session:
            asked = ok(await session.call_tool("ask", {"query": question}))
            rated = ok(
                await session.call_tool(
                    "record_feedback",
                    {"request_id": asked["request_id"], "rating": 1, "comment": "right"},
                )
            )
            assert rated["recorded"] is True and rated["backend"] == asked["backend"]
            for _ in range(100):  # the knowledge base and telemetry are written in the background
                found = ok(await session.call_tool("search_knowledge", {"query": question}))
                stats = ok(await session.call_tool("coordinator_stats", {"since": "1h"}))
                results = found.get("results") or []
                if results and results[0].get("rating") == 1 and stats.get("requests", 0) >= 1:
                    break
                await asyncio.sleep(0.1)
            assert results[0]["question"] == question and results[0]["rating"] == 1
            assert stats["requests"] >= 1
            assert stats["routes"].get(asked["route"], 0) >= 1
            unknown = await session.call_tool(
                "record_feedback", {"request_id": "nope", "rating": 1}
            )
            assert is_error(unknown) and "no request" in text_of(unknown)
