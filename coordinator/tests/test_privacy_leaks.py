"""Privacy through real HTTP: secrets and personal data in any part of a request, disguised or
split, never reach the cloud fake (and do reach the local one); look-alikes still may go to the
cloud; the scan is linear, budgeted, off the event loop; duplicate JSON keys cannot smuggle a
value past it. Each request asks for the cloud (``cloud``, a cloud model, or ``auto`` with a
prompt hard enough for the cloud)."""

from __future__ import annotations

import base64
import json
import threading
import urllib.request
from typing import Any, Literal

import httpx
import openai
import pytest

from hydra_coordinator.privacy import PrivacyConfig, PrivacyPolicy

from .servers import FakeUpstream, coordinator_settings, fetch, running

AWS = "AKIA2E0A8F3B244C9986"
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
HARD = "Design the architecture and compare the trade-offs step by step:\n```\ndef f(): ...\n```"


@pytest.fixture(scope="module")
def lab():
    local = FakeUpstream("local", ["llama"]).start()
    cloud = FakeUpstream("cloud", ["gpt-4o"]).start()
    settings = coordinator_settings(
        [
            {"name": "ollama", "kind": "local", "base_url": local.base_url},
            {"name": "openai", "kind": "cloud", "base_url": cloud.base_url, "models": ["gpt-4o"]},
        ]
    )  # the default rules: secrets and personal data stay local
    with running(settings) as server:
        yield server, local, cloud
    local.kill()
    cloud.kill()


@pytest.fixture
def fakes(lab):
    server, local, cloud = lab
    local.reset()
    cloud.reset()
    return server, local, cloud


def chat(server, *, raw: bool = True, timeout: float = 30, **request: Any) -> Any:
    """One chat completion through the official client (closed afterwards); with ``raw``, the
    raw response (headers included)."""
    with openai.OpenAI(
        base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=timeout
    ) as client:
        if raw:
            return client.chat.completions.with_raw_response.create(**request)
        return client.chat.completions.create(**request)


