"""Classify a request into a coarse task class from cheap text cues.

A request's task class is recorded with its telemetry and shown by ``/route`` (routing itself
learns per prompt, :mod:`.bandit`), so the
classes must be few, stable and cheap to compute: word and phrase cues plus
one structural regex per class, no model. Pass the last user message (or the
whole conversation's text); only its last 4000 characters are looked at. Classes:

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


@dataclass(frozen=True)
class _Cues:
    """What counts as evidence for one class, with the weight of each kind of cue."""

    words: frozenset[str] = frozenset()  # single lower-case words
    phrases: tuple[str, ...] = ()  # lower-case word sequences (matched on word boundaries)
    pattern: re.Pattern[str] | None = None  # structural cue on the raw text
    word_weight: float = 1.0
    phrase_weight: float = 1.5
    pattern_weight: float = 2.0


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words and phrases are looked up in a set and with substring tests on normalised
# text: regex word lists (worse, IGNORECASE ones) cost ~0.5 ms per KB in CPython.
_CUES: MappingProxyType[str, _Cues] = MappingProxyType(
    {
        "code": _Cues(
            words=_words(
                "python rust javascript typescript golang java c++ sql regex bash function "
                "compiler compile compiles debug debugging refactor api json yaml dockerfile "
                "nixos kubernetes segfault bug traceback exception error def const struct "
                "impl fn func async await lambda variable null nullptr pointer stacktrace"
            ),
            phrases=(
                "write a function",
                "write a script",
                "write a program",
                "write a class",
                "unit test",
                "unit tests",
                "stack trace",
                "most recent call last",
                "implement a",
                "this code",
                "my code",
                "fix the bug",
                "sql query",
            ),
            pattern=re.compile(r"```|\w\([^)\n]*\) *[{:]|=>|::|#include|;\n"),
        ),
        "reasoning": _Cues(
            words=_words(
                "prove proof derive theorem lemma integral derivative equation equations "
                "probability optimise optimize puzzle riddle logic logical deduce solve "
                "compare tradeoff tradeoffs trade-offs why"
            ),
            phrases=(
                "step by step",
                "step-by-step",
                "expected value",
                "how many ways",
                "which is better",
                "which is faster",
                "complexity of",
                "why does",
                "why is",
            ),
            pattern=re.compile(r"\d ?[-+*/^=<>] ?\d"),
            pattern_weight=1.0,
        ),
        "writing": _Cues(
            words=_words(
                "write draft compose rewrite rephrase paraphrase proofread edit polish translate "
                "summarise summarize essay story poem haiku lyrics article email e-mail letter "
                "speech slogan tweet outline paragraph tone style"
            ),
            phrases=("blog post", "cover letter", "in the style of", "make it sound"),
        ),
        "factual": _Cues(
            words=_words("who what when where which define definition"),
            phrases=(
                "what is",
                "what are",
                "what was",
                "who is",
                "who was",
                "who invented",
                "who wrote",
                "capital of",
                "population of",
                "meaning of",
                "history of",
                "difference between",
                "in which year",
                "what year",
                "how many",
                "how much",
                "how old",
                "how far",
                "how tall",
            ),
            word_weight=0.5,
        ),
    }
)
_TO_SPACE = str.maketrans({c: " " for c in "!\"$%&'()*,./:;<=>?@[\\]^`{|}~\n\t"})


def _normalise(text: str) -> tuple[frozenset[str], str]:
    """Lower-cased words of ``text`` and the same words joined by single spaces."""
    tokens = text.lower().translate(_TO_SPACE).split()
    return frozenset(tokens), " " + " ".join(tokens) + " "


def _score(cues: _Cues, words: frozenset[str], joined: str, raw: str) -> float:
    score = 0.0
    if not words.isdisjoint(cues.words):
        score += cues.word_weight
    if any(f" {phrase} " in joined for phrase in cues.phrases):
        score += cues.phrase_weight
    if cues.pattern is not None and cues.pattern.search(raw):
        score += cues.pattern_weight
    return score


_MIN_SCORE = 1.0  # below this, nothing stood out: the request is chat
_SCAN_LIMIT = 4_000  # characters at the end of the text that are looked at


@dataclass(frozen=True)
class TaskClassifier:
    """Maps text to one of :data:`TASK_CLASSES` (pure, thread-safe, tens of µs per KB)."""

    min_score: float = _MIN_SCORE

    @property
    def classes(self) -> tuple[str, ...]:
        """Every class :meth:`classify` can return."""
        return TASK_CLASSES

    def scores(self, text: str) -> dict[str, float]:
        """Weighted cue hits per class (chat is implicit: it has no cues)."""
        tail = text[-_SCAN_LIMIT:]
        words, joined = _normalise(tail)
        return {name: _score(cues, words, joined, tail) for name, cues in _CUES.items()}

    def classify(self, text: str) -> str:
        """The class with the highest cue score; ties go to the earlier class.

        Text with no cue above ``min_score`` is ``chat``.
        """
        scores = self.scores(text)
        best = max(scores, key=lambda name: scores[name])
        return best if scores[best] >= self.min_score else DEFAULT_CLASS
