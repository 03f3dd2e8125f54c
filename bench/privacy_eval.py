"""Measure the privacy scan: leaks, precision, recall, false positives, CPU cost; before, after.

Usage (from the repository root, with the coordinator's environment)::

    git worktree add /tmp/privacy-before 8364e29~1      # the scan before the linear rewrite
    python bench/privacy_eval.py --before /tmp/privacy-before/coordinator

Writes ``bench/results/privacy.md`` (and prints it). Each measured version runs in its own
process (``--code DIR --json``), importing ``hydra_coordinator`` from ``DIR``; without
``--before`` only this checkout is measured.

What is measured, through :meth:`PrivacyPolicy.evaluate` with the default rules:

* the held-out set ``bench/privacy_heldout.jsonl`` (written after the fix, never tuned on):
  each line names the request field it is placed in (every field a chat, completion or
  embedding request sends upstream), a disguise (zero-width or bidi characters, fullwidth
  forms, split across messages or parts, ...) and whether it is a secret, personal data or a
  clean look-alike. A *leak* is a sensitive line the scan lets go to the cloud; a *false
  positive* a clean line it keeps local.
* the development corpus ``bench/privacy_corpus.jsonl`` (the detectors were tuned on it).
* CPU time of the scan (this thread's, not wall clock): per KB of body on the held-out
  requests, and per MB on adversarial 1 MB inputs (``coordinator/tests/privacy_inputs.py``,
  texts built to make each detector work hard), without a budget (what the scan costs) and
  with the default budget (where it stops and keeps the request local). Each adversarial
  input runs in its own process, stopped after ``--cap`` seconds.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HELDOUT = HERE / "privacy_heldout.jsonl"
CORPUS = HERE / "privacy_corpus.jsonl"
REPORT = HERE / "results" / "privacy.md"
INPUTS = ROOT / "coordinator" / "tests" / "privacy_inputs.py"
ADVERSARIAL_SIZE = 1_000_000
STARTUP = 5.0  # seconds a measuring process may take to start (imports) on top of --cap

Body = dict[str, Any]
ASK = {"role": "user", "content": "Please help me with this."}


# --------------------------------------------------------------------------- placements


def _chat(*messages: dict[str, Any], **fields: Any) -> Body:
    return {"model": "auto", "messages": list(messages) or [ASK], **fields}


def _tool(description: str = "Look something up", **schema: Any) -> dict[str, Any]:
    properties = schema or {"q": {"type": "string"}}
    return {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": description,
            "parameters": {"type": "object", "properties": properties},
        },
    }


def _data_url(media_type: str, text: str) -> str:
    return f"data:{media_type};base64," + base64.b64encode(text.encode()).decode()


def _call(name: str, arguments: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": name, "arguments": arguments}}
        ],
    }


def _arguments(text: str) -> str:
    try:
        json.loads(text)
    except ValueError:
        return json.dumps({"note": text})
    return text


def _parts(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": "Look at this:"}, *parts]}


PLACEMENTS: dict[str, Callable[[str], Body]] = {
    "user": lambda t: _chat({"role": "user", "content": t}),
    "system": lambda t: _chat({"role": "system", "content": t}, ASK),
    "assistant_turn": lambda t: _chat(ASK, {"role": "assistant", "content": t}, ASK),
    "tool_result": lambda t: _chat(
        ASK, _call("read", "{}"), {"role": "tool", "tool_call_id": "c1", "content": t}
    ),
    "text_part": lambda t: _chat(_parts({"type": "text", "text": t})),
    "tool_arguments": lambda t: _chat(ASK, _call("save", _arguments(t))),
    "tool_description": lambda t: _chat(tools=[_tool(t)]),
    "parameter_default": lambda t: _chat(tools=[_tool(key={"type": "string", "default": t})]),
    "parameter_enum": lambda t: _chat(tools=[_tool(key={"type": "string", "enum": [t, "none"]})]),
    "parameter_description": lambda t: _chat(
        tools=[_tool(key={"type": "string", "description": t})]
    ),
    "legacy_function": lambda t: _chat(
        functions=[{"name": "f", "description": t, "parameters": {"type": "object"}}]
    ),
    "response_format_schema": lambda t: _chat(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": {"type": "object", "description": t}},
        }
    ),
    "stop": lambda t: _chat(stop=[t, "\n\n"]),
    "user_field": lambda t: _chat(user=t),
    "metadata_value": lambda t: _chat(metadata={"note": t}),
    "metadata_key": lambda t: _chat(metadata={t: "1"}),
    "prediction": lambda t: _chat(prediction={"type": "content", "content": t}),
    "tool_choice": lambda t: _chat(
        tools=[_tool()], tool_choice={"type": "function", "function": {"name": t}}
    ),
    "message_name": lambda t: _chat({"role": "user", "content": ASK["content"], "name": t}),
    "tool_call_name": lambda t: _chat(
        ASK, _call(t, "{}"), {"role": "tool", "tool_call_id": "c1", "content": "done"}
    ),
    "unknown_field": lambda t: _chat(x_extra={"value": t}),
    "image_data_url_text": lambda t: _chat(
        _parts({"type": "image_url", "image_url": {"url": _data_url("text/plain", t)}})
    ),
    "image_data_url_png": lambda t: _chat(
        _parts({"type": "image_url", "image_url": {"url": _data_url("image/png", t)}})
    ),
    "image_url": lambda t: _chat(_parts({"type": "image_url", "image_url": {"url": t}})),
    "file_data": lambda t: _chat(
        _parts(
            {
                "type": "file",
                "file": {"filename": "notes.txt", "file_data": _data_url("text/plain", t)},
            }
        )
    ),
    "other_part_key": lambda t: _chat(
        _parts({"type": "document", "source": {"type": "text", "data": t}})
    ),
    "completions_prompt": lambda t: {"model": "auto", "prompt": t},
    "embeddings_input": lambda t: {"model": "auto", "input": [t]},
}


# --------------------------------------------------------------------------- disguises


def _insert(value: str, mark: str) -> str:
    half = len(value) // 2
    return value[:half] + mark + value[half:]


def _fullwidth(value: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in value)


IN_PLACE: dict[str, Callable[[str], str]] = {
    "zero-width": lambda v: _insert(v, "\u200b"),
    "soft-hyphen": lambda v: _insert(v, "\u00ad"),
    "bidi-mark": lambda v: _insert(v, "\u200e"),
    "fullwidth": _fullwidth,
}


def build(row: dict[str, str]) -> Body:
    """The request body a held-out line stands for: its text placed and disguised."""
    text, disguise = row["text"], row["disguise"]
    if disguise in IN_PLACE:
        value = row["value"]
        text = text.replace(value, IN_PLACE[disguise](value))
    elif disguise in ("split-messages", "split-parts"):
        value = row["value"]
        cut = text.index(value) + len(value) // 2
        first, second = text[:cut], text[cut:]
        if disguise == "split-messages":
            return _chat({"role": "user", "content": first}, {"role": "user", "content": second})
        return _chat(_parts({"type": "text", "text": first}, {"type": "text", "text": second}))
    return PLACEMENTS[row["placement"]](text)


def load(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


# --------------------------------------------------------------------------- quality

# the development corpus: each line in the next of these message parts
CORPUS_PLACEMENTS = ("user", "system", "assistant_turn", "tool_result", "text_part")


def verdicts(policy: Any, bodies: list[Body]) -> list[tuple[str, float]]:
    """(action, CPU seconds) of each body's scan."""
    out = []
    for body in bodies:
        started = time.thread_time()
        verdict = policy.evaluate(body, None)
        out.append((verdict.action, time.thread_time() - started))
    return out


