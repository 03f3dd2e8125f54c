"""Measure the privacy detectors: precision/recall per category and cost per request.

Usage: ``python bench/privacy_eval.py`` (from the repository root, with the
coordinator installed). Reads ``bench/privacy_corpus.jsonl``, prints a markdown
report and writes it to ``bench/results/privacy.md``.

Each corpus line is wrapped into a chat request; the placement rotates through
system prompt, user message, earlier assistant turn, tool result, list-of-parts
content and tool call arguments, so the evaluation also exercises text
extraction. A line counts as detected for a category when any detector of that
category fires through :class:`PrivacyPolicy` with the default rules.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra_coordinator.privacy import PrivacyConfig, PrivacyPolicy

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "privacy_corpus.jsonl"
REPORT = HERE / "results" / "privacy.md"
CATEGORIES = ("secret", "pii")

Body = dict[str, Any]


def _as_user(text: str) -> Body:
    return {"messages": [{"role": "user", "content": text}]}


def _as_system(text: str) -> Body:
    return {"messages": [{"role": "system", "content": text}, {"role": "user", "content": "hi"}]}


def _as_earlier_turn(text: str) -> Body:
    return {
        "messages": [
            {"role": "user", "content": "Remember this."},
            {"role": "assistant", "content": text},
            {"role": "user", "content": "Thanks, now summarise."},
        ]
    }


def _as_tool_result(text: str) -> Body:
    return {
        "messages": [
            {"role": "user", "content": "read the file"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "read", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": text},
        ]
    }


def _as_parts(text: str) -> Body:
    return {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look at this:"},
                    {"type": "text", "text": text},
                ],
            }
        ]
    }


def _as_tool_arguments(text: str) -> Body:
    return {
        "messages": [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "save", "arguments": json.dumps({"note": text})},
                    }
                ],
            }
        ]
    }


PLACEMENTS: tuple[Callable[[str], Body], ...] = (
    _as_user,
    _as_system,
    _as_earlier_turn,
    _as_tool_result,
    _as_parts,
    _as_tool_arguments,
)

SHORT_REQUEST: Body = {
    "model": "auto",
    "messages": [
        {
            "role": "user",
            "content": "Can you explain how Python's GIL affects multithreaded programs?",
        }
    ],
}

TYPICAL_REQUEST: Body = {
    "model": "auto",
    "messages": [
        {
            "role": "system",
            "content": "You are a concise senior engineer. Answer with code "
            "when useful, explain trade-offs briefly, and never invent APIs. " * 3,
        },
        {
            "role": "user",
            "content": "Why is this slow?\n```python\n"
            "def load(paths):\n    out = []\n    for p in paths:\n        with open(p) as f:\n"
            "            out.append(json.load(f))\n    return out\n```\n"
            "It takes 40 s for 10000 files on NFS, version 3.11.7, see commit 4f2a9c1.",
        },
        {
            "role": "assistant",
            "content": "Most of the time is per-file latency on NFS: each "
            "open() is a round trip. Batch the reads with a thread pool (I/O bound, so threads "
            "help despite the GIL), or pack the files into one archive. " * 2,
        },
        {
            "role": "user",
            "content": "Show the thread pool version with 16 workers and explain "
            "how to pick the worker count for a 2-core machine with 1 Gbit/s to the file server.",
        },
    ],
}


def load_corpus() -> list[dict[str, str]]:
    with CORPUS.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def detect(policy: PrivacyPolicy, body: Body) -> set[str]:
    verdict = policy.evaluate(body, key_id=None)
    return {finding.category for finding in verdict.findings}


def score(
    rows: list[dict[str, str]], policy: PrivacyPolicy
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Precision/recall per category and overall ('sensitive' = secret or pii)."""
    counts = {c: {"tp": 0, "fp": 0, "fn": 0, "n": 0} for c in (*CATEGORIES, "overall")}
    mistakes: list[str] = []
    for index, row in enumerate(rows):
        found = detect(policy, PLACEMENTS[index % len(PLACEMENTS)](row["text"]))
        truth = {row["label"]} - {"clean"}
        for category in CATEGORIES:
            _count(counts[category], category in truth, category in found)
        _count(counts["overall"], bool(truth), bool(found))
        if bool(truth) != bool(found) or (truth and not truth & found):
            mistakes.append(f"{row['label']:6} -> {sorted(found) or 'clean'}: {row['text'][:70]!r}")
    table = {c: _metrics(v) for c, v in counts.items()}
    return table, mistakes