def user(text: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def tool(description: str = "Look something up", **schema: Any) -> dict[str, Any]:
    parameters = {"type": "object", "properties": schema or {"q": {"type": "string"}}}
    return {
        "type": "function",
        "function": {"name": "lookup", "description": description, "parameters": parameters},
    }


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def assert_kept_local(local, cloud, marker: str, raw) -> None:
    """Nothing reached the cloud fake; the local fake got the request, marker included."""
    assert raw.headers["x-hydra-route"] == "local"
    assert cloud.requests() == []
    received = local.requests()
    assert len(received) == 1
    assert marker in received[0]["raw"] or marker in json.dumps(
        received[0]["body"], ensure_ascii=False
    )


# --------------------------------------------------------------------------- blind fields

# Where a secret sits in a chat request: every field is sent upstream, so every field counts.
BLIND_FIELDS: dict[str, dict[str, Any]] = {
    "tool description": {"messages": user(HARD), "tools": [tool(f"deploy with {AWS}")]},
    "parameter default": {
        "messages": user(HARD),
        "tools": [tool(token={"type": "string", "default": GITHUB})],
    },
    "parameter enum": {
        "messages": user(HARD),
        "tools": [tool(token={"type": "string", "enum": [GITHUB, "none"]})],
    },
    "legacy functions": {
        "messages": user(HARD),
        "functions": [{"name": "f", "description": f"token {GITHUB}", "parameters": {}}],
    },
    "response_format json_schema": {
        "messages": user(HARD),
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": {"type": "object", "description": AWS}},
        },
    },
    "stop": {"messages": user(HARD), "stop": [GITHUB]},
    "user": {"messages": user(HARD), "user": "jane.doe@gmail.com"},
    "metadata": {"messages": user(HARD), "metadata": {"db": "postgres://app:Xk29sLq7w@db/x"}},
    "prediction": {"messages": user(HARD), "prediction": {"type": "content", "content": AWS}},
    "tool_choice": {
        "messages": user(HARD),
        "tools": [tool()],
        "tool_choice": {"type": "function", "function": {"name": GITHUB}},
    },
    "message name": {"messages": [{"role": "user", "content": HARD, "name": GITHUB}]},
    "tool call name": {
        "messages": [
            {"role": "user", "content": HARD},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": GITHUB, "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ]
    },
    "unknown top-level field": {"messages": user(HARD), "x_notes": {"deploy": AWS}},
    "a key, not a value": {"messages": user(HARD), "metadata": {GITHUB: "ok"}},
    "image_url data: URL of text": {
        "messages": user(
            [
                {"type": "text", "text": HARD},
                {"type": "image_url", "image_url": {"url": "data:text/plain;base64," + b64(AWS)}},
            ]
        )
    },
    "image_url data: URL decoding to text": {
        "messages": user(
            [
                {"type": "text", "text": HARD},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64," + b64(f"key {AWS}")},
                },
            ]
        )
    },
    "image_url with user:pass@": {
        "messages": user(
            [
                {"type": "text", "text": HARD},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://admin:Hx8!vR2qLp@img.corp.lan/a.png"},
                },
            ]
        )
    },
    "image_url with ?access_token=": {
        "messages": user(
            [
                {"type": "text", "text": HARD},
                {
                    "type": "image_url",
                    "image_url": {
                        "url": "https://img.corp.lan/a.png?access_token=8Zq4TfK2pLx9VbN3mR7w"
                    },
                },
            ]
        )
    },
    "file part file_data": {
        "messages": user(
            [
                {"type": "text", "text": HARD},
                {
                    "type": "file",
                    "file": {
                        "filename": ".env",
                        "file_data": "data:text/plain;base64," + b64("DB_PASSWORD=s3cr3tP4ss!24"),
                    },
                },
            ]
        )
    },
    "content part under another key": {
        "messages": user(
            [
                {"type": "text", "text": HARD},
                {"type": "document", "source": {"type": "text", "data": f"key {AWS}"}},
            ]
        )
    },
}
MARKERS = {
    "user": "jane.doe@gmail.com",
    "metadata": "Xk29sLq7w",
    "image_url with user:pass@": "Hx8!vR2qLp",
    "image_url with ?access_token=": "8Zq4TfK2pLx9VbN3mR7w",
    "file part file_data": b64("DB_PASSWORD=s3cr3tP4ss!24"),
    "image_url data: URL of text": b64(AWS),
    "image_url data: URL decoding to text": b64(f"key {AWS}"),
}


def _create(server, model: str, request: dict[str, Any]):
    fields = {k: v for k, v in request.items() if k != "messages"}
    known = {"tools", "functions", "response_format", "stop", "user", "metadata"}
    known |= {"prediction", "tool_choice"}
    kwargs = {k: v for k, v in fields.items() if k in known}
    extra = {k: v for k, v in fields.items() if k not in known}
    return chat(
        server, model=model, messages=request["messages"], extra_body=extra or None, **kwargs
    )


@pytest.mark.parametrize("model", ["cloud", "gpt-4o"])
@pytest.mark.parametrize("field", sorted(BLIND_FIELDS))
def test_a_secret_in_any_field_stays_local(fakes, field, model):
    server, local, cloud = fakes
    raw = _create(server, model, BLIND_FIELDS[field])
    marker = MARKERS.get(field, GITHUB if GITHUB in json.dumps(BLIND_FIELDS[field]) else AWS)
    assert_kept_local(local, cloud, marker, raw)


def test_route_reads_the_whole_context(fakes):
    server, _, cloud = fakes
    assert cloud.requests() == []
    request = urllib.request.Request(
        f"{server.url}/route",
        data=json.dumps({"query": HARD, "context": {"tools": [tool(f"uses {AWS}")]}}).encode(),
        headers={"content-type": "application/json"},
    )
    decision = json.loads(fetch(request))
    assert decision["route"] == "local"
    assert decision["privacy_rule"] == "secrets-stay-local"
    assert AWS not in json.dumps(decision)


