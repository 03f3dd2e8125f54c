"""Linear-time matching for the privacy scan: RE2 patterns, one pattern set, a CPU budget.

Every regular expression the scan runs is compiled with RE2 (``google-re2``), whose time is
linear in the text whatever the pattern or the input: no backtracking, so no pattern can be
made to take quadratic or exponential time by a crafted request. RE2 also releases the GIL
while it matches, so a scan in a worker thread does not hold up the event loop.

A :class:`PatternSet` runs all patterns of a policy over a text in one pass and says which of
them match somewhere; only those are run again to find their matches and confirm them.
A :class:`ScanBudget` bounds the CPU time the confirmations may take: a request whose scan
runs out of budget is treated as sensitive (the policy fails closed).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from typing import Protocol

import re2

__all__ = [
    "BudgetExceeded",
    "Match",
    "Pattern",
    "PatternError",
    "PatternSet",
    "ScanBudget",
    "compile_pattern",
    "escape",
]

_MAX_MEM = 64 << 20  # RE2's memory for one compiled pattern or set (its DFA cache included)


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # a bad user pattern is reported as PatternError, not on stderr
    options.max_mem = _MAX_MEM
    return options


class PatternError(ValueError):
    """A pattern RE2 cannot compile (bad syntax, or a feature RE2 lacks such as look-behind)."""


class Match(Protocol):
    """The parts of a match the detectors use (like ``re.Match``).

    ``oversized``: a match of a pattern with groups that is longer than
    :data:`GROUPS_MAX` characters; its groups are not extracted (only group 0 is there).
    """

    def group(self, group: int = 0, /) -> str | None: ...

    def start(self, group: int = 0, /) -> int: ...

    def end(self, group: int = 0, /) -> int: ...

    @property
    def lastindex(self) -> int | None: ...

    @property
    def oversized(self) -> bool: ...


GROUPS_MAX = 16 * 1024
"""The longest match whose groups are extracted. RE2 finds where a match starts and ends with
its DFA (about a nanosecond per byte); the groups need a slower pass over the match (about
100 ns per byte), which is only worth it on matches of a plausible size."""


class Pattern:
    """One compiled RE2 pattern over ``str`` texts (offsets are character offsets).

    Matches are found in two steps: the pattern without capture groups finds each match's
    bounds (RE2's DFA alone), then, for a pattern with groups, the pattern is matched again on
    that match only to extract them.
    """

    __slots__ = ("_bounds", "_regexp", "groups", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._regexp = re2.compile(source, _options())
            bounds = _options()
            bounds.never_capture = True
            self._bounds = re2.compile(source, bounds)
        except re2.error as exc:
            raise PatternError(f"{exc}") from None
        self.groups: int = self._regexp.groups

    def finditer(self, text: str, data: bytes | None = None) -> Iterator[Match]:
        """Non-overlapping matches, leftmost first (linear in ``text`` overall).

        ``data`` is ``text`` encoded as UTF-8, when the caller has it: for ASCII text (one byte
        per character, so the same offsets) RE2 then reads it directly, which costs less than
        half per match than mapping offsets between bytes and characters.
        """
        subject: str | bytes = data if data is not None and len(data) == len(text) else text
        for bounds in self._bounds.finditer(subject):
            start, end = bounds.start(), bounds.end()
            if not self.groups or end - start > GROUPS_MAX:
                yield _Found(subject, start, end, None, oversized=self.groups > 0)
                continue
            match = self._regexp.fullmatch(subject[start:end])
            yield _Found(subject, start, end, match, oversized=False)

    def search(self, text: str) -> Match | None:
        """The first match (its bounds only: group 0)."""
        match = self._bounds.search(text)
        return None if match is None else _Found(text, match.start(), match.end(), None)


class _Found:
    """A match found in ``subject`` (the text, or its ASCII bytes: the same offsets) from
    ``start`` to ``end``, with ``groups`` matched on that part alone (offsets from ``start``)."""

    __slots__ = ("_end", "_groups", "_start", "_subject", "oversized")

    def __init__(
        self,
        subject: str | bytes,
        start: int,
        end: int,
        groups: object,
        *,
        oversized: bool = False,
    ) -> None:
        self._subject = subject
        self._start = start
        self._end = end
        self._groups: re2._Match | None = groups
        self.oversized = oversized

    def group(self, group: int = 0, /) -> str | None:
        value: str | bytes | None
        if group == 0:
            value = self._subject[self._start : self._end]
        else:
            value = None if self._groups is None else self._groups.group(group)
        return value.decode("ascii") if isinstance(value, bytes) else value

    def start(self, group: int = 0, /) -> int:
        if group == 0 or self._groups is None:
            return self._start if group == 0 else -1
        offset: int = self._groups.start(group)
        return -1 if offset < 0 else self._start + offset

    def end(self, group: int = 0, /) -> int:
        if group == 0 or self._groups is None:
            return self._end if group == 0 else -1
        offset: int = self._groups.end(group)
        return -1 if offset < 0 else self._start + offset

    @property
    def lastindex(self) -> int | None:
        if self._groups is None:
            return None
        index: int | None = self._groups.lastindex
        return index


def escape(text: str) -> str:
    """``text`` as an RE2 pattern that matches it literally."""
    escaped: str = re2.escape(text)
    return escaped


def compile_pattern(source: str) -> Pattern:
    """Compile ``source`` with RE2; raises :class:`PatternError` with RE2's reason."""
    return Pattern(source)


class PatternSet:
    """Patterns matched together: which of them occur anywhere in a text, in two RE2 passes.

    One automaton runs all patterns at once, but its states multiply across patterns: a
    pattern that starts with a character class (``\\d{4}``, ``[A-Za-z0-9]{32}``) is alive at
    almost every position of a text made of that class, and several of them together make
    RE2 build new states at every byte. So patterns that start with a literal go in one set
    and those that start with a class in another (measured: 2-20 ms per MB each, instead of
    500 ms per MB on random tokens for one set of all). The class-led ones are split again,
    those led by digits or capitals (numbers, IBANs) from those led by wider classes (tokens):
    together they cost up to 55-85 ms per MB on random tokens, apart at most about 30.
    """

    __slots__ = ("_sets", "size")

    def __init__(self, sources: Sequence[str]) -> None:
        self.size = len(sources)
        literal = [i for i, source in enumerate(sources) if not _leads_with_class(source)]
        classes = [i for i, source in enumerate(sources) if _leads_with_class(source)]
        narrow = [i for i in classes if _leads_with_narrow_class(sources[i])]
        wide = [i for i in classes if i not in narrow]
        self._sets = [_OneSet(sources, group) for group in (literal, narrow, wide) if group]

    def match(self, data: bytes) -> frozenset[int] | None:
        """Indexes (into ``sources``) of the patterns that occur in ``data`` (UTF-8); None
        when RE2 could not tell, so the caller must try every pattern."""
        found: set[int] = set()
        for one in self._sets:
            hits = one.match(data)
            if hits is None:
                return None
            found.update(hits)
        return frozenset(found)


_FLAGS = re.compile(r"^\(\?[a-zA-Z]+\)")


def _leads_with_class(source: str) -> bool:
    """Whether a pattern starts with a character class rather than a literal character."""
    body = _FLAGS.sub("", source).removeprefix(r"\b").removeprefix("(?:")
    return body.startswith(("[", r"\d", r"\w", r"\s", r"\D", r"\W", r"\S", "."))


def _leads_with_narrow_class(source: str) -> bool:
    """Whether a pattern starts with a digit or a capital letter class."""
    body = _FLAGS.sub("", source).removeprefix(r"\b").removeprefix("(?:")
    return body.startswith((r"\d", "[A-Z]"))


class _OneSet:
    """One RE2 set over some of the patterns (their indexes in the whole list)."""

    __slots__ = ("_indexes", "_set")

    def __init__(self, sources: Sequence[str], indexes: list[int]) -> None:
        self._indexes = indexes
        self._set = re2.Set.SearchSet(_options())
        # The empty pattern matches every text: when RE2 gives up (out of memory) it reports
        # no match at all, and the missing sentinel tells us to run everything.
        self._set.Add("")
        for index in indexes:
            try:
                self._set.Add(sources[index])
            except re2.error as exc:
                raise PatternError(f"{exc}: {sources[index]!r}") from None
        self._set.Compile()

    def match(self, data: bytes) -> list[int] | None:
        found: list[int] | None = self._set.Match(data)
        if not found or 0 not in found:
            return None
        return [self._indexes[position - 1] for position in found if position]


class BudgetExceeded(Exception):
    """The scan used up its CPU budget before it could finish."""


class ScanBudget:
    """CPU time (of the scanning thread) a scan may still use, checked between steps.

    ``check`` is called between steps (a text, a probe), ``tick`` once per checked candidate,
    ``finish`` at the end; they raise :class:`BudgetExceeded` past the deadline. A thread's CPU
    time cannot exceed the wall-clock time since the start, so the cheap wall clock is read
    first and the CPU clock (a system call, microseconds on a busy machine) only once the wall
    clock is past the budget: most scans read it just once, at the start. ``check`` and
    ``tick`` look at a clock only every few calls (every check for a large request, whose
    steps are long).
    """

    __slots__ = ("_checks", "_seconds", "_stride", "_ticks", "_wall", "deadline", "started")

    _TICKS = 64
    _SMALL = 64 * 1024  # bytes: below this a step costs microseconds
    _SMALL_STRIDE = 16

    def __init__(self, seconds: float, size: int = 0) -> None:
        self.started = time.thread_time()
        self._wall = time.perf_counter()
        self._seconds = seconds
        self.deadline = self.started + seconds
        self._stride = self._SMALL_STRIDE if size < self._SMALL else 1
        self._checks = 0
        self._ticks = 0

    def _over(self) -> bool:
        if time.perf_counter() - self._wall <= self._seconds:
            return False
        return time.thread_time() > self.deadline

    def check(self) -> None:
        self._checks += 1
        if self._checks % self._stride == 0 and self._over():
            raise BudgetExceeded

    def tick(self) -> None:
        self._ticks += 1
        if self._ticks % self._TICKS == 0 and self._over():
            raise BudgetExceeded

    def finish(self) -> None:
        """The last check, on every call: a scan that ended past its deadline counts as out of
        budget too (whatever it found is not trusted more than a cut-off scan)."""
        if self._over():
            raise BudgetExceeded

    def used(self) -> float:
        """CPU seconds used so far."""
        return time.thread_time() - self.started


UNLIMITED_SECONDS = 1e9
"""A budget that never runs out (for standalone detector scans and tests)."""
