"""The task classifier (a request's task class, for telemetry and ``/route``) and how a rating
becomes a reward."""

from __future__ import annotations

import pytest

from hydra_coordinator.routing.feedback import rating_reward
from hydra_coordinator.routing.taskclass import TASK_CLASSES, TaskClassifier


def test_rewards():
    assert rating_reward(1.0) == 1.0
    assert rating_reward(-1.0) == 0.0
    assert rating_reward(0.0) == 0.5
    assert rating_reward(7.0) == 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hi there, how are you?", "chat"),
        ("thanks!", "chat"),
        ("Why does this raise KeyError?\n```python\nd = {}\nd[1]\n```", "code"),
        ("Traceback (most recent call last):\n  File 'x.py'\nValueError: bad", "code"),
        ("Write a Rust function that parses a JSON config file", "code"),
        ("Prove that the square root of 2 is irrational.", "reasoning"),
        ("Solve step by step: 3x + 7 = 22", "reasoning"),
        ("Write a haiku about GPUs running hot in summer", "writing"),
        ("Rewrite this e-mail in a friendlier tone: ...", "writing"),
        ("What is the capital of Australia?", "factual"),
        ("Who invented the telephone and in which year?", "factual"),
    ],
)
def test_task_classifier(text, expected):
    assert TaskClassifier().classify(text) == expected


def test_classifier_only_returns_known_classes():
    classifier = TaskClassifier()
    assert classifier.classes == TASK_CLASSES
    for text in ["", "?", "x" * 20_000, "```" * 1000]:
        assert classifier.classify(text) in TASK_CLASSES