# --------------------------------------------------------------------------- disguises

ZERO_WIDTH = "\u200b"
DISGUISES: dict[str, tuple[list[dict[str, Any]], str]] = {
    # normalisation: invisible characters inside a key, fullwidth forms of a token
    "zero-width space in a key": (
        user(f"{HARD}\nkey {AWS[:8]}{ZERO_WIDTH}{AWS[8:]}"),
        AWS[8:],
    ),
    "soft hyphen and joiner in a token": (
        user(f"{HARD}\n{GITHUB[:10]}\u00ad{GITHUB[10:20]}\u2060{GITHUB[20:]}"),
        GITHUB[20:],
    ),
    "fullwidth token": (
        user(HARD + "\n" + "".join(chr(ord(c) + 0xFEE0) for c in GITHUB)),
        chr(ord("g") + 0xFEE0),
    ),
    # across messages and parts
    "token split across two messages": (
        [
            {"role": "user", "content": f"{HARD}\n{GITHUB[:18]}"},
            {"role": "user", "content": GITHUB[18:]},
        ],
        GITHUB[18:],
    ),
    "token split across two parts": (
        user([{"type": "text", "text": HARD + AWS[:9]}, {"type": "text", "text": AWS[9:]}]),
        AWS[9:],
    ),
    # trailing punctuation: a sentence's final period
    "SSN then a period": (user(f"{HARD}\nMy SSN is 536-22-4817."), "536-22-4817"),
    "card then a period": (user(f"{HARD}\nmy Visa 4398 2597 9190 7482."), "4398 2597"),
    "international phone then a period": (user(f"{HARD}\nCall +49 151 23456789."), "23456789"),
    "US phone then a period": (user(f"{HARD}\nMy number is (646) 867-5309."), "867-5309"),
    # passwords
    "URL password with special characters": (
        user(f"{HARD}\npostgresql://app:Tr0ub4dor&3xyz@db/app"),
        "Tr0ub4dor&3xyz",
    ),
    "URL password with @ ! # ?": (user(f"{HARD}\nmysql://root:p@ss!w0rd#1?@db.lan/app"), "w0rd"),
    "password in prose": (user(f"{HARD}\nThe password is Summer2024! for the VPN."), "Summer2024"),
    "SQLAlchemy DSN": (
        user(f"{HARD}\nengine = create_engine('postgresql+psycopg2://user:pass@host/db')"),
        "user:pass@host",
    ),
    "password quoted in prose": (
        user(f"{HARD}\nSign in with the password `Hq7!zR4mPw` from the onboarding mail."),
        "Hq7!zR4mPw",
    ),
    "password in German prose": (user(f"{HARD}\nDas Passwort lautet Rotkehlchen#77"), "#77"),
    "curl -u user:password": (
        user(f"{HARD}\ncurl -u ci:Vb6!nQ2xLp https://jenkins.lan/api/json"),
        "Vb6!nQ2xLp",
    ),
    "docker login -p": (
        user(f"{HARD}\ndocker login -u bot -p Ke9#tW3qZm harbor.lan"),
        "Ke9#tW3qZm",
    ),
    "NHS number in a CSV column": (
        user(f"{HARD}\nname,nhs_number,ward\nJ. Patel,943 476 5919,B2"),
        "943 476 5919",
    ),
    "base64 of a secret": (user(f"{HARD}\nconfig: {b64('DB_PASSWORD=hunter2Hunter')}"), "REJfUEFT"),
    "percent-encoded password": (
        user(f"{HARD}\nhttps://api.lan/login?password=Tr0ub4dor%263xyz"),
        "Tr0ub4dor",
    ),
}


@pytest.mark.parametrize("model", ["cloud", "gpt-4o"])
@pytest.mark.parametrize("disguise", sorted(DISGUISES))
def test_disguised_secrets_stay_local(fakes, disguise, model):
    server, local, cloud = fakes
    messages, marker = DISGUISES[disguise]
    raw = chat(server, model=model, messages=messages)
    assert_kept_local(local, cloud, marker, raw)


