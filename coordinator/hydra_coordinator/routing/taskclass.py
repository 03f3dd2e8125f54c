"""Classify a request into a coarse task class from cheap text cues.

The learned router keeps one posterior per (task class, backend), so the
classes must be few, stable and cheap to compute: a handful of regexes over
the last user message, no model. Classes:

* ``code``: code fences, stack traces, programming vocabulary;
* ``reasoning``: maths, proofs, puzzles, step-by-step analysis;
* ``writing``: drafting, rewriting, stories, e-mails, translation;
* ``factual``: who/what/when/where questions, definitions, lookups;
* ``chat``: everything else (greetings, small talk, short follow-ups).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType

TASK_CLASSES: tuple[str, ...] = ("code", "reasoning", "writing", "factual", "chat")
DEFAULT_CLASS = "chat"

# The cue regexes are immutable module constants; each pair is (pattern, weight).
_CUES: MappingProxyType[str, tuple[tuple[re.Pattern[str], float], ...]] = MappingProxyType(
    {
        "code": (
            (re.compile(r"```|^\s{4}\S.*[;{}):]\s*$", re.MULTILINE), 2.0),
            (re.compile(r"Traceback \(most recent call last\)|\b\w+(?:Error|Exception)\b"), 2.0),
            (
                re.compile(
                    r"\b(?:def|class|import|return|const|let|fn|func|public|void|struct|impl)\b"
                    r"\s+\w|=>|::|#include|\w+\([^)]*\)\s*[{:]"
                ),
                1.5,
            ),
            (
                re.compile(
                    r"\b(?:python|rust|javascript|typescript|golang|java|c\+\+|sql|regex|bash"
                    r"|function|compile[rsd]?|debug\w*|refactor\w*|unit tests?|api|json|yaml"
                    r"|dockerfile|nix(?:os)?|kubernetes|segfault|stack trace|bug)\b",
                    re.IGNORECASE,
                ),
                1.0,
            ),
        ),
        "reasoning": (
            (
                re.compile(
                    r"\b(?:prove|proof|derive|theorem|lemma|integral|derivative|equation"
                    r"|probability|expected value|optimi[sz]e|complexity of|puzzle|riddle"
                    r"|logic(?:al)?|deduce|solve)\b",
                    re.IGNORECASE,
                ),
                1.5,
            ),
            (
                re.compile(
                    r"\bstep[- ]by[- ]step\b|\bwhy (?:does|is|do|would)\b|\bhow many ways\b"
                    r"|\btrade-?offs?\b|\bcompare\b|\bwhich is (?:better|faster)\b",
                    re.IGNORECASE,
                ),
                1.0,
            ),
            (re.compile(r"\d\s*[-+*/^=<>]\s*\d|[∑∫√≤≥≠∀∃]|\bx\^?\d\b"), 1.0),
        ),
        "writing": (
            (
                re.compile(
                    r"\b(?:write|draft|compose|rewrite|rephrase|paraphrase|proofread|edit|polish"
                    r"|translate|summari[sz]e)\b",
                    re.IGNORECASE,
                ),
                1.5,
            ),
            (
                re.compile(
                    r"\b(?:essay|story|poem|haiku|lyrics|blog post|article|e-?mail|letter|cover"
                    r" letter|speech|slogan|tweet|outline|paragraph|tone|style)\b",
                    re.IGNORECASE,
                ),
                1.0,
            ),
        ),
        "factual": (
            (
                re.compile(
                    r"^\s*(?:what|who|when|where|which|how (?:many|much|old|far|long|tall))\b"
                    r"|\bwhat (?:is|are|was|were)\b|\bwho (?:is|was|invented|wrote)\b",
                    re.IGNORECASE | re.MULTILINE,
                ),
                1.5,
            ),
            (
                re.compile(
                    r"\b(?:define|definition of|capital of|population of|meaning of|history of"
                    r"|difference between|fact|year|date|released?)\b",
                    re.IGNORECASE,
                ),
                1.0,
            ),
        ),
    }
)

_MIN_SCORE = 1.0  # below this, nothing stood out: the request is chat
_SCAN_LIMIT = 8_000  # characters at the end of the text that are looked at


@dataclass(frozen=True)
class TaskClassifier:
    """Maps text to one of :data:`TASK_CLASSES` (pure, thread-safe, ~10-50 µs)."""

    min_score: float = _MIN_SCORE

    @property
    def classes(self) -> tuple[str, ...]:
        """Every class :meth:`classify` can return."""
        return TASK_CLASSES

    def scores(self, text: str) -> dict[str, float]:
        """Weighted cue hits per class (chat is implicit: it has no cues)."""
        tail = text[-_SCAN_LIMIT:]
        return {
            name: sum(weight for pattern, weight in cues if pattern.search(tail))
            for name, cues in _CUES.items()
        }

    def classify(self, text: str) -> str:
        """The class with the highest cue score; ties go to the earlier class.

        Text with no cue above ``min_score`` is ``chat``.
        """
        scores = self.scores(text)
        best = max(scores, key=lambda name: scores[name])
        return best if scores[best] >= self.min_score else DEFAULT_CLASS
