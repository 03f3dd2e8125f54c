from __future__ import annotations

import pytest

from hydra_coordinator.config import RoutingConfig
from hydra_coordinator.routing.features import extract_features
from hydra_coordinator.routing.router import BackendView, UnknownModel, decide, local_confidence

CFG = RoutingConfig()
LOCAL = BackendView("ollama", "local", "healthy", 0.0, ("llama",))
LOCAL2 = BackendView("tabby", "local", "healthy", 0.5, ("qwen",))
CLOUD = BackendView("openai", "cloud", "healthy", 0.0, ("gpt-4o",))


def body(text: str, **extra):
    return {"messages": [{"role": "user", "content": text}], **extra}


def test_simple_question_is_confident():
    confidence, reasons = local_confidence(extract_features(body("What time is it in Paris?")), CFG)
    assert confidence == 1.0 and reasons == ["short, simple request"]


@pytest.mark.parametrize(
    ("text", "extra", "reason"),
    [
        ("fix this:\n```\ndef f(x): return x\n```", {}, "contains code"),
        ("Walk me through it step by step", {}, "multi-step"),
        ("Design the architecture and compare the trade-offs", {}, "design or reasoning"),
        ("hi", {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ("x " * 8000, {}, "prompt of ~"),
    ],
)
def test_each_feature_lowers_confidence_with_a_reason(text, extra, reason):
    confidence, reasons = local_confidence(extract_features(body(text, **extra)), CFG)
    assert confidence < 1.0
    assert any(reason in r for r in reasons)


def test_conversation_depth_counts():
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": "ok"} for i in range(12)]
    confidence, reasons = local_confidence(extract_features({"messages": messages}), CFG)
    assert confidence < 1.0 and any("conversation of 12" in r for r in reasons)


def test_list_content_is_read():
    features = extract_features(
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "```\nfn main() {}\n```"}]}
            ]
        }
    )
    assert features.has_code


def test_threshold_splits_local_and_cloud():
    easy = decide(extract_features(body("hello")), "auto", [LOCAL, CLOUD], CFG)
    assert (easy.route, easy.backend) == ("local", "ollama")
    assert easy.candidates == ("ollama", "openai")  # cloud is the failover
    hard_text = "Design and compare architectures step by step:\n```\nclass A: pass\n```"
    hard = decide(extract_features(body(hard_text)), "auto", [LOCAL, CLOUD], CFG)
    assert (hard.route, hard.backend) == ("cloud", "openai")
    assert hard.local_confidence is not None and hard.local_confidence < CFG.threshold
    assert hard.confidence == 1.0 - hard.local_confidence  # in the cloud route it chose
    assert any("< threshold" in r for r in hard.reasons)


def test_hard_request_without_cloud_goes_local():
    hard = decide(
        extract_features(body("Design and compare step by step")),
        "auto",
        [LOCAL],
        RoutingConfig(threshold=0.99),
    )
    assert hard.route == "local"
    assert any("no healthy cloud backend" in r for r in hard.reasons)


def test_down_backends_are_skipped_and_load_orders():
    down = BackendView("ollama", "local", "down", 0.0, ("llama",))
    decision = decide(extract_features(body("hi")), "auto", [down, LOCAL2, CLOUD], CFG)
    assert decision.candidates == ("tabby", "openai")
    busy = BackendView("ollama", "local", "healthy", 3.0, ("llama",))
    assert decide(extract_features(body("hi")), "local", [busy, LOCAL2], CFG).backend == "tabby"


def test_forced_class_never_crosses():
    decision = decide(extract_features(body("hi")), "cloud", [LOCAL], CFG)
    assert decision.backend is None and decision.candidates == ()


def test_concrete_model():
    decision = decide(extract_features(body("hi")), "gpt-4o", [LOCAL, CLOUD], CFG)
    assert (decision.route, decision.candidates) == ("cloud", ("openai",))
    with pytest.raises(UnknownModel):
        decide(extract_features(body("hi")), "nope", [LOCAL, CLOUD], CFG)
