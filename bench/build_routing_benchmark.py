"""Build ``bench/data/routing_benchmark.jsonl.gz``: prompts with a known outcome for a strong and
a weak model, in four kinds. Run once by hand; the output is committed (see
``bench/data/SOURCES.md`` for where each row comes from, its licence and what its labels mean).

Usage::

    python bench/build_routing_benchmark.py --mmlu-pro DIR --alpaca-eval DIR --gsm8k DIR \
        --arena-hard DIR --fastchat DIR

with DIR the git directories of TIGER-AI-Lab/MMLU-Pro, tatsu-lab/alpaca_eval,
openai/grade-school-math, lmarena/arena-hard-auto and lm-sys/FastChat (read with ``git show``:
``HEAD`` for the first three, the pinned commits below for the last two, whose files were later
removed).

Kinds and labels (``strong``/``weak`` = the quality of each model's answer, in [0, 1]):

* ``knowledge``: MMLU-Pro questions that do *not* come from MMLU (sources stemez, TheoremQA,
  SciBench; every ``ori_mmlu-*`` row is dropped, so no MMLU test question is used), with
  the recorded answers of gemini-1.5-pro-002 (strong) and Mixtral-8x7B-Instruct-v0.1 (weak):
  1 when the model picked the right option.
* ``maths``: grade-school maths word problems from GSM8K's *train* split (never its test
  split). No public per-problem outcomes exist for it, so the labels are a documented proxy:
  each model is right with a probability that falls with the number of calculation steps of
  the reference solution (and a little with large or fractional numbers), drawn once with a
  fixed seed. Overall accuracy: 66 % (weak), 95 % (strong).
* ``chat``: real chat requests of two kinds. Arena-Bench-V1 (arena-hard-auto's first version:
  300 hard prompts from Chatbot Arena) with GPT-4's single-answer grades (1-10, against a GPT-4
  reference answer) of gpt-4-1106-preview (strong) and Mixtral-8x7B-Instruct-v0.1 (weak):
  quality = (grade - 1) / 9. And the Vicuna benchmark (80 everyday questions in nine
  categories: writing, roleplay, Fermi estimates, coding, maths...) with GPT-4's pairwise grades
  (1-10 each) of gpt-3.5-turbo (strong) against vicuna-13b (weak): quality = grade / 10.
* ``instructions``: AlpacaEval's 805 instructions, judged pairwise by GPT-4-turbo
  (``alpaca_eval_cot_gpt4_turbo_fn``): Mixtral-8x7B-Instruct-v0.1 (weak) against
  gpt4_1106_preview (strong); the judge's preference gives weak = P(weak preferred),
  strong = 1 - weak. Licensed CC-BY-NC-4.0: evaluation only, never fitted on.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import io
import json
import math
import random
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "data" / "routing_benchmark.jsonl.gz"
LETTERS = "ABCDEFGHIJ"
ARENA_BENCH = "4a705dd6963f777aba2ae79259e3013934e6e012"  # lmarena/arena-hard-auto, 2023-12-14
VICUNA_BENCH = "6ed0394d908fa7b6b1101ab2c814e72ee670b323"  # lm-sys/FastChat, 2023-05-04


def _git_show(repo: Path, path: str, commit: str = "HEAD") -> bytes:
    return subprocess.run(
        ["git", "-C", str(repo), "show", f"{commit}:{path}"], check=True, capture_output=True
    ).stdout


def _jsonl(repo: Path, path: str, commit: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _git_show(repo, path, commit).decode().splitlines()]


def _zip_json(repo: Path, path: str) -> list[dict[str, Any]]:
    with zipfile.ZipFile(io.BytesIO(_git_show(repo, path))) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".json"))
        rows: list[dict[str, Any]] = json.loads(archive.read(name))
    return rows


def _options(value: Any) -> list[str]:
    return list(value) if isinstance(value, list) else list(ast.literal_eval(value))


def knowledge(repo: Path) -> list[dict[str, Any]]:
    base = "eval_results/model_outputs_{}_5shots.zip"
    strong = {r["question_id"]: r for r in _zip_json(repo, base.format("gemini-1.5-pro-002"))}
    rows = []
    for weak in _zip_json(repo, base.format("Mixtral-8x7B-Instruct-v0.1")):
        if weak["src"].startswith("ori_mmlu"):
            continue  # MMLU test questions: never used
        other = strong.get(int(weak["question_id"])) or strong.get(str(weak["question_id"]))
        if other is None:
            continue
        options = _options(weak["options"])
        prompt = (
            weak["question"].strip()
            + "\n\n"
            + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
        )
        rows.append(
            {
                "kind": "knowledge",
                "id": f"mmlu-pro-{weak['question_id']}",
                "group": weak["category"],
                "messages": [{"role": "user", "content": prompt}],
                "strong": float(other["pred"] == other["answer"]),
                "weak": float(weak["pred"] == weak["answer"]),
            }
        )
    return rows


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def maths(repo: Path, seed: int = 20261206) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    text = _git_show(repo, "grade_school_math/data/train.jsonl").decode()
    for i, line in enumerate(text.splitlines()):
        item = json.loads(line)
        steps = item["answer"].count("<<")
        numbers = re.findall(r"\d[\d,]*\.?\d*", item["question"])
        awkward = any("." in n or len(n.replace(",", "")) >= 4 for n in numbers)
        p_weak = _sigmoid(2.6 - 0.55 * steps - 0.35 * awkward)
        p_strong = _sigmoid(4.6 - 0.45 * steps - 0.2 * awkward)
        rows.append(
            {
                "kind": "maths",
                "id": f"gsm8k-train-{i}",
                "group": f"steps-{min(steps, 8)}",
                "messages": [{"role": "user", "content": item["question"].strip()}],
                "strong": float(rng.random() < p_strong),
                "weak": float(rng.random() < p_weak),
            }
        )
    return rows


def arena_bench(repo: Path) -> list[dict[str, Any]]:
    base = "data/arena-bench-v1"
    grades = {}
    for model in ("gpt-4-turbo", "Mixtral-8x7B-Instruct-v0.1"):
        judged = _jsonl(repo, f"{base}/model_judgment/{model}.jsonl", ARENA_BENCH)
        grades[model] = {j["question_id"]: j["score"] for j in judged}
    rows = []
    for item in _jsonl(repo, f"{base}/question.jsonl", ARENA_BENCH):
        strong = grades["gpt-4-turbo"].get(item["question_id"])
        weak = grades["Mixtral-8x7B-Instruct-v0.1"].get(item["question_id"])
        if strong is None or weak is None:  # the judge's answer could not be parsed
            continue
        rows.append(
            {
                "kind": "chat",
                "id": f"arena-bench-{item['question_id']}",
                "group": "arena-bench",
                "messages": [{"role": "user", "content": t.strip()} for t in item["turns"]],
                "strong": (strong - 1) / 9,
                "weak": (weak - 1) / 9,
            }
        )
    return rows


def vicuna_bench(repo: Path) -> list[dict[str, Any]]:
    base = "fastchat/eval/table"
    questions = {q["question_id"]: q for q in _jsonl(repo, f"{base}/question.jsonl", VICUNA_BENCH)}
    review = "review/vicuna-13b-20230322-clean-lang/review_gpt35_vicuna-13b-20230322-clean-lang"
    rows = []
    for item in _jsonl(repo, f"{base}/{review}.jsonl", VICUNA_BENCH):
        question = questions[item["question_id"]]
        strong, weak = item["score"]  # gpt-3.5-turbo (assistant 1), vicuna-13b (assistant 2)
        rows.append(
            {
                "kind": "chat",
                "id": f"vicuna-bench-{item['question_id']}",
                "group": question["category"],
                "messages": [{"role": "user", "content": question["text"].strip()}],
                "strong": strong / 10,
                "weak": weak / 10,
            }
        )
    return rows


def instructions(repo: Path) -> list[dict[str, Any]]:
    path = "results/Mixtral-8x7B-Instruct-v0.1/alpaca_eval_cot_gpt4_turbo_fn/annotations.json"
    rows = []
    for i, item in enumerate(json.loads(_git_show(repo, path))):
        assert item["generator_1"] == "gpt4_1106_preview"
        preference = float(item["preference"])  # 1: output_1 (strong) wins, 2: output_2 (weak)
        weak = preference - 1.0
        rows.append(
            {
                "kind": "instructions",
                "id": f"alpaca-eval-{i}",
                "group": item["dataset"],
                "messages": [{"role": "user", "content": item["instruction"].strip()}],
                "strong": 1.0 - weak,
                "weak": weak,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mmlu-pro", type=Path, required=True)
    parser.add_argument("--alpaca-eval", type=Path, required=True)
    parser.add_argument("--gsm8k", type=Path, required=True)
    parser.add_argument("--arena-hard", type=Path, required=True)
    parser.add_argument("--fastchat", type=Path, required=True)
    args = parser.parse_args()
    rows = knowledge(args.mmlu_pro) + maths(args.gsm8k)
    rows += arena_bench(args.arena_hard) + vicuna_bench(args.fastchat)
    rows += instructions(args.alpaca_eval)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(OUT, "wt", encoding="utf-8", compresslevel=9) as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    for kind in ("knowledge", "maths", "chat", "instructions"):
        part = [r for r in rows if r["kind"] == kind]
        strong = sum(r["strong"] for r in part) / len(part)
        weak = sum(r["weak"] for r in part) / len(part)
        print(f"{kind}: {len(part)} prompts, strong {strong:.3f}, weak {weak:.3f}")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