# Each character a password may carry unencoded in a URL, inside the password and first in it
# ("$Zp3kL9qW2" is a password, not a shell variable: it mixes cases and digits).
URL_SPECIALS = "!$&*+,;=(#?"


@pytest.mark.parametrize("first", [False, True], ids=["inside", "first"])
@pytest.mark.parametrize("char", list(URL_SPECIALS))
def test_url_passwords_with_special_characters_stay_local(fakes, char, first):
    server, local, cloud = fakes
    password = f"{char}Zp3kL9qW2" if first else f"Tr0ub4dor{char}3xyz"
    raw = chat(server, model="cloud", messages=user(f"{HARD}\nredis://app:{password}@cache:6379/0"))
    assert_kept_local(local, cloud, password, raw)


def test_variables_in_a_url_are_no_password(fakes):
    """A URL template names its password with a variable: that may go to the cloud."""
    server, local, cloud = fakes
    template = "redis://app:$REDIS_PASSWORD@cache:6379/0 or redis://app:%(password)s@cache:6379/0"
    raw = chat(server, model="cloud", messages=user(f"Explain this setting: {template}"))
    assert raw.headers["x-hydra-route"] == "cloud"
    assert len(cloud.requests()) == 1 and local.requests() == []


# --------------------------------------------------------------------------- look-alikes

PEM_PUBLIC = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
    "4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u\n"
    "+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyeh\n"
    "-----END PUBLIC KEY-----"
)
LOOK_ALIKES = {
    "order number": "Where is order 2024-11-05-000123? It has not shipped.",
    "timestamp": "The job failed at 2024-05-06 12:30:45 with exit code 137.",
    "base64 of harmless text": "Decode this: "
    + b64("Hello world, this is a harmless test message."),
    "a published test card": "Stripe's test card 4242 4242 4242 4242 always succeeds.",
    "PEM public key": f"Is this key RSA or EC?\n{PEM_PUBLIC}",
    "SSH public key": "Add this to authorized_keys: ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl deploy@ci",
    "empty .env placeholders": "Fill in my .env:\nDB_PASSWORD=\nAPI_URL=https://api.lan\nSECRET_KEY=\n",
    "a login tool's schema": "Log me in with the login tool.",
}


TEMPLATES: dict[str, list[dict[str, Any]]] = {
    "a placeholder in brackets": user("Explain this setting: password: [value]"),
    "a placeholder in angle brackets, then a sentence": user("Set the password to <password>."),
    "a placeholder ending a message, the next one after it": [
        {"role": "user", "content": "My config says password = [value]"},
        {"role": "user", "content": "ok thanks, what goes there?"},
    ],
    "a placeholder ending an instruction, the answer after it": [
        {"role": "user", "content": "Set PASSWORD=[value]"},
        {"role": "assistant", "content": "Done, PASSWORD is set."},
        {"role": "user", "content": "Where is it read?"},
    ],
}


@pytest.mark.parametrize("case", sorted(TEMPLATES))
def test_templates_may_go_to_the_cloud(fakes, case):
    """A template's placeholder is no secret, also where its closing bracket could read as a
    sentence's punctuation or its message meets the next one."""
    server, local, cloud = fakes
    raw = chat(server, model="cloud", messages=TEMPLATES[case])
    assert raw.headers["x-hydra-route"] == "cloud"
    assert len(cloud.requests()) == 1 and local.requests() == []


@pytest.mark.parametrize("case", sorted(LOOK_ALIKES))
def test_look_alikes_may_go_to_the_cloud(fakes, case):
    server, local, cloud = fakes
    tools = None
    if case == "a login tool's schema":
        tools = [
            tool(
                "Log in with a user name and password",
                username={"type": "string"},
                password={"type": "string", "description": "the user's password"},
            )
        ]
    kwargs = {"tools": tools} if tools else {}
    raw = chat(server, model="cloud", messages=user(LOOK_ALIKES[case]), **kwargs)
    assert raw.headers["x-hydra-route"] == "cloud"
    assert len(cloud.requests()) == 1 and local.requests() == []


