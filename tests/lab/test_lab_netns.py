"""The lab scenario on one machine: three network namespaces (storage, ai,
compute) joined by a bridge, addresses from tests/lab/topology.json (kept
equal to hosts/lab.nix by tests/eval/test-lab-topology.nix).

* test_plumbing_*: the namespaces, veths and link cuts themselves, with
  Python sockets and a stdlib HTTP server; needs only root and iproute2.
* test_coordinator_*: the coordinator (`python -m hydra_coordinator serve`)
  in storage, fake TabbyAPI and Ollama (coordinator/tests/fakes/fake_openai.py)
  in ai and compute; routing, /health, /metrics, failover when compute's
  link goes down, recovery when it comes back. They FAIL (not skip) when
  the coordinator or the fake server is missing: the repo has both.

Without root or iproute2 the whole file is skipped, unless HYDRA_LAB_REQUIRED
is set (tests/run sets it when it runs as root): then that is a failure.
Names carry a random tag, so parallel runs do not clash; the namespaces are
removed even when a test fails or pytest is stopped with SIGTERM/SIGINT.

Run as root:  .venv/bin/pytest -q tests/lab
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOPOLOGY = json.loads((ROOT / "tests" / "lab" / "topology.json").read_text())
FAKE = ROOT / "coordinator" / "tests" / "fakes" / "fake_openai.py"
COORDINATOR_SRC = ROOT / "coordinator"

ROLE_NODE = {
    role: name for name, node in TOPOLOGY["nodes"].items() for role in node["roles"]
}
PORTS = TOPOLOGY["ports"]
# Random, so that parallel runs never share a namespace or veth name; short,
# so that the veth names (TAG + 2 chars) stay within IFNAMSIZ (15).
TAG = f"h{secrets.token_hex(3)}"

_MISSING = (
    "needs root"
    if os.geteuid() != 0
    else "needs iproute2 (ip netns)"
    if shutil.which("ip") is None
    else None
)
if _MISSING and os.environ.get("HYDRA_LAB_REQUIRED"):
    raise RuntimeError(
        f"tests/lab: HYDRA_LAB_REQUIRED is set but the lab test {_MISSING}"
    )
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True)


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.2, what: str = ""):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - keep polling; report the last failure
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or predicate}: last={last!r}")


# Runs inside a namespace: one HTTP request, the answer as JSON on stdout.
HTTP_CLIENT = r"""
import json, sys, urllib.request, urllib.error
method, url, body, headers = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
req = urllib.request.Request(url, data=body.encode() if body else None, method=method, headers=headers)
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        out = {"status": r.status, "headers": {k.lower(): v for k, v in r.headers.items()}, "body": r.read().decode()}
except urllib.error.HTTPError as e:
    out = {"status": e.code, "headers": {k.lower(): v for k, v in e.headers.items()}, "body": e.read().decode()}
except Exception as e:
    out = {"status": 0, "headers": {}, "body": repr(e)}
print(json.dumps(out))
"""

# Runs inside a namespace: a TCP connect to a port nobody listens on. "refused"
# means the peer's kernel answered with a RST, i.e. it is reachable; without a
# route or link the connect fails otherwise or times out.
TCP_PROBE = r"""
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
    print("open")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print(type(e).__name__)
