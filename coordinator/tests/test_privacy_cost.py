"""The privacy scan's cost on adversarial 1 MB inputs, measured against a linear reference.

A benchmark in the form of a test: CPU time (of this thread), never wall-clock time, and
always relative to a reference pass over the same input measured in the same run, so a slow
or busy machine moves both. A backtracking detector takes thousands of times the reference
on these inputs (minutes); a linear one stays within a small multiple of it.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable

import pytest

from hydra_coordinator.privacy import PrivacyConfig, PrivacyPolicy, builtin_detectors, json_size
from hydra_coordinator.privacy.detector import ScanText
from hydra_coordinator.privacy.engine import BudgetExceeded, ScanBudget

from .privacy_inputs import FAMILIES, adversarial, families_for

SIZE = 1_000_000
# The reference: one pass of Python's own regex engine over the input, looking for a
# character it does not contain (about 4 ms per MB here).
REFERENCE = re.compile(r"[\x00-\x08]")
# Each detector may take this many reference passes over an adversarial input: the worst
# measured is about 135 (password_assignment on '"password": ' repeated: a candidate every 12
# characters, each one's value checked in Python), which a loaded machine pushes past 150; a
# quadratic detector on 1 MB would need tens of thousands.
DETECTOR_BOUND = 300

DETECTORS = builtin_detectors()


def cpu(work: Callable[[], object]) -> float:
    started = time.thread_time()
    work()
    return time.thread_time() - started


def reference(text: str) -> float:
    return statistics.median(cpu(lambda: REFERENCE.search(text)) for _ in range(5))


def _always(text: ScanText, probe: object) -> bool:
    return True


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_each_detector_is_linear_on_adversarial_inputs(name):
    """Every detector, on every input aimed at it (and the generic ones), at 1 MB: under
    DETECTOR_BOUND reference passes. The budget stops a detector that goes over, so a
    regression fails here in seconds instead of running for minutes."""
    detector = DETECTORS[name]
    for family in families_for(name):
        text = adversarial(family, SIZE)
        allowed = DETECTOR_BOUND * reference(text)
        budget = ScanBudget(allowed, SIZE)
        try:
            detector.scan_text(ScanText(text), _always, budget)  # type: ignore[attr-defined]
        except BudgetExceeded:
            pytest.fail(
                f"{name} on {family!r}: more than {DETECTOR_BOUND} reference passes "
                f"({allowed * 1000:.0f} ms) over {SIZE} characters"
            )


@pytest.fixture(scope="module")
def policy() -> PrivacyPolicy:
    return PrivacyPolicy(PrivacyConfig())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_whole_scan_keeps_to_its_budget(policy, family):
    """The scan of a whole request (every text, every rule) stops at its CPU budget and
    fails closed: it never runs much past it, whatever the input."""
    text = adversarial(family, SIZE)
    body = {"model": "auto", "messages": [{"role": "user", "content": text}]}
    allowed = policy.budget_s(json_size(body))  # the budget grows with the body's bytes
    used = cpu(lambda: policy.evaluate(body, None))
    # what one step between two clock reads may add: a pass of RE2 or of a probe
    slack = 10 * reference(text)
    assert used <= allowed + slack, (
        f"{family!r}: the scan took {used * 1000:.0f} ms, its budget is {allowed * 1000:.0f} ms"
    )


def test_a_scan_out_of_budget_fails_closed():
    """A scan stopped by its budget keeps the request local, whatever it had found so far."""
    tight = PrivacyPolicy(PrivacyConfig(scan_cpu_ms=0.5, scan_cpu_ms_per_mb=0))
    text = adversarial("phone-words", SIZE)
    verdict = tight.evaluate({"messages": [{"role": "user", "content": text}]}, None)
    assert (verdict.action, verdict.rule) == ("local_only", "scan-budget")
    assert "CPU budget" in (verdict.message or "")
