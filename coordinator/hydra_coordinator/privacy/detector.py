"""What a detector is: RE2 patterns that find candidates, and checks that confirm them.

Every detector answers one question, "does this text contain X?", and never returns or stores
the matched text: callers only learn the detector's name and category. A detector is a few
*probes*; a probe is one RE2 pattern (linear time, see :mod:`.engine`) and a check each match
must pass: documentation placeholders, template references, numbers whose check digits do not
verify (python-stdnum), phone numbers that are not dialable (phonenumbers) are rejected there.

Probes run on a :class:`ScanText`: the text, its UTF-8 bytes, and which probes of the policy's
pattern set occur in it at all (one RE2 pass for all of them), so a probe that cannot match
costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar, runtime_checkable

from .engine import UNLIMITED_SECONDS, Match, Pattern, ScanBudget, compile_pattern

__all__ = [
    "CATEGORIES",
    "Category",
    "Confirm",
    "Detector",
    "Finding",
    "PatternDetector",
    "Probe",
    "ScanText",
    "SharedScanDetector",
    "isolated",
    "preceding",
]

T = TypeVar("T")

Category = Literal["secret", "pii"]
CATEGORIES: tuple[Category, ...] = ("secret", "pii")


@dataclass(frozen=True)
class Finding:
    """A detector that fired on a request: its name and category, never the match."""

    detector: str
    category: Category


class Detector(Protocol):
    """Anything that can tell whether a text contains one kind of sensitive data."""

    @property
    def name(self) -> str: ...

    @property
    def category(self) -> Category: ...

    def scan(self, text: str) -> bool:
        """Return True when ``text`` contains at least one confirmed match."""
        ...


class ScanText:
    """One text to scan, its UTF-8 bytes, and facts about it computed at most once.

    ``hits`` is set by the scan: the indexes of the pattern set's patterns that occur in the
    text (None: unknown, run every probe). Not thread-safe: one per text and scan.
    """

    __slots__ = ("_facts", "data", "hits", "memo", "text")

    def __init__(self, text: str) -> None:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: not from JSON, but never crash on them
            text = text.encode("utf-8", "replace").decode("utf-8")
            data = text.encode("utf-8")
        self.text = text
        self.data = data
        self.hits: frozenset[int] | None = None
        self.memo: dict[tuple[Probe, int, str], bool] = {}  # see PatternDetector.scan_text
        self._facts: dict[Hashable, object] = {}

    def fact(self, key: Hashable, compute: Callable[[str], T]) -> T:
        """``compute(text)``, computed once per text and ``key``."""
        try:
            return self._facts[key]  # type: ignore[return-value]
        except KeyError:
            value = self._facts[key] = compute(self.text)
            return value


Confirm = Callable[[ScanText, Match], bool]
"""Confirms one match of a probe, with access to the whole text."""


@dataclass(frozen=True, eq=False)
class Probe:
    """One RE2 pattern of a detector and the check its matches must pass (None: any match).

    ``memo``: the check reads nothing but the match and the text from :data:`CONTEXT`
    characters before it to two after it, so its answer can be reused for the same window
    (repeated look-alikes cost one check). A check that reads more sets it to False.

    ``prefilter``: a pattern that matches wherever ``source`` does (a necessary condition),
    for the policy's pattern set (default: ``source``). All prefilters run together in one
    RE2 automaton, whose states multiply across patterns: a prefilter should start with a
    literal, or repeat one character class, never start a run of a class with a narrower one.
    """

    source: str
    confirm: Confirm | None = None
    memo: bool = True
    prefilter: str | None = None
    pattern: Pattern = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", compile_pattern(self.source))
        if self.prefilter is None:
            object.__setattr__(self, "prefilter", self.source)


Occurs = Callable[[ScanText, Probe], bool]
"""Whether a probe's pattern occurs in a text at all (from the pattern set's one pass)."""


def _always(text: ScanText, probe: Probe) -> bool:
    return True


@runtime_checkable
class SharedScanDetector(Detector, Protocol):
    """A detector made of probes, run on shared :class:`ScanText` objects under a budget."""

    @property
    def probes(self) -> tuple[Probe, ...]: ...

    def scan_text(self, text: ScanText, occurs: Occurs, budget: ScanBudget) -> bool:
        """Same answer as ``scan(text.text)``; raises BudgetExceeded past the budget."""
        ...


@dataclass(frozen=True)
class PatternDetector:
    """A detector made of probes: it fires when any match of any probe is confirmed."""

    name: str
    category: Category
    probes: tuple[Probe, ...]

    def scan(self, text: str) -> bool:
        """True when any match of any probe is confirmed (no budget)."""
        return self.scan_text(ScanText(text), _always, ScanBudget(UNLIMITED_SECONDS))

    def scan_text(self, text: ScanText, occurs: Occurs, budget: ScanBudget) -> bool:
        """Like :meth:`scan`; skips probes that do not occur, ticks the budget per match."""
        raw = text.text
        for probe in self.probes:
            if not occurs(text, probe):
                continue
            budget.check()
            confirm = probe.confirm
            if confirm is None:
                if probe.pattern.search(raw) is not None:
                    return True
                continue
            memo = text.memo if probe.memo else None
            for match in probe.pattern.finditer(raw, text.data):
                if match.oversized:
                    return True  # a credential-shaped match of this size: fail closed
                if _confirmed(text, probe, confirm, match, memo):
                    return True
                budget.tick()
        return False


CONTEXT = 48
"""Characters before a match that a check may read (``preceding`` reads 40)."""
_MEMO_SPAN = 256  # longer matches are checked every time (their windows are not kept)


def _confirmed(
    text: ScanText,
    probe: Probe,
    confirm: Confirm,
    match: Match,
    memo: dict[tuple[Probe, int, str], bool] | None,
) -> bool:
    start, end = match.start(), match.end()
    if memo is None or end - start > _MEMO_SPAN:
        return confirm(text, match)
    low = max(0, start - CONTEXT)
    key = (probe, start - low, text.text[low : end + 2])
    found = memo.get(key)
    if found is None:
        found = memo[key] = confirm(text, match)
    return found


# --------------------------------------------------------------------------- helpers for checks

_SENTENCE_END = ".,;:!?"
_CLOSERS = " \t\r\n\"')]}>*_"


def isolated(text: str, start: int, end: int, extra: str = "", *, alnum: bool = True) -> bool:
    """True when the characters around ``text[start:end]`` are not part of a longer token:
    neither alphanumeric (with ``alnum``) nor in ``extra``.

    Sentence punctuation right after the match (``.``, ``,``, ``;``, ``:``, ``!``, ``?``)
    still counts as a boundary when it ends the text or is followed by a space, a quote or a
    bracket: "My SSN is 536-22-4817." ends a sentence, "536-22-4817.5" does not.
    """
    if start > 0:
        char = text[start - 1]
        if char in extra or (alnum and char.isalnum()):
            return False
    if end < len(text):
        char = text[end]
        if char in _SENTENCE_END and (end + 1 == len(text) or text[end + 1] in _CLOSERS):
            return True
        if char in extra or (alnum and char.isalnum()):
            return False
    return True


def preceding(text: str, start: int, width: int = 40) -> str:
    """The lower-cased ``width`` characters before ``start`` (context for checks)."""
    return text[max(0, start - width) : start].lower()