def _count(cell: dict[str, int], positive: bool, predicted: bool) -> None:
    cell["n"] += positive
    cell["tp"] += positive and predicted
    cell["fp"] += predicted and not positive
    cell["fn"] += positive and not predicted


def _metrics(cell: dict[str, int]) -> dict[str, float]:
    tp, fp, fn = cell["tp"], cell["fp"], cell["fn"]
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return {"n": cell["n"], "tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall}


def time_per_request(policy: PrivacyPolicy, bodies: list[Body], repeat: int) -> tuple[float, float]:
    """Median and best over ``repeat`` rounds of the mean µs per evaluate() call.

    The best round approximates the cost on an idle core; the median includes
    interference from other processes.
    """
    rounds = []
    for _ in range(repeat):
        start = time.perf_counter()
        for body in bodies:
            policy.evaluate(body, key_id=None)
        rounds.append((time.perf_counter() - start) / len(bodies) * 1e6)
    return statistics.median(rounds), min(rounds)


def main() -> int:
    policy = PrivacyPolicy(PrivacyConfig())
    rows = load_corpus()
    table, mistakes = score(rows, policy)
    held_out = [r for r in rows if r["source"].startswith("held-out")]
    held_table, _ = score(held_out, policy)
    typical_size = len(json.dumps(TYPICAL_REQUEST))
    short_size = len(json.dumps(SHORT_REQUEST))
    short_us = time_per_request(policy, [SHORT_REQUEST] * 1000, repeat=15)
    typical_us = time_per_request(policy, [TYPICAL_REQUEST] * 200, repeat=15)
    corpus_bodies = [PLACEMENTS[i % len(PLACEMENTS)](r["text"]) for i, r in enumerate(rows)]
    corpus_us = time_per_request(policy, corpus_bodies, repeat=15)
    labels = {label: sum(r["label"] == label for r in rows) for label in ("secret", "pii", "clean")}

    lines = [
        "# Privacy detectors: precision, recall and cost",
        "",
        f"Corpus: `bench/privacy_corpus.jsonl`, {len(rows)} lines "
        f"({labels['secret']} secret, {labels['pii']} personal data, {labels['clean']} clean "
        "incl. look-alikes). Default rules; each line placed in a different message part.",
        "The detectors were tuned while most of this corpus was assembled, so the full",
        "table is largely in-sample; the held-out split below was written afterwards.",
        "",
        "| category | positives | TP | FP | FN | precision | recall |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in table.items():
        lines.append(
            f"| {name} | {m['n']:.0f} | {m['tp']:.0f} | {m['fp']:.0f} | {m['fn']:.0f} "
            f"| {m['precision']:.3f} | {m['recall']:.3f} |"
        )
    lines += [
        "",
        f"Held-out split only ({len(held_out)} lines written after tuning, never tuned on):",
        "",
        "| category | positives | TP | FP | FN | precision | recall |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in held_table.items():
        lines.append(
            f"| {name} | {m['n']:.0f} | {m['tp']:.0f} | {m['fp']:.0f} | {m['fn']:.0f} "
            f"| {m['precision']:.3f} | {m['recall']:.3f} |"
        )
    lines += [
        "",
        f"| cost per request, one core, Python {sys.version_info.major}."
        f"{sys.version_info.minor}, 15 rounds | median µs | best µs |",
        "|---|---:|---:|",
        f"| one-sentence request ({short_size} bytes, clean) "
        f"| {short_us[0]:.0f} | {short_us[1]:.0f} |",
        f"| typical chat request ({typical_size} bytes, 4 messages, clean) "
        f"| {typical_us[0]:.0f} | {typical_us[1]:.0f} |",
        f"| corpus lines (mean; each in its own request) "
        f"| {corpus_us[0]:.0f} | {corpus_us[1]:.0f} |",
        "",
        "Misclassified lines:",
        "",
        *(f"- `{m}`" for m in mistakes),
        "",
    ]
    report = "\n".join(lines)
    print(report)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
