"""One request's scan: its texts, the pattern set's pass over each, detectors run lazily once.

The texts come from :func:`.extract.upstream_text`. Each is matched once against the policy's
:class:`ScanPlan` (every probe of every detector the rules use, the rules' own patterns and
keywords, and base64 tokens that encode text), which says what can occur in it. Base64 tokens
that decode to text add that text to the scan. Detectors then run, when a rule asks, only on
texts where one of their probes occurs, each at most once per request, under one
:class:`.engine.ScanBudget`.
"""

from __future__ import annotations

from collections.abc import Mapping

from .detector import Detector, Probe, ScanText, SharedScanDetector
from .engine import Pattern, PatternSet, ScanBudget, compile_pattern
from .extract import UpstreamText, decode_base64_text, normalise, percent_decoded

__all__ = ["RequestScan", "ScanPlan"]

# Base64 of text: each 4-character group starts with the top 6 bits of an ASCII byte (I-Z,
# a-f); four such groups (12 characters of text) make a candidate worth decoding.
_BASE64_TEXT = r"(?:[I-Za-f][A-Za-z0-9+/_-]{3}){4}[A-Za-z0-9+/_-]*={0,2}"
_BASE64_PREFILTER = r"[A-Za-z0-9+/_-]{16}"
_BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-=")
_DECODE_DEPTH = 2  # base64 inside base64 inside the request, and no deeper


class ScanPlan:
    """Everything a policy looks for, as one RE2 pattern set (built once per policy)."""

    def __init__(self, detectors: Mapping[str, Detector]) -> None:
        sources: list[str] = []
        self.index: dict[Probe, int] = {}
        # isinstance() on a runtime protocol is slow: decided once here, not per request
        self.shared: dict[str, SharedScanDetector] = {
            name: d for name, d in detectors.items() if isinstance(d, SharedScanDetector)
        }
        self.detector_index: dict[str, frozenset[int]] = {}
        for name, detector in self.shared.items():
            start = len(sources)
            for probe in detector.probes:
                self.index[probe] = len(sources)
                sources.append(probe.prefilter or probe.source)
            self.detector_index[name] = frozenset(range(start, len(sources)))
        self.base64_index = len(sources)
        sources.append(_BASE64_PREFILTER)
        self.base64 = compile_pattern(_BASE64_TEXT)
        self.set = PatternSet(sources)

    def occurs(self, text: ScanText, probe: Probe) -> bool:
        hits = text.hits
        if hits is None:
            return True
        index = self.index.get(probe)
        return index is None or index in hits


class RequestScan:
    """Detector results for one request, computed lazily and at most once each."""

    __slots__ = (
        "_possible",
        "_texts",
        "budget",
        "detectors",
        "fired",
        "plan",
        "results",
        "upstream",
    )

    def __init__(
        self,
        plan: ScanPlan,
        upstream: UpstreamText,
        detectors: Mapping[str, Detector],
        budget: ScanBudget,
    ) -> None:
        self.plan = plan
        self.upstream = upstream
        self.detectors = detectors
        self.budget = budget
        self.results: dict[str, bool] = {}
        self.fired: list[str] = []  # detectors that fired, in the order they ran
        self._texts: list[ScanText] | None = None
        self._possible: frozenset[str] | None = None  # detectors that may fire (None: all)

    @property
    def texts(self) -> list[ScanText]:
        """The texts to scan, each matched against the plan's set (and base64 expanded)."""
        if self._texts is None:
            plain = list(self.upstream.texts())
            plain += [percent_decoded(text, self.budget.check) for text in self.upstream.encoded]
            texts: list[ScanText] = []
            for text in plain:
                texts += self._variants(text)
            texts += self._decoded(texts, 1)
            if all(text.hits is not None for text in texts):
                hits = frozenset().union(*(text.hits or () for text in texts))
                self._possible = frozenset(
                    name
                    for name in self.detectors
                    if name not in self.plan.shared
                    or not self.plan.detector_index[name].isdisjoint(hits)
                )
            self._texts = texts
        return self._texts

    def _variants(self, text: str) -> list[ScanText]:
        """``text`` and, when it differs, its normalised form, each matched."""
        self.budget.check()
        normalised = normalise(text, self.budget.check)
        if normalised == text:
            return [self._matched(text)]
        return [self._matched(text), self._matched(normalised)]

    def _matched(self, text: str) -> ScanText:
        self.budget.check()
        scan_text = ScanText(text)
        scan_text.hits = self.plan.set.match(scan_text.data)
        return scan_text

    def _decoded(self, texts: list[ScanText], depth: int) -> list[ScanText]:
        """Texts that base64 tokens in ``texts`` encode, matched and expanded in turn."""
        found: list[ScanText] = []
        index, budget = self.plan.base64_index, self.budget
        for text in texts:
            if text.hits is not None and index not in text.hits:
                continue
            raw = text.text
            for match in self.plan.base64.finditer(raw, text.data):
                budget.tick()
                start = match.start()
                if start > 0 and raw[start - 1] in _BASE64_CHARS:
                    continue  # inside a longer token: not where the base64 begins
                decoded = decode_base64_text(match.group(0) or "")
                if decoded is not None:
                    found += self._variants(decoded)
        if found and depth < _DECODE_DEPTH:
            found += self._decoded(found, depth + 1)
        return found

    def detector_fires(self, name: str) -> bool:
        hit = self.results.get(name)
        if hit is None:
            hit = self.results[name] = self._run(name)
            if hit:
                self.fired.append(name)
        return hit

    def _run(self, name: str) -> bool:
        shared = self.plan.shared.get(name)
        if shared is not None:
            occurs, budget = self.plan.occurs, self.budget
            return any(shared.scan_text(text, occurs, budget) for text in self.texts)
        detector = self.detectors[name]
        for text in self.texts:
            self.budget.check()
            if detector.scan(text.text):
                return True
        return False

    def fired_among(self, names: tuple[str, ...]) -> list[str]:
        """The detectors of ``names`` that fire, running each not yet run (a detector none of
        whose patterns occurs in any text is not run at all)."""
        self.texts  # noqa: B018 (matches the texts against the pattern set once)
        possible = self._possible
        if possible is None:
            return [name for name in names if self.detector_fires(name)]
        return [name for name in names if name in possible and self.detector_fires(name)]

    def pattern_occurs(self, pattern: Pattern) -> bool:
        """Whether a rule's pattern (or keyword) occurs in any text. Each runs on its own (RE2,
        one linear pass per text): a user's pattern is not added to the shared pattern set,
        where it could multiply the states of every other pattern's automaton."""
        for text in self.texts:
            self.budget.check()
            if pattern.search(text.text) is not None:
                return True
        return False
