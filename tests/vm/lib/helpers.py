# Shared by the coordinator VM tests (prepended to their testScript).
import json
import shlex
from typing import Any

COORDINATOR = "http://127.0.0.1:8092"
LOCAL = "http://127.0.0.1:11434"
CLOUD = "http://127.0.0.1:18080"


def start_and_wait() -> None:
    start_all()
    for unit, port in (("fake-local", 11434), ("fake-cloud", 18080), ("hydra-coordinator", 8092)):
        machine.wait_for_unit(f"{unit}.service")
        machine.wait_for_open_port(port)
    machine.wait_until_succeeds(f"curl -fsS {COORDINATOR}/health")


def chat(model: str, content: str, expect_ok: bool = True) -> tuple[int, dict[str, str], str]:
    """POST one chat completion; return (status, lower-cased headers, body)."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": content}]})
    status = int(
        machine.succeed(
            "curl -sS -o /tmp/response -D /tmp/headers -w '%{http_code}' "
            "-H 'content-type: application/json' "
            f"--data-binary {shlex.quote(body)} {COORDINATOR}/v1/chat/completions"
        ).strip()
    )
    headers: dict[str, str] = {}
    for line in machine.succeed("cat /tmp/headers").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    response = machine.succeed("cat /tmp/response")
    if expect_ok:
        assert status == 200, f"{model}: HTTP {status}: {response}"
    return status, headers, response


def upstream_requests(base: str) -> list[Any]:
    """The requests a fake upstream received (GET /_requests), without GETs
    (health probes, model listings): what is left carries prompts."""
    data = json.loads(machine.succeed(f"curl -fsS {base}/_requests"))
    if isinstance(data, dict):
        data = data.get("requests", [])
    assert isinstance(data, list), data
    return [
        request
        for request in data
        if not (isinstance(request, dict) and str(request.get("method", "POST")).upper() == "GET")
    ]