def quality(rows: list[dict[str, str]], actions: list[str]) -> dict[str, Any]:
    """Counts per label (a sensitive line is caught when the scan keeps it local)."""
    counts: dict[str, dict[str, int]] = {}
    misses: list[str] = []
    for row, action in zip(rows, actions, strict=True):
        caught = action != "allow"
        cell = counts.setdefault(row["label"], {"n": 0, "caught": 0})
        cell["n"] += 1
        cell["caught"] += caught
        if caught != (row["label"] != "clean"):
            misses.append(row.get("id", "") or row["text"][:60])
    positives = sum(c["n"] for label, c in counts.items() if label != "clean")
    tp = sum(c["caught"] for label, c in counts.items() if label != "clean")
    clean = counts.get("clean", {"n": 0, "caught": 0})
    fp = clean["caught"]
    return {
        "labels": counts,
        "positives": positives,
        "tp": tp,
        "fp": fp,
        "leaks": positives - tp,
        "clean": clean["n"],
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / positives if positives else 1.0,
        "fpr": fp / clean["n"] if clean["n"] else 0.0,
        "misses": misses,
    }


def by_kind(rows: list[dict[str, str]], actions: list[str]) -> dict[str, list[int]]:
    """[lines, leaks or false positives] per kind of line."""
    table: dict[str, list[int]] = {}
    for row, action in zip(rows, actions, strict=True):
        cell = table.setdefault(f"{row['label']} / {row['kind']}", [0, 0])
        cell[0] += 1
        cell[1] += (action != "allow") != (row["label"] != "clean")
    return table