# --------------------------------------------------------------------------- parser tricks


def test_duplicate_keys_cannot_smuggle_a_value_past_the_scan(fakes):
    """The scan reads the parsed body (the last of duplicate keys); what goes upstream is that
    same parsed body, never the client's bytes with the other value."""
    server, local, cloud = fakes
    body = (
        '{"model": "gpt-4o", "messages": [{"role": "user", '
        f'"content": "token {GITHUB}", "content": "hello"}}]}}'
    )
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=body.encode(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200
    sent = [entry["raw"] for entry in cloud.requests() + local.requests()]
    assert len(sent) == 1
    assert GITHUB not in sent[0]
    assert json.loads(sent[0])["messages"][0]["content"] == "hello"


# --------------------------------------------------------------------------- cost


def test_a_request_built_to_backtrack_is_answered_at_once(fakes):
    """'=' + 'PASSWORD' * n made a backtracking keyword regex run for minutes (8 KB: 7 s,
    50 KB: 254 s); with linear matching it is an ordinary request."""
    server, local, cloud = fakes
    completion = chat(
        server,
        raw=False,
        timeout=60,
        model="cloud",
        messages=user("=" + "PASSWORD" * 6000 + " " + "eyJ" * 20000),
    )
    assert completion.choices[0].message.content
    assert len(cloud.requests() + local.requests()) == 1


def test_a_scan_over_its_cpu_budget_fails_closed(tmp_path):
    local = FakeUpstream("local", ["llama"]).start()
    cloud = FakeUpstream("cloud", ["gpt-4o"]).start()
    try:
        settings = coordinator_settings(
            [
                {"name": "ollama", "kind": "local", "base_url": local.base_url},
                {"name": "openai", "kind": "cloud", "base_url": cloud.base_url},
            ],
            privacy={"scan_cpu_ms": 0, "scan_cpu_ms_per_mb": 0},  # no scan can finish
        )
        with running(settings) as server:
            raw = chat(server, model="cloud", messages=user("Explain Python generators."))
            route = httpx.post(f"{server.url}/route", json={"query": "hi"}, timeout=30).json()
        assert raw.headers["x-hydra-route"] == "local"
        assert cloud.requests() == [] and len(local.requests()) == 1
        assert route["privacy_rule"] == "scan-budget"
        assert any("CPU budget" in reason for reason in route["reasons"])
    finally:
        local.kill()
        cloud.kill()


class _Gate:
    """A detector that holds its scan until the test opens the gate."""

    name = "aws_access_key"
    category: Literal["secret"] = "secret"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()

    def scan(self, text: str) -> bool:
        self.entered.set()
        self.open.wait(30)
        return False


def test_a_long_scan_does_not_hold_up_other_requests(fakes):
    """A large request is scanned in a worker thread: while its scan runs, /health answers."""
    server, _, _ = fakes
    gate = _Gate()
    rules = {"rules": [{"name": "held", "action": "local_only", "detectors": ["aws_access_key"]}]}
    original = server.runtime.router.privacy
    server.runtime.router.privacy = PrivacyPolicy(
        PrivacyConfig.model_validate(rules), {"aws_access_key": gate}
    )
    results: list[Any] = []
    big = "Summarise this log.\n" + "GET /index.html 200 0.004s\n" * 4000  # about 100 KB
    worker = threading.Thread(
        target=lambda: results.append(chat(server, raw=False, model="auto", messages=user(big)))
    )
    try:
        worker.start()
        assert gate.entered.wait(30), "the scan never started"
        health = json.loads(fetch(f"{server.url}/health", timeout=10))
        assert health["status"] in ("healthy", "degraded")
        assert worker.is_alive()  # the chat request is still waiting for its scan
    finally:
        gate.open.set()
        worker.join(30)
        server.runtime.router.privacy = original
    assert len(results) == 1
