from __future__ import annotations

from collections.abc import Iterator

# Imported before any coordinator starts: the server's background threads import httpx (through
# qdrant-client), and openai's client reads sys.modules["httpx"], which a half-finished import
# in another thread leaves without its attributes (AttributeError: partially initialized module).
import httpx  # noqa: F401
import pytest

from .fixtures_redis import redis_server  # noqa: F401 (a fixture)
from .servers import CoordinatorServer, FakeUpstream, coordinator_settings, running

# Fixtures that start a PostgreSQL or Redis server: a test using one (directly or through another
# fixture) is marked needs_server, so the package's check phase (``-m "not needs_server"``, no
# servers in the Nix build sandbox) leaves it out without each test having to say so.
SERVER_FIXTURES = frozenset({"postgres", "redis_server"})


@pytest.hookimpl(tryfirst=True)  # before the mark plugin deselects by -m
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.needs_server)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fakes() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    """A fresh fake local upstream (serving ``llama``) and fake cloud upstream (``gpt-4o``)."""
    local = FakeUpstream("local", ["llama"]).start()
    cloud = FakeUpstream("cloud", ["gpt-4o"]).start()
    yield local, cloud
    local.kill()
    cloud.kill()


@pytest.fixture(scope="module")
def local_fake() -> Iterator[FakeUpstream]:
    fake = FakeUpstream("local", ["llama-3.1-8b", "qwen2.5-coder"]).start()
    yield fake
    fake.kill()


@pytest.fixture(scope="module")
def cloud_fake() -> Iterator[FakeUpstream]:
    fake = FakeUpstream("cloud", ["gpt-4o"]).start()
    yield fake
    fake.kill()


@pytest.fixture(scope="module")
def coordinator(local_fake: FakeUpstream, cloud_fake: FakeUpstream) -> Iterator[CoordinatorServer]:
    settings = coordinator_settings(
        [
            {
                "name": "ollama",
                "kind": "local",
                "base_url": local_fake.base_url,
                "price_per_mtok": {"input": 0.0, "output": 0.0},
            },
            {
                "name": "openai",
                "kind": "cloud",
                "base_url": cloud_fake.base_url,
                "models": ["gpt-4o"],
                "price_per_mtok": {"input": 2.5, "output": 10.0},
            },
        ]
    )
    with running(settings) as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_fakes(request: pytest.FixtureRequest) -> None:
    for name in ("local_fake", "cloud_fake"):
        if name in request.fixturenames:
            fake: FakeUpstream = request.getfixturevalue(name)
            if fake.process is not None:
                fake.reset()
