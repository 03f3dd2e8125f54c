"""The cold-start scorer: how much a request is expected to gain from the strong (cloud) model.

Cheap features of the last user message and the conversation, each in [0, 1], weighted and
summed into the *estimated quality gain of the cloud*: the share of answers the cloud gets
right that the local model gets wrong, in [0, 1]. It needs no feedback and no model file; it
is the prior of the learned router, which corrects it per prompt from ratings.

The weights of the general features (size, numbers, maths, multi-part and multi-step asks,
reasoning, constraints, multiple choice, short factual questions, everyday writing, asking for
code in words, for tips or advice, role-play) were fitted offline on public benchmark prompts
with known strong/weak outcomes (knowledge questions, maths word problems, real chat requests)
and checked on held-out parts (``bench/fit_scorer.py``, ``bench/results/routing.md``). Design
and architecture vocabulary, pasted code, tools and long conversations have no such data and
keep hand-set weights: a design question with two terms of the trade goes to the cloud (at the
default ``routing.threshold``). The base level and the scale of the fitted weights are
calibrated so that the estimate is the gain itself, on average, for a local model of
Mixtral-8x7B's class against a GPT-4-class cloud: a short everyday question is estimated at
about 0.1 and stays local.

Everything here is pure and costs tens of microseconds for a 2 KB prompt.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .features import last_user_text, message_text

__all__ = ["FEATURES", "ColdScore", "cold_score", "signals"]

_SCAN_LIMIT = 8_000  # characters at the end of the last user message that are looked at


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Regexes over a whole prompt cost ~0.5 ms per KB when they alternate or backtrack: words are
# split with str.translate and looked up in sets; the few regexes left are anchored and cheap.
_TO_SPACE = str.maketrans({c: " " for c in "$!\"&'()*,./:;<=>?@[\\]^_`{|}~\n\t\r"})
_CHOICE = re.compile(r"^ *\(?[A-Ja-j][.)] .*$", re.MULTILINE)
_NUMBERED = re.compile(r"^ *\d{1,2}[.)] ", re.MULTILINE)
_PART_MARKERS = ("(a)", "(b)", "(c)", "(d)", "(i)", "(ii)", "(iii)")
_ARITHMETIC = re.compile(r"\d ?[-+*/^=<>\u00d7\u00f7] ?\d")
_NOTATION = ("\\frac", "\\sum", "\\int", "\\sqrt", "$$", "^2", "^3")
_CODE_MARKERS = ("```", "#include", "=>", "::", "();", "){", ") {", "def ", "fn ", "</")
# words that are code more often than English ("from", "where", "return" and "function" are
# English too, and with the "=" of a maths question made knowledge questions look like code)
_CODE_WORDS = _words(
    "import def const var println printf struct impl lambda async await public static void "
    "traceback exception elif endif namespace boolean nullptr"
)


_MATHS = _words(
    "calculate compute computed how total totals sum average mean median ratio percent "
    "percentage probability integral derivative equation equations solve solved remainder "
    "fraction fractions profit interest rate speed per each twice thrice half quarter "
    "remaining left altogether combined difference product multiply divide divided times"
)
_REASONING = _words(
    "prove proof derive derivation why explain justify analyze analyse analysis compare "
    "evaluate reasoning logic implies therefore suppose assume infer deduce critique "
    "pros cons tradeoff tradeoffs trade-off trade-offs implications"
)
_CONSTRAINTS = _words(
    "must should exactly least most without only ensure require requires required "
    "constraint constraints within limit limited unless always never"
)
_DESIGN = _words(
    "design designing architecture architect architectures multi-tier multi-region multi-site "
    "ha failover fail-over sharding sharded shard shards replication replicated replica "
    "replicas consensus distributed scalable scalability scale-out fault-tolerant "
    "fault-tolerance redundancy redundant load-balancer load-balancing microservices "
    "partitioning partitioned cluster clusters high-availability disaster-recovery raft "
    "paxos quorum consistency idempotent throughput topology deployment infrastructure"
)
_DESIGN_PHRASES = (
    "high availability",
    "load balancer",
    "load balancing",
    "fault tolerant",
    "fault tolerance",
    "disaster recovery",
    "system design",
    "zero downtime",
)
_STEP_PHRASES = ("step by step", "step-by-step", "walk me through", "first, ", "then ", "plan ")
_CREATIVE = _words(
    "poem poems story stories haiku joke jokes song lyrics slogan tweet email e-mail letter "
    "rewrite rephrase paraphrase translate summarize summarise title names recipe greeting"
)
_QUESTION_START = _words("what who when where which define name")
# asking for code in words ("implement a binary search", "a bash script that..."); tokens are
# split on punctuation, so "c++" and "node.js" arrive as "c" / "node" "js": not listed
_PROGRAMMING = _words(
    "python javascript typescript java rust golang kotlin swift haskell prolog sql regex bash "
    "powershell script scripts function functions implement implementation algorithm program "
    "programming code coding html css api class compile react django flask numpy pandas vba"
)
_ADVICE = _words("tips advice suggest suggestions recommend ways improve")
_ROLEPLAY = ("pretend", "imagine you", "role-play", "roleplay", "act as", "you are a", "as a ")

FEATURES: tuple[str, ...] = (
    "size",
    "sentences",
    "numbers",
    "maths",
    "maths_notation",
    "multi_part",
    "multi_step",
    "reasoning",
    "constraints",
    "choices",
    "design",
    "code",
    "tools",
    "conversation",
    "short_question",
    "creative",
    "programming",
    "advice",
    "roleplay",
)

# Estimated quality gain of the cloud per unit of each feature: fitted by bench/fit_scorer.py
# (ridge regression, train split), except design, code, tools and conversation (hand-set).
WEIGHTS: Mapping[str, float] = {
    "size": 0.064,
    "sentences": 0.043,
    "numbers": 0.2,
    "maths": 0.026,
    "maths_notation": 0.021,
    "multi_part": 0.039,
    "multi_step": -0.006,
    "reasoning": -0.064,
    "constraints": -0.015,
    "choices": 0.003,
    "design": 0.5,
    "code": 0.15,
    "tools": 0.10,
    "conversation": 0.10,
    "short_question": -0.061,
    "creative": 0.002,
    "programming": 0.033,
    "advice": -0.061,
    "roleplay": -0.012,
}
BASE = 0.12  # the gain of a prompt with no feature at all (calibrated: bench/fit_scorer.py)

_LABELS: Mapping[str, str] = {
    "size": "prompt size",
    "sentences": "several sentences",
    "numbers": "numbers in the question",
    "maths": "maths vocabulary",
    "maths_notation": "formulas or arithmetic",
    "multi_part": "several parts or enumerated asks",
    "multi_step": "multi-step request (steps, a plan)",
    "reasoning": "reasoning words (prove, explain why, compare...)",
    "constraints": "constraints (must, exactly, at least...)",
    "choices": "multiple-choice options",
    "design": "design and architecture vocabulary",
    "code": "code",
    "tools": "tools or a JSON schema",
    "conversation": "long conversation",
    "short_question": "short factual question",
    "creative": "everyday writing task",
    "programming": "asks for code",
    "advice": "asks for tips or advice",
    "roleplay": "role-play",
}


def _saturate(count: float, scale: float) -> float:
    """0 for none, 1 - e^-1 at ``scale``, towards 1 beyond."""
    return 1.0 - math.exp(-count / scale) if count > 0 else 0.0


def _tokens(low: str) -> list[str]:
    return low.translate(_TO_SPACE).split()


def _sentences(ask: str) -> int:
    ends = sum(ask.count(end) for end in (". ", "? ", "! ", ".\n", "?\n"))
    return ends + (1 if ask.rstrip().endswith((".", "?", "!")) else 0)


def _is_code(ask: str, words: frozenset[str]) -> bool:
    if any(marker in ask for marker in _CODE_MARKERS):
        return True
    return len(words & _CODE_WORDS) >= 2 and any(c in ask for c in "{};=")


def signals(body: Mapping[str, Any]) -> dict[str, float]:
    """The scorer's features of a chat request, each in [0, 1]."""
    return _signals(body)[0]