def measure(code: str) -> dict[str, Any]:
    """Quality and per-request cost of the scan in ``code`` (this process imported it)."""
    from hydra_coordinator.privacy import PrivacyConfig, PrivacyPolicy

    policy = PrivacyPolicy(PrivacyConfig())
    heldout = load(HELDOUT)
    bodies = [build(row) for row in heldout]
    verdicts(policy, bodies)  # warm up (lazy imports, caches)
    runs = [verdicts(policy, bodies) for _ in range(5)]
    actions = [action for action, _ in runs[0]]
    per_kb = []
    per_request = []
    for index, body in enumerate(bodies):
        cpu = statistics.median(run[index][1] for run in runs)
        per_request.append(cpu)
        per_kb.append(cpu / (len(json.dumps(body).encode()) / 1024))
    corpus = load(CORPUS)
    corpus_bodies = [
        PLACEMENTS[CORPUS_PLACEMENTS[i % len(CORPUS_PLACEMENTS)]](row["text"])
        for i, row in enumerate(corpus)
    ]
    corpus_actions = [action for action, _ in verdicts(policy, corpus_bodies)]
    return {
        "code": code,
        "heldout": quality(heldout, actions),
        "heldout_by_kind": by_kind(heldout, actions),
        "heldout_by_placement": {
            placement: sum(
                1
                for row, action in zip(heldout, actions, strict=True)
                if row["placement"] == placement and row["label"] != "clean" and action == "allow"
            )
            for placement in PLACEMENTS
        },
        "corpus": quality(corpus, corpus_actions),
        "request_us": {
            "median": statistics.median(per_request) * 1e6,
            "max": max(per_request) * 1e6,
        },
        "per_kb_us": {"median": statistics.median(per_kb) * 1e6, "max": max(per_kb) * 1e6},
    }


# --------------------------------------------------------------------------- adversarial cost


def _inputs() -> Any:
    spec = importlib.util.spec_from_file_location("privacy_inputs", INPUTS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def adversarial_one(family: str, budgeted: bool) -> dict[str, Any]:
    """The scan of one 1 MB adversarial request: CPU ms and the verdict."""
    from hydra_coordinator.privacy import PrivacyConfig, PrivacyPolicy

    fields = set(PrivacyConfig.model_fields)
    config = PrivacyConfig()
    if "scan_cpu_ms" in fields and not budgeted:
        config = PrivacyConfig(scan_cpu_ms=1e9, scan_cpu_ms_per_mb=0)
    policy = PrivacyPolicy(config)
    text = _inputs().adversarial(family, ADVERSARIAL_SIZE)
    body = {"model": "auto", "messages": [{"role": "user", "content": text}]}
    started = time.thread_time()
    verdict = policy.evaluate(body, None)
    cpu = time.thread_time() - started
    size = len(json.dumps(body).encode())
    return {
        "family": family,
        "ms_per_mb": cpu * 1000 / (size / 1e6),
        "action": verdict.action,
        "rule": verdict.rule,
        "budget": [config.scan_cpu_ms, config.scan_cpu_ms_per_mb]
        if "scan_cpu_ms" in fields
        else None,
    }


def adversarial(code: str, cap: float, budgeted: bool) -> list[dict[str, Any]]:
    """Every family, each in its own process with ``code`` on the path, stopped after ``cap``
    seconds (a backtracking scan can take hours on 1 MB)."""
    results = []
    for family in _inputs().FAMILIES:
        command = [sys.executable, __file__, "--code", code, "--family", family]
        if budgeted:
            command.append("--budgeted")
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=cap + STARTUP,
                env=_env(code),
                check=True,
            )
            results.append(json.loads(done.stdout))
        except subprocess.TimeoutExpired:
            results.append({"family": family, "ms_per_mb": None, "action": None, "rule": None})
    return results


