"""Pacing to a monthly cloud spend, through the real HTTP API (the official openai client, fake
upstreams): a tight pace sends fewer requests to the cloud, those that gain most first, and the
spend follows the pace; a spent pace keeps requests local; the month's spend survives a restart;
``/route`` shows where the spend stands."""

from __future__ import annotations

import calendar
import random
import time
from pathlib import Path
from typing import Any

import pytest

from hydra_coordinator.config import ConfigError, settings_from_dict
from hydra_coordinator.routing.knobs import month_end

from .servers import running
from .test_routing_quality import ask, route, settings_for

DAY = 86400.0
STEP_S = 600.0  # the clock the pacer reads moves this much between two requests


def _prompts(count: int) -> list[str]:
    """Questions from no reason for the cloud to much, each a little different (seeded)."""
    rng = random.Random(7)
    subjects = ["a message queue", "a billing service", "a sensor network", "a photo archive"]
    subjects += ["a chat server", "a DNS resolver", "a backup system", "a CI pipeline"]
    asks = ["What is {s}?", "Explain how {s} works", "Write a short poem about {s}"]
    asks += ["Design {s}", "Compare two ways to build {s}", "Explain step by step how to scale {s}"]
    extras = ["", " with HA and failover", " across a multi-tier deployment", " step by step"]
    extras += [" and compare the trade-offs", " for 10,000 users", " that is sharded"]
    found: dict[str, None] = {}
    while len(found) < count:
        text = rng.choice(asks).format(s=rng.choice(subjects)) + rng.choice(extras)
        found[text + (rng.choice(extras) if rng.random() < 0.5 else "")] = None
    return list(found)


PROMPTS = _prompts(150)
WARM_UP = 30  # requests the pacer sees before it moves the required gain


class Clock:
    """The time the pacer reads: ten days into this month, moved on by the test."""

    def __init__(self) -> None:
        t = time.gmtime()
        self.now = float(calendar.timegm((t.tm_year, t.tm_mon, 10, 0, 0, 0)))

    def __call__(self) -> float:
        return self.now


def paced(fakes: Any, state: Path, monthly_usd: float | None) -> Any:
    pacing = {} if monthly_usd is None else {"monthly_usd": monthly_usd}
    # a loaded test machine must not make a privacy scan fail closed (local) and skew the share
    privacy = {"scan_cpu_ms": 2000}
    return settings_for(fakes, state, routing={"pacing": pacing}, privacy=privacy)


def stream(server: Any, clock: Clock | None, prompts: list[str] = PROMPTS) -> list[str]:
    routes = []
    for text in prompts:
        routes.append(ask(server, text)[1])
        if clock is not None:
            clock.now += STEP_S
    return routes


def gains(server: Any) -> dict[str, float]:
    return {text: route(server, text)["cloud_gain"]["mean"] for text in PROMPTS}


def spent(server: Any) -> float:
    """The month's spend as /route reports it, once the last request's cost is in."""
    deadline = time.monotonic() + 5
    pacer = server.runtime.router.pacer
    while pacer.unsettled() and time.monotonic() < deadline:  # counted as records arrive
        time.sleep(0.01)
    return float(route(server, PROMPTS[0])["pacing"]["spent_usd"])


def test_a_tight_pace_sends_the_prompts_that_gain_most_and_follows_the_pace(fakes, tmp_path):
    with running(paced(fakes, tmp_path / "free", None)) as server:
        free = stream(server, None)
        gain = gains(server)
        assert route(server, PROMPTS[0])["pacing"] is None  # no pace set, none shown
    free_share = free.count("cloud") / len(free)
    assert free_share > 0.2, free_share

    clock = Clock()
    left = month_end(clock.now) - clock.now
    # a pace worth about one request in twenty at what a request really costs (the fake
    # upstream answers in a few tokens: far below the expected cost, which the pacer corrects)
    per_request = 2e-4
    budget = 0.06 * per_request * left / STEP_S
    with running(paced(fakes, tmp_path / "paced", budget)) as server:
        server.runtime.router.pacer.clock = clock
        start = route(server, PROMPTS[0])["pacing"]
        assert start["monthly_usd"] == pytest.approx(budget)
        assert start["spent_usd"] == 0 and start["share"] is None
        assert start["pace_usd_per_day"] == pytest.approx(budget / left * DAY, rel=1e-3)
        stream(server, clock, PROMPTS[:WARM_UP])  # the pacer sees requests before it paces
        assert server.runtime.router.pacer.status().share is not None
        at_warm = spent(server)
        begun = clock.now
        measured = PROMPTS[WARM_UP:]
        routes = stream(server, clock, measured)
        paced_spend = spent(server) - at_warm
        end = route(server, PROMPTS[-1])
        state = end["pacing"]
    share = routes.count("cloud") / len(routes)
    assert 0 < share < free_share / 2, (share, free_share)
    # the money went where the cloud gains most
    cloud_gain = [gain[t] for t, r in zip(measured, routes, strict=True) if r == "cloud"]
    local_gain = [gain[t] for t, r in zip(measured, routes, strict=True) if r == "local"]
    assert min(cloud_gain) > sorted(local_gain)[len(local_gain) * 9 // 10], (cloud_gain, local_gain)
    # the spend follows the pace: what the pace allowed over the time the requests took
    allowed = budget / left * (clock.now - begun)
    assert 0.5 * allowed < paced_spend < 1.5 * allowed + per_request, (paced_spend, allowed)
    assert state["required_gain"] > end["cloud_gain"]["mean"]  # the cheap prompt stays home
    assert any(r.startswith("pacing: $") for r in end["reasons"]), end["reasons"]

    with running(paced(fakes, tmp_path / "paced", budget)) as server:
        server.runtime.router.pacer.clock = clock
        # the month's spend was saved and is read back: the pace goes on where it was
        assert route(server, PROMPTS[0])["pacing"]["spent_usd"] == state["spent_usd"]
    clock.now = month_end(clock.now) + 1
    with running(paced(fakes, tmp_path / "paced", budget)) as server:
        server.runtime.router.pacer.clock = clock
        # a new month starts with nothing spent
        assert route(server, PROMPTS[0])["pacing"]["spent_usd"] == 0


def test_a_spent_pace_keeps_requests_local(fakes, tmp_path):
    hard = "Design a multi-tier NixOS deployment with HA"
    with running(paced(fakes, tmp_path, 1e-6)) as server:
        assert ask(server, hard)[1] == "cloud"  # nothing spent yet: the cloud gains most
        assert spent(server) > 1e-6
        for _ in range(3):
            assert ask(server, hard)[1] == "local"  # the month's pace is spent
        decision = route(server, hard)
        assert decision["route"] == "local"
        assert decision["pacing"]["pace_usd_per_day"] == 0
        assert decision["cloud_gain"]["mean"] > 0.3  # ... however much the cloud would gain
        # a client may still name the cloud: pacing is not a cap (budgets are)
        assert ask(server, hard, "cloud")[1] == "cloud"


def test_pacing_and_a_cloud_share_are_not_set_together():
    routing = {"target_cloud_share": 0.3, "pacing": {"monthly_usd": 10}}
    with pytest.raises(ConfigError, match="not both"):
        settings_from_dict({"routing": routing})