def _signals(body: Mapping[str, Any]) -> tuple[dict[str, float], frozenset[str]]:
    """The features and the words of the last user message (lower case)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        messages = []
    ask = last_user_text(messages)[-_SCAN_LIMIT:]
    low = ask.lower()
    lines = "\n" in ask
    # the options of a multiple-choice question say little about how hard it is: the size
    # is the question's (its numbers, options included, do count)
    choices = _CHOICE.findall(ask) if lines else []
    if len(choices) >= 3:
        start = low.index(choices[0].lower())
        stem = _tokens(low[:start])
        tokens = stem + _tokens(low[start:])
    else:
        stem = tokens = _tokens(low)
    words = frozenset(tokens)
    numbers = sum(1 for t in tokens if t[0].isdigit())
    design = len(words & _DESIGN) + sum(1 for p in _DESIGN_PHRASES if p in low)
    parts = sum(1 for m in _PART_MARKERS if m in low)
    parts += len(_NUMBERED.findall(ask)) if lines else 0
    first = tokens[0] if tokens else ""
    response_format = body.get("response_format")
    schema = isinstance(response_format, dict) and response_format.get("type") == "json_schema"
    turns = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "user")
    context_chars = len(message_text(messages)) - len(ask) if turns > 1 else 0
    notation = any(n in ask for n in _NOTATION) or _ARITHMETIC.search(ask) is not None
    values = {
        "size": min(1.0, math.log1p(len(stem)) / math.log1p(600)),
        "sentences": _saturate(_sentences(ask), 4.0),
        "numbers": min(1.0, math.log1p(numbers) / math.log1p(24)),
        "maths": _saturate(len(words & _MATHS), 3.0),
        "maths_notation": 1.0 if notation else 0.0,
        "multi_part": _saturate(parts, 2.0),
        "multi_step": 1.0 if any(p in low for p in _STEP_PHRASES) else 0.0,
        "reasoning": _saturate(len(words & _REASONING), 2.0),
        "constraints": _saturate(len(words & _CONSTRAINTS), 2.0),
        "choices": 1.0 if len(choices) >= 3 else 0.0,
        # one term alone is as often another trade's ("normally distributed", "DNA replication")
        "design": _saturate(design, 2.0) if design >= 2 else 0.0,
        "code": 1.0 if _is_code(ask, words) else 0.0,
        "tools": 1.0 if (body.get("tools") or body.get("functions") or schema) else 0.0,
        "conversation": _saturate(max(0, turns - 1) + context_chars / 4000, 3.0),
        "short_question": 1.0 if first in _QUESTION_START and len(tokens) <= 12 else 0.0,
        "creative": 1.0 if words & _CREATIVE else 0.0,
        "programming": 1.0 if words & _PROGRAMMING else 0.0,
        "advice": 1.0 if words & _ADVICE else 0.0,
        "roleplay": 1.0 if any(p in low[:200] for p in _ROLEPLAY) else 0.0,
    }
    return values, words


@dataclass(frozen=True, slots=True)
class ColdScore:
    """The cold-start estimate for one request."""

    gain: float  # estimated quality gain of the cloud, in [-1, 1]
    signals: Mapping[str, float]  # feature values, in FEATURES order
    contributions: tuple[tuple[str, float], ...]  # (feature, weight x value), largest first
    words: frozenset[str] = field(default=frozenset(), repr=False)  # of the last user message

    @property
    def local(self) -> float:
        """The confidence that a local model suffices: 1 - gain, within [0, 1]."""
        return min(1.0, max(0.0, 1.0 - self.gain))

    def explain(self, limit: int = 5) -> list[str]:
        """What counted, as short sentences for ``/route``."""
        return [
            f"{_LABELS[name]} ({value:+.2f})"
            for name, value in self.contributions[:limit]
            if abs(value) >= 0.005
        ]


def cold_score(body: Mapping[str, Any]) -> ColdScore:
    """The scorer's estimate of the cloud's quality gain for ``body``, with what counted."""
    values, words = _signals(body)
    parts = [(name, WEIGHTS[name] * values[name]) for name in FEATURES if values[name]]
    gain = min(1.0, max(-1.0, BASE + sum(v for _, v in parts)))
    parts.sort(key=lambda item: -abs(item[1]))
    return ColdScore(gain, values, tuple(parts), words)
