"""Other keys' business: each API key sees its own decisions, statistics and configuration
through MCP; an admin key sees everyone's; a public /metrics scrape shows no key's spending."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest
from mcp import ClientSession

from hydra_coordinator.auth import key_id

from .mcp_client import http_streams, ok, resource_text
from .servers import (
    CoordinatorServer,
    FakeUpstream,
    coordinator_settings,
    fetch,
    local_and_cloud_backends,
    running,
)

ALICE, BOB, ADMIN = "alice-key-0123456789", "bob-key-0123456789", "admin-key-0123456789"
# a prompt with an AWS access key: a privacy rule keeps it local and says why
LEAKY = "deploy with AKIAIOSFODNN7EXAMPLE and tell me what to check"


@pytest.fixture(scope="module")
def shared(
    local_fake: FakeUpstream, cloud_fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CoordinatorServer]:
    folder = tmp_path_factory.mktemp("keys")
    (folder / "clients").write_text(f"# alice\n{ALICE}\n# bob\n{BOB}\n")
    (folder / "admins").write_text(ADMIN + "\n")
    settings = coordinator_settings(
        local_and_cloud_backends(local_fake, cloud_fake),
        auth={
            "api_key_files": [str(folder / "clients")],
            "admin_key_files": [str(folder / "admins")],
        },
        budgets={"per_key": {"daily_usd": 5.0}},
        telemetry={"flush_interval_s": 0.05},
    )
    with running(settings) as server:
        yield server


@asynccontextmanager
async def mcp_session(server: CoordinatorServer, key: str) -> AsyncIterator[ClientSession]:
    headers = {"authorization": f"Bearer {key}"}
    async with (
        http_streams(f"{server.url}/mcp", headers) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def read_json(session: ClientSession, uri: str) -> Any:
    return json.loads(resource_text(await session.read_resource(uri)))


def chat(server: CoordinatorServer, key: str, text: str, model: str = "auto") -> str:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=key) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": text}]
        )
    return str(raw.headers["x-hydra-request-id"])


async def stats(session: ClientSession, want: int | None = None) -> dict[str, Any]:
    """coordinator_stats, once telemetry has written ``want`` requests (it writes in batches)."""
    deadline = time.monotonic() + 10
    while True:
        found = ok(await session.call_tool("coordinator_stats", {"since": "1h"}))
        if want is None or found["requests"] >= want or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


async def test_a_key_sees_only_its_own_decisions(shared: CoordinatorServer) -> None:
    alice_leak = await asyncio.to_thread(chat, shared, ALICE, LEAKY)
    alice_cloud = await asyncio.to_thread(chat, shared, ALICE, "hello", "gpt-4o")
    bob_own = await asyncio.to_thread(chat, shared, BOB, "hi from bob")
    async with mcp_session(shared, BOB) as bob:
        seen_by_bob = (await read_json(bob, "hydra://decisions/recent"))["decisions"]
    async with mcp_session(shared, ALICE) as alice:
        seen_by_alice = (await read_json(alice, "hydra://decisions/recent"))["decisions"]
    async with mcp_session(shared, ADMIN) as admin:
        seen_by_admin = (await read_json(admin, "hydra://decisions/recent"))["decisions"]
    bob_ids = {d["request_id"] for d in seen_by_bob}
    assert bob_own in bob_ids
    assert not {alice_leak, alice_cloud} & bob_ids
    # nothing of alice's privacy reasons reaches bob
    assert "aws" not in json.dumps(seen_by_bob).lower()
    alice_ids = {d["request_id"] for d in seen_by_alice}
    assert {alice_leak, alice_cloud} <= alice_ids
    assert bob_own not in alice_ids
    assert {alice_leak, alice_cloud, bob_own} <= {d["request_id"] for d in seen_by_admin}


async def test_statistics_are_the_callers_own_unless_admin(shared: CoordinatorServer) -> None:
    async with mcp_session(shared, ADMIN) as admin:
        before_all = await stats(admin)
    async with mcp_session(shared, BOB) as bob:
        bob_before = await stats(bob)
    for _ in range(3):
        await asyncio.to_thread(chat, shared, ALICE, "an expensive question", "gpt-4o")
    async with mcp_session(shared, ADMIN) as admin:
        everyone = await stats(admin, before_all["requests"] + 3)
    async with mcp_session(shared, BOB) as bob:
        bob_after = await stats(bob)
    assert everyone["scope"] == "all keys"
    assert everyone["cost_usd"] > before_all["cost_usd"]
    assert bob_after["scope"] == f"key {key_id(BOB)}"
    # alice's three cloud requests are not in bob's figures, nor is where the database is
    assert bob_after["requests"] == bob_before["requests"]
    assert bob_after["cost_usd"] == bob_before["cost_usd"]
    assert "database_location" not in bob_after
    assert {b["scope"] for b in bob_after["budgets"]} == {key_id(BOB)}


async def test_the_whole_config_needs_an_admin_key(shared: CoordinatorServer) -> None:
    async with mcp_session(shared, BOB) as bob:
        for_bob = await read_json(bob, "hydra://config")
    async with mcp_session(shared, ADMIN) as admin:
        whole = await read_json(admin, "hydra://config")
    assert for_bob["key_id"] == key_id(BOB)
    assert for_bob["budget"] == {"daily_usd": 5.0, "monthly_usd": None}
    assert [b["name"] for b in for_bob["backends"]] == ["ollama", "openai"]
    text = json.dumps(for_bob)
    for hidden in ("base_url", "api_key_files", "state_dir", "127.0.0.1"):
        assert hidden not in text
    assert whole["auth"]["api_key_files"] and whole["backends"][1]["base_url"]


def test_public_metrics_show_no_keys_spending(shared: CoordinatorServer) -> None:
    chat(shared, ALICE, "a cloud question for the metrics", "gpt-4o")
    text = fetch(f"{shared.url}/metrics").decode()
    assert 'hydra_budget_spent_usd{period="daily",scope="global"}' in text or (
        "hydra_budget_keys_exhausted" in text
    )
    for who in (ALICE, BOB, ADMIN):
        assert key_id(who) not in text
    assert 'hydra_budget_keys_exhausted{period="daily"} 0.0' in text


def test_metrics_with_a_key_show_each_keys_budget(
    local_fake: FakeUpstream, cloud_fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    keys = tmp_path_factory.mktemp("keys") / "clients"
    keys.write_text(ALICE + "\n")
    settings = coordinator_settings(
        [
            {"name": "ollama", "kind": "local", "base_url": local_fake.base_url},
            {"name": "openai", "kind": "cloud", "base_url": cloud_fake.base_url},
        ],
        auth={"api_key_files": [str(keys)], "public_metrics": False},
        budgets={"per_key": {"daily_usd": 5.0}},
    )
    with running(settings) as server:
        chat(server, ALICE, "hello", "gpt-4o")
        response = httpx.get(f"{server.url}/metrics", headers={"authorization": f"Bearer {ALICE}"})
    assert response.status_code == 200
    assert f'scope="{key_id(ALICE)}"' in response.text
