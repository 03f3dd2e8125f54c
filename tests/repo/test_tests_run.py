"""tests/run's step reporting (tests/steps.sh): a suite that did not run never reads as passed."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_steps(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f'set -uo pipefail; . "{ROOT}/tests/steps.sh"; {script}; summary'],
        check=False,
        capture_output=True,
        text=True,
    )


def lines(result: subprocess.CompletedProcess[str], prefix: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith(prefix)]


def test_a_suite_that_says_skipped_is_reported_skipped_not_ok() -> None:
    result = run_steps(
        "step 'lint' true; "
        "step 'nix evaluation tests' bash -c 'echo \"SKIPPED: nixpkgs lib not found\"; exit 0'"
    )
    assert result.returncode == 0
    assert lines(result, "--- ") == [
        "--- lint: ok",
        "--- nix evaluation tests: SKIPPED (nixpkgs lib not found)",
    ]
    assert lines(result, "tests/run: ") == [
        "tests/run: SKIPPED: nix evaluation tests (nixpkgs lib not found)",
        "tests/run: the other checks passed; 1 skipped (not a pass: see above)",
    ]
    assert "all checks passed" not in result.stdout


def test_skipped_pytest_tests_and_skipped_steps_are_counted() -> None:
    result = run_steps(
        "step 'pytest' echo '12 passed, 2 skipped in 3.1s'; "
        "skip 'lab network scenario' 'needs root'"
    )
    assert lines(result, "--- ") == [
        "--- pytest: ok, but 2 skipped",
        "--- lab network scenario: SKIPPED (needs root)",
    ]
    assert lines(result, "tests/run: ")[-1].endswith("2 skipped (not a pass: see above)")


def test_a_failure_fails_the_run_and_the_output_is_kept() -> None:
    result = run_steps("step 'mypy' bash -c 'echo found 1 error; exit 1'; step 'ruff' true")
    assert result.returncode == 1
    assert "found 1 error" in result.stdout
    assert lines(result, "--- ") == ["--- mypy: FAILED", "--- ruff: ok"]
    assert lines(result, "tests/run: ") == ["tests/run: FAILED: mypy"]


def test_all_passed_only_when_nothing_was_skipped() -> None:
    result = run_steps("step 'a' true; step 'b' echo '5 passed in 1s'")
    assert result.returncode == 0
    assert lines(result, "tests/run: ") == ["tests/run: all checks passed"]


def test_tests_run_uses_the_steps() -> None:
    script = (ROOT / "tests" / "run").read_text(encoding="utf-8")
    assert '. "$root/tests/steps.sh"' in script
    assert script.rstrip().endswith("summary")