"""


class Lab:
    """Namespaces <tag>-storage/-ai/-compute plus <tag>-lan holding the bridge."""

    def __init__(self) -> None:
        self.ns = {role: f"{TAG}-{role}" for role in ("storage", "ai", "compute")}
        self.hub = f"{TAG}-lan"
        self.procs: list[subprocess.Popen] = []
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="hydra-lab-"))

    def address(self, role: str) -> str:
        return TOPOLOGY["nodes"][ROLE_NODE[role]]["address"]

    def hub_port(self, role: str) -> str:
        return f"{TAG}{role[0]}"  # the bridge side of the role's veth

    def veths(self) -> list[str]:
        return [
            name
            for role in self.ns
            for name in (f"{TAG}{role[0]}n", self.hub_port(role))
        ]

    def up(self) -> None:
        run("ip", "netns", "add", self.hub)
        run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.hub, "link", "set", "br0", "up")
        for role, ns in self.ns.items():
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
            node_if = f"{TAG}{role[0]}n"
            run(
                "ip",
                "link",
                "add",
                node_if,
                "type",
                "veth",
                "peer",
                "name",
                self.hub_port(role),
            )
            run("ip", "link", "set", node_if, "netns", ns)
            run("ip", "link", "set", self.hub_port(role), "netns", self.hub)
            run("ip", "-n", ns, "link", "set", node_if, "name", "eth0")
            run(
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                f"{self.address(role)}/{TOPOLOGY['prefixLength']}",
                "dev",
                "eth0",
            )
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run(
                "ip",
                "-n",
                self.hub,
                "link",
                "set",
                self.hub_port(role),
                "master",
                "br0",
            )
            run("ip", "-n", self.hub, "link", "set", self.hub_port(role), "up")

    def down(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for ns in [*self.ns.values(), self.hub]:
            run("ip", "netns", "del", ns, check=False)  # removes its veths too
        # A veth still in the root namespace (up() failed half-way).
        existing = run("ip", "-o", "link", "show", check=False).stdout
        for name in self.veths():
            if f" {name}@" in existing or f" {name}:" in existing:
                run("ip", "link", "del", name, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def set_link(self, role: str, up: bool) -> None:
        run(
            "ip",
            "-n",
            self.hub,
            "link",
            "set",
            self.hub_port(role),
            "up" if up else "down",
        )

    def spawn(
        self,
        role: str,
        *argv: str,
        cwd: pathlib.Path | None = None,
        env: dict | None = None,
    ) -> subprocess.Popen:
        with open(
            self.tmp / f"{role}-{len(self.procs)}.log", "w"
        ) as log:  # the child keeps its copy
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns[role], *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
            )
        self.procs.append(proc)
        return proc

    def http(
        self,
        role: str,
        method: str,
        url: str,
        body: dict | None = None,
        headers: dict | None = None,
    ) -> dict:
        hdrs = {"content-type": "application/json", **(headers or {})}
        out = run(
            "ip",
            "netns",
            "exec",
            self.ns[role],
            sys.executable,
            "-c",
            HTTP_CLIENT,
            method,
            url,
            json.dumps(body) if body is not None else "",
            json.dumps(hdrs),
        )
        return json.loads(out.stdout)

    def tcp_probe(self, role: str, address: str, port: int) -> str:
        out = run(
            "ip",
            "netns",
            "exec",
            self.ns[role],
            sys.executable,
            "-c",
            TCP_PROBE,
            address,
            str(port),
        )
        return out.stdout.strip()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}"
            for p in sorted(self.tmp.glob("*.log"))
        )


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="module")
def lab():
    lab = Lab()
    # SIGTERM (CI timeouts) would end pytest without running `finally`.
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()
        signal.signal(signal.SIGTERM, previous)


# --- plumbing -----------------------------------------------------------------


def test_plumbing_addresses_and_reachability(lab: Lab):
    for role in lab.ns:
        addrs = json.loads(
            run(
                "ip", "-j", "-n", lab.ns[role], "-4", "addr", "show", "dev", "eth0"
            ).stdout
        )
        assert [a["local"] for a in addrs[0]["addr_info"]] == [lab.address(role)], addrs
    closed_port = 18099  # nothing listens there: a reachable peer refuses
    for client, server in (
        ("storage", "ai"),
        ("storage", "compute"),
        ("ai", "compute"),
        ("compute", "storage"),
    ):
        assert lab.tcp_probe(client, lab.address(server), closed_port) == "refused", (
            client,
            server,
        )
    lab.set_link("compute", up=False)
    try:
        assert (
            lab.tcp_probe("storage", lab.address("compute"), closed_port) != "refused"
        )
    finally:
        lab.set_link("compute", up=True)


def test_plumbing_http_between_all_nodes(lab: Lab):
    port = 18081
    servers = [
        lab.spawn(
            role,
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            lab.address(role),
            str(port),
            cwd=lab.tmp,
        )
        for role in ("ai", "compute")
    ]
    try:
        for client, server in (
            ("storage", "ai"),
            ("storage", "compute"),
            ("ai", "compute"),
        ):
            url = f"http://{lab.address(server)}:{port}/"
            wait_until(
                lambda c=client, u=url: lab.http(c, "GET", u)["status"] == 200,
                what=f"{client} -> {server}",
            )
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(timeout=5)


def test_plumbing_http_and_link_cut(lab: Lab):
    port = 18080
    proc = lab.spawn(
        "compute",
        sys.executable,
        "-m",
        "http.server",
        "--bind",
        lab.address("compute"),
        str(port),
        cwd=lab.tmp,
    )
    url = f"http://{lab.address('compute')}:{port}/"
    wait_until(
        lambda: lab.http("storage", "GET", url)["status"] == 200,
        what="http.server in compute",
    )
    lab.set_link("compute", up=False)
    try:
        assert lab.http("storage", "GET", url)["status"] == 0
    finally:
        lab.set_link("compute", up=True)
    wait_until(
        lambda: lab.http("storage", "GET", url)["status"] == 200,
        what="recovery after link up",
    )
    proc.terminate()
    proc.wait(timeout=5)


# --- coordinator --------------------------------------------------------------


def _coordinator_available() -> str | None:
    if not FAKE.exists():
        return f"{FAKE.relative_to(ROOT)} not found"
    probe = subprocess.run(
        [sys.executable, "-c", "import aiohttp, hydra_coordinator"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(COORDINATOR_SRC)},
    )
    if probe.returncode != 0:
        return (
            "hydra_coordinator or aiohttp not importable: "
            + probe.stderr.strip().splitlines()[-1]
        )
    return None


@pytest.fixture(scope="module")
def coordinator(lab: Lab):
    reason = _coordinator_available()
    if reason:
        pytest.fail(f"the coordinator lab tests cannot run: {reason}")

    fakes = {
        "ai": ("tabbyapi", PORTS["tabbyapi"], "fake-exl3-70b"),
        "compute": ("ollama", PORTS["ollama"], "fake-qwen3:14b"),
    }
    for role, (name, port, model) in fakes.items():
        lab.spawn(
            role,
            sys.executable,
            str(FAKE),
            "--host",
            lab.address(role),
            "--port",
            str(port),
            "--name",
            name,
            "--models",
            model,
            "--log",
            str(lab.tmp / f"{name}-requests.jsonl"),
        )

    # Same backends as hosts/lab.nix derives (hydra.lab.backends); fast health
    # checks so failover is quick. Loopback listen: auth may stay empty.
    config = {
        "listen": {"host": "127.0.0.1", "port": PORTS["coordinator"]},
        "backends": [
            {
                "name": name,
                "kind": "local",
                "base_url": f"http://{lab.address(role)}:{port}/v1",
                "models": [],
                "price_per_mtok": {"input": 0.0, "output": 0.0},
                "max_concurrency": 4,
            }
            for role, (name, port, _) in fakes.items()
        ],
        "health": {
            "interval_s": 0.5,
            "timeout_s": 0.5,
            "failure_threshold": 2,
            "cooldown_s": 1.0,
        },
        "log": {"level": "info"},
    }
    config_file = lab.tmp / "coordinator.json"
    config_file.write_text(json.dumps(config))
    env = {
        **os.environ,
        "PYTHONPATH": str(COORDINATOR_SRC),
        "HYDRA_COORDINATOR_CONFIG": str(config_file),
        "STATE_DIRECTORY": str(lab.tmp / "state"),
    }
    (lab.tmp / "state").mkdir()
    lab.spawn(
        "storage",
        sys.executable,
        "-m",
        "hydra_coordinator",
        "serve",
        "--config",
        str(config_file),
        cwd=COORDINATOR_SRC,
        env=env,
    )
    base = f"http://127.0.0.1:{PORTS['coordinator']}"
    try:
        wait_until(
            lambda: backends(lab, base) == {"tabbyapi": "healthy", "ollama": "healthy"},
            timeout=30,
            what="both backends healthy",
        )
    except AssertionError:
        pytest.fail("coordinator did not come up:\n" + lab.logs())
    return base


def backends(lab: Lab, base: str) -> dict:
    return json.loads(lab.http("storage", "GET", f"{base}/health")["body"])["backends"]


def backend_up(lab: Lab, base: str, name: str) -> float | None:
    for line in lab.http("storage", "GET", f"{base}/metrics")["body"].splitlines():
        if line.startswith("hydra_backend_up{") and f'backend="{name}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def chat(lab: Lab, base: str) -> dict:
    return lab.http(
        "storage",
        "POST",
        f"{base}/v1/chat/completions",
        {"model": "auto", "messages": [{"role": "user", "content": "hello lab"}]},
    )


def test_coordinator_routes_to_the_lab(lab: Lab, coordinator: str):
    seen = set()
    for _ in range(6):
        resp = chat(lab, coordinator)
        assert resp["status"] == 200, resp
        assert resp["headers"].get("x-hydra-route"), resp["headers"]
        seen.add(resp["headers"]["x-hydra-backend"])
    assert seen <= {"tabbyapi", "ollama"}
    assert backend_up(lab, coordinator, "tabbyapi") == 1.0
    assert backend_up(lab, coordinator, "ollama") == 1.0


def test_coordinator_fails_over_and_recovers(lab: Lab, coordinator: str):
    lab.set_link("compute", up=False)
    try:
        wait_until(
            lambda: backends(lab, coordinator).get("ollama") == "down",
            what="ollama marked down",
        )
        health = json.loads(lab.http("storage", "GET", f"{coordinator}/health")["body"])
        assert health["backends"]["tabbyapi"] == "healthy", health
        assert backend_up(lab, coordinator, "ollama") == 0.0
        for _ in range(4):
            resp = chat(lab, coordinator)
            assert resp["status"] == 200, resp
            assert resp["headers"]["x-hydra-backend"] == "tabbyapi", resp["headers"]
    finally:
        lab.set_link("compute", up=True)
    wait_until(
        lambda: backends(lab, coordinator).get("ollama") == "healthy",
        timeout=30,
        what="ollama healthy again",
    )
    assert backend_up(lab, coordinator, "ollama") == 1.0
    assert chat(lab, coordinator)["status"] == 200