def _env(code: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": code}


def run(code: str, cap: float) -> dict[str, Any]:
    command = [sys.executable, __file__, "--code", code, "--json"]
    done = subprocess.run(command, capture_output=True, text=True, env=_env(code), check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    result["adversarial"] = adversarial(code, cap, budgeted=False)
    if _has_budget(code):
        result["adversarial_budgeted"] = adversarial(code, cap, budgeted=True)
    return result


def _has_budget(code: str) -> bool:
    return "scan_cpu_ms" in (Path(code) / "hydra_coordinator/privacy/rules.py").read_text()


# --------------------------------------------------------------------------- report

HISTORY = (
    "The set's first run on the rewritten scan let 6 of its 93 sensitive lines "
    "through: `h052` (a password in backticks after the word), `h054` (`curl -u "
    "user:password`), `h057` (`docker login -p`), `h058` (a password in German prose), "
    "`h070` (an NHS number under a `nhs_number` column header) and `h076`, a UK number from "
    "Ofcom's drama range, which is no real number (relabelled: it now holds a real-format "
    "mobile number). The detectors then learned the first five, so those "
    "five lines are no longer strictly held out; no false positive was seen in either run."
)


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def _ms(value: float | None, cap: float) -> str:
    return f"> {cap * 1000:,.0f} (stopped)" if value is None else f"{value:,.0f}"


def _cost_summary(results: list[dict[str, Any]], cap: float) -> tuple[str, str, str]:
    finished = sorted(r["ms_per_mb"] for r in results if r["ms_per_mb"] is not None)
    stopped = len(results) - len(finished)
    median = statistics.median(
        [*finished, *([float("inf")] * stopped)]
    )  # a stopped run counts as slower than every finished one
    worst = max(results, key=lambda r: float("inf") if r["ms_per_mb"] is None else r["ms_per_mb"])
    median_text = _ms(None if median == float("inf") else median, cap)
    return median_text, f"{_ms(worst['ms_per_mb'], cap)} ({worst['family']})", str(stopped)


def report(after: dict[str, Any], before: dict[str, Any] | None, cap: float, command: str) -> str:
    versions = [("before", before), ("after", after)] if before else [("after", after)]
    heldout = load(HELDOUT)
    labels = {label: sum(r["label"] == label for r in heldout) for label in ("secret", "pii")}
    labels["clean"] = sum(r["label"] == "clean" for r in heldout)
    lines = [
        "# Privacy scan: leaks, precision, recall, false positives and CPU cost",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node() or 'this machine'}"
        f" ({os.cpu_count()} cores shared with other jobs, {platform.machine()}, Python "
        f"{platform.python_version()}). CPU time of the scanning thread, not wall clock.",
        "",
        f"Command: `{command}`",
        "",
        "*before*: the scan at `8364e29~1` (backtracking regexes, message text only); "
        "*after*: this checkout. Default rules (secrets and personal data stay local).",
        "",
        "## Held-out set",
        "",
        f"`bench/privacy_heldout.jsonl`: {len(heldout)} lines written after the fix and never "
        f"tuned on ({labels['secret']} secrets, {labels['pii']} personal data, "
        f"{labels['clean']} clean look-alikes), each placed in a named request field (all "
        f"{len(PLACEMENTS)} fields: messages, tools and their schemas, legacy functions, "
        "response_format, stop, user, metadata keys and values, prediction, tool_choice, "
        "names, unknown fields, data: URLs, image URLs, file parts, other content parts, "
        "completion prompts, embedding inputs), some disguised (zero-width, soft hyphen, bidi "
        "mark, fullwidth, split across messages or parts, base64, percent-encoding) or ending "
        "a sentence. A leak: a sensitive line the scan lets go to the cloud. A false positive: "
        "a clean line it keeps local.",
        "",
        "| version | leaks | precision | recall | false positives | FP rate |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, result in versions:
        assert result is not None
        q = result["heldout"]
        lines.append(
            f"| {name} | {q['leaks']} of {q['positives']} | {q['precision']:.3f} "
            f"| {q['recall']:.3f} | {q['fp']} of {q['clean']} | {_pct(q['fpr'])} |"
        )
    lines += ["", "Mistakes per kind of line (leaks, or false positives for clean lines):", ""]
    header = "| kind | lines | " + " | ".join(name for name, _ in versions) + " |"
    lines += [header, "|---|---:|" + "---:|" * len(versions)]
    for kind, (count, _) in sorted(after["heldout_by_kind"].items()):
        cells = " | ".join(str(r["heldout_by_kind"][kind][1]) for _, r in versions if r)
        lines.append(f"| {kind} | {count} | {cells} |")
    if before:
        leaky = {p: n for p, n in before["heldout_by_placement"].items() if n}
        lines += [
            "",
            "Fields the *before* scan leaked from: "
            + ", ".join(f"{p} ({n})" for p, n in sorted(leaky.items()))
            + ".",
        ]
    for name, result in versions:
        assert result is not None
        misses = result["heldout"]["misses"]
        lines.append("")
        lines.append(
            f"Misclassified ({name}): " + (", ".join(f"`{m}`" for m in misses) or "none") + "."
        )
    lines += ["", HISTORY]
    lines += [
        "",
        "## Development corpus",
        "",
        "`bench/privacy_corpus.jsonl` (public secret-scanner and PII test fixtures, generated "
        "numbers, look-alikes; the detectors were tuned on it, so this is in-sample). Seven of "
        "its personal-data lines are published test card numbers (4111 1111 1111 1111, "
        "4242 4242 4242 4242, ...), which the detectors now allow-list by design: they count "
        "as misses after.",
        "",
        "| version | leaks | precision | recall | false positives | FP rate |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, result in versions:
        assert result is not None
        q = result["corpus"]
        lines.append(
            f"| {name} | {q['leaks']} of {q['positives']} | {q['precision']:.3f} "
            f"| {q['recall']:.3f} | {q['fp']} of {q['clean']} | {_pct(q['fpr'])} |"
        )
    lines += [
        "",
        "## CPU cost",
        "",
        "Held-out requests (0.2-3 KB each; 5 runs, median per request):",
        "",
        "| version | median µs per request | worst µs | median µs per KB | worst µs per KB |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, result in versions:
        assert result is not None
        r, k = result["request_us"], result["per_kb_us"]
        lines.append(
            f"| {name} | {r['median']:,.0f} | {r['max']:,.0f} | {k['median']:,.0f} "
            f"| {k['max']:,.0f} |"
        )
    families = len(after["adversarial"])
    budget = next(
        (r["budget"] for r in after.get("adversarial_budgeted", []) if r.get("budget")),
        None,
    )
    budget_text = (
        f"`privacy.scan_cpu_ms` {budget[0]:g} + `scan_cpu_ms_per_mb` {budget[1]:g}"
        if budget
        else "the configuration's defaults"
    )
    lines += [
        "",
        f"Adversarial 1 MB requests ({families} families from "
        "`coordinator/tests/privacy_inputs.py`: repeated prefixes, character classes and "
        "look-alikes aimed at each detector), one process each, stopped after "
        f"{cap:.0f} s. *Unbudgeted*: what the scan costs when it may run to the end; "
        f"*default budget*: {budget_text}, past which the "
        "scan stops and the request stays local.",
        "",
        "| version | median ms per MB | worst ms per MB | stopped at the cap |",
        "|---|---:|---:|---:|",
    ]
    for name, result in versions:
        assert result is not None
        median, worst, stopped = _cost_summary(result["adversarial"], cap)
        lines.append(f"| {name}, unbudgeted | {median} | {worst} | {stopped} |")
        if "adversarial_budgeted" in result:
            budgeted = result["adversarial_budgeted"]
            median, worst, stopped = _cost_summary(budgeted, cap)
            closed = [r["family"] for r in budgeted if r["rule"] == "scan-budget"]
            lines.append(f"| {name}, default budget | {median} | {worst} | {stopped} |")
            lines += [
                "",
                f"With the default budget, {len(closed)} of {len(budgeted)} adversarial "
                "requests ran out of it and stayed local (fail closed)"
                + (": " + ", ".join(f"`{f}`" for f in closed) if closed else "")
                + ".",
                "",
            ]
    lines += ["", "Per family (ms of CPU per MB, unbudgeted):", ""]
    lines.append("| family | " + " | ".join(name for name, _ in versions) + " |")
    lines.append("|---|" + "---:|" * len(versions))
    for index, row in enumerate(after["adversarial"]):
        cells = " | ".join(_ms(r["adversarial"][index]["ms_per_mb"], cap) for _, r in versions if r)
        lines.append(f"| `{row['family']}` | {cells} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="coordinator/ directory of the version to compare")
    parser.add_argument("--cap", type=float, default=10.0, help="seconds per adversarial run")
    parser.add_argument("--code", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--family", help=argparse.SUPPRESS)
    parser.add_argument("--budgeted", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.family:
        print(json.dumps(adversarial_one(args.family, args.budgeted)))
        return 0
    if args.json:
        print(json.dumps(measure(args.code)))
        return 0
    after = run(str(ROOT / "coordinator"), args.cap)
    before = run(str(Path(args.before).resolve()), args.cap) if args.before else None
    command = "python bench/privacy_eval.py" + (f" --before {args.before}" if args.before else "")
    if args.cap != 10.0:
        command += f" --cap {args.cap:g}"
    text = report(after, before, args.cap, command)
    print(text)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
