"""A web page is not a client: DNS rebinding (Host) and cross-origin requests (Origin,
Sec-Fetch-Site) are refused; origins allowed in the config get CORS. Real HTTP on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from .servers import CoordinatorServer, FakeUpstream, coordinator_settings, free_port, running

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hello from a web page"}]}
FRONT_END = "http://openwebui.lan:3000"
KEY = "browser-test-key-0123456789"


def listen(**extra: object) -> dict[str, object]:
    return {"host": "127.0.0.1", "port": free_port(), **extra}


@pytest.fixture(scope="module")
def open_coordinator(local_fake: FakeUpstream) -> Iterator[CoordinatorServer]:
    """The loopback default: no keys."""
    settings = coordinator_settings(
        [{"name": "ollama", "kind": "local", "base_url": local_fake.base_url}],
        listen=listen(allowed_hosts=["hydra.lan"]),
    )
    with running(settings) as server:
        yield server


@pytest.fixture(scope="module")
def keyed_with_cors(
    local_fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CoordinatorServer]:
    keys = tmp_path_factory.mktemp("keys") / "client-key"
    keys.write_text(KEY + "\n")
    settings = coordinator_settings(
        [{"name": "ollama", "kind": "local", "base_url": local_fake.base_url}],
        auth={"api_key_files": [str(keys)]},
        listen=listen(cors_origins=[FRONT_END]),
    )
    with running(settings) as server:
        yield server


def post_chat(server: CoordinatorServer, headers: dict[str, str]) -> httpx.Response:
    # what a page's fetch() without a preflight sends: a "simple" text/plain POST
    return httpx.post(
        f"{server.url}/v1/chat/completions",
        content=json.dumps(CHAT),
        headers={"content-type": "text/plain;charset=UTF-8", **headers},
        timeout=10,
    )


def test_a_cross_site_post_does_not_reach_the_upstream(
    open_coordinator: CoordinatorServer, local_fake: FakeUpstream
) -> None:
    response = post_chat(
        open_coordinator, {"origin": "http://evil.example", "sec-fetch-site": "cross-site"}
    )
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "origin_not_allowed"
    assert "listen.cors_origins" in error["message"]
    # an older browser sends Origin without Sec-Fetch-Site: refused the same
    assert post_chat(open_coordinator, {"origin": "http://evil.example"}).status_code == 403
    assert local_fake.requests() == []


def test_a_cross_site_read_without_origin_is_refused(open_coordinator: CoordinatorServer) -> None:
    # <script src> / no-cors fetch: no Origin header, but the browser says cross-site
    response = httpx.get(
        f"{open_coordinator.url}/v1/models", headers={"sec-fetch-site": "cross-site"}
    )
    assert response.status_code == 403


def test_a_rebound_host_name_is_refused(open_coordinator: CoordinatorServer) -> None:
    port = open_coordinator.settings.listen.port
    for path in ("/v1/models", "/health", "/metrics"):
        response = httpx.get(
            f"{open_coordinator.url}{path}", headers={"host": f"evil.example:{port}"}
        )
        assert response.status_code == 421, path
        assert response.json()["error"]["code"] == "host_not_allowed"
        assert "listen.allowed_hosts" in response.json()["error"]["message"]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "hydra.lan", f"hydra.lan:{port}"):
        assert httpx.get(f"{open_coordinator.url}/v1/models", headers={"host": host}).is_success


def test_clients_that_are_not_browsers_are_unaffected(open_coordinator: CoordinatorServer) -> None:
    with openai.OpenAI(base_url=f"{open_coordinator.url}/v1", api_key="unused") as client:
        answer = client.chat.completions.create(model="auto", messages=CHAT["messages"])
    assert answer.choices[0].message.content == "local: hello from a web page"
    # a same-origin page (e.g. a front end behind the same reverse proxy) is not cross-origin
    same = post_chat(
        open_coordinator, {"origin": "https://ai.lan", "sec-fetch-site": "same-origin"}
    )
    assert same.status_code == 200


def test_an_allowed_front_end_gets_cors(keyed_with_cors: CoordinatorServer) -> None:
    url = f"{keyed_with_cors.url}/v1/chat/completions"
    # the preflight carries no key: answered before authentication
    preflight = httpx.options(
        url,
        headers={
            "origin": FRONT_END,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == FRONT_END
    assert "POST" in preflight.headers["access-control-allow-methods"]
    response = httpx.post(
        url,
        json=CHAT,
        headers={
            "origin": FRONT_END,
            "sec-fetch-site": "cross-site",
            "authorization": f"Bearer {KEY}",
        },
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == FRONT_END
    assert "x-hydra-route" in response.headers["access-control-expose-headers"]
    # with keys (and no listen.allowed_hosts) any Host is served: the key is the protection
    named = httpx.get(
        f"{keyed_with_cors.url}/v1/models",
        headers={"host": "hydra-ai:8092", "authorization": f"Bearer {KEY}"},
    )
    assert named.status_code == 200
    # another origin is still refused, key or not
    other = httpx.post(
        url,
        json=CHAT,
        headers={"origin": "http://evil.example", "authorization": f"Bearer {KEY}"},
    )
    assert other.status_code == 403
