"""Privacy rules (the lab's "constitution") and their evaluation per request.

Configuration (``privacy`` key of the coordinator config)::

    {"enabled": true,
     "rules": [
       {"name": "ops-exempt", "action": "allow", "api_keys": ["ops"]},
       {"name": "no-codenames", "action": "block", "keywords": ["project-zeta"],
        "reason": "project codenames may not leave the lab"},
       {"name": "secrets-stay-local", "action": "local_only", "detectors": ["secret"]},
       {"name": "personal-data-stays-local", "action": "local_only", "detectors": ["pii"]}]}

A rule *matches* a request when it applies to the caller's key (``api_keys``
empty = every key) and any of its detectors, patterns or keywords fires; a
rule with none of those matches every request of its keys.

Evaluation, like a firewall with severity:

* rules are read in order; a matching ``allow`` rule ends the evaluation, so it
  exempts the request from every rule *after* it (put exemptions first);
* every other matching rule counts, and the strictest action wins:
  ``block`` > ``local_only`` > ``allow``; among equals the earliest rule is
  named in the verdict; a ``block`` ends the evaluation at once.

Reasons name the rule, its action and what fired (``detector aws_access_key``,
``pattern #0``, ``keyword #1``), never the matched text nor the configured
keyword itself, so they are safe to log, return to clients and store.

The scan reads everything the request sends upstream (:mod:`.extract`) in linear time
(:mod:`.engine`), within a CPU budget of ``scan_cpu_ms`` plus ``scan_cpu_ms_per_mb`` per MB of
request body. A scan that runs out of budget fails closed: the request is kept on local backends, as
the ``scan-budget`` rule.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .detector import Category, Detector, Finding
from .detectors import DETECTOR_CATEGORIES, builtin_detectors, detector_names
from .engine import (
    UNLIMITED_SECONDS,
    BudgetExceeded,
    Pattern,
    PatternError,
    ScanBudget,
    compile_pattern,
    escape,
)
from .extract import UpstreamText, upstream_text
from .scan import RequestScan, ScanPlan

__all__ = [
    "BUDGET_RULE",
    "Action",
    "PrivacyConfig",
    "PrivacyPolicy",
    "PrivacyRule",
    "PrivacyVerdict",
    "default_rules",
]

log = logging.getLogger("hydra_coordinator.privacy")

Action = Literal["block", "local_only", "allow"]
_SEVERITY: dict[str, int] = {"allow": 0, "local_only": 1, "block": 2}

BUDGET_RULE = "scan-budget"
"""The verdict's rule when the scan ran out of CPU budget (the request stays local)."""


class PrivacyRule(BaseModel):
    """One rule: what it matches, for which keys, and what happens then."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Unique name, shown in reasons and telemetry.")
    action: Action = Field(
        description="`block` (answer 403), `local_only` (never a cloud backend) or `allow` "
        "(exempt from the rules after this one)."
    )
    detectors: list[str] = Field(
        default_factory=list, description="detector names or the categories 'secret' / 'pii'"
    )
    patterns: list[str] = Field(
        default_factory=list,
        description="regular expressions in RE2 syntax (linear time: no look-around, "
        "no back-references)",
    )
    keywords: list[str] = Field(
        default_factory=list, description="case-insensitive whole words or phrases"
    )
    api_keys: list[str] = Field(default_factory=list, description="key ids; empty = every key")
    reason: str | None = Field(default=None, description="message for clients (e.g. the 403)")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value == BUDGET_RULE:
            raise ValueError(f"{BUDGET_RULE!r} is reserved for scans that run out of budget")
        return value

    @field_validator("detectors")
    @classmethod
    def _known_detectors(cls, value: list[str]) -> list[str]:
        detector_names(value)  # raises ValueError naming an unknown detector
        return value

    @field_validator("patterns")
    @classmethod
    def _valid_patterns(cls, value: list[str]) -> list[str]:
        for index, pattern in enumerate(value):
            try:
                compile_pattern(pattern)
            except PatternError as exc:
                raise ValueError(
                    f"pattern #{index} is not a valid regex (RE2 syntax): {exc}"
                ) from None
        return value

    @field_validator("keywords")
    @classmethod
    def _non_empty_keywords(cls, value: list[str]) -> list[str]:
        if any(not keyword.strip() for keyword in value):
            raise ValueError("keywords must not be empty")
        return value


def default_rules() -> list[PrivacyRule]:
    """The shipped constitution: secrets and personal data never leave the lab."""
    return [
        PrivacyRule(
            name="secrets-stay-local",
            action="local_only",
            detectors=["secret"],
            reason="the request contains a credential; it is only sent to local backends",
        ),
        PrivacyRule(
            name="personal-data-stays-local",
            action="local_only",
            detectors=["pii"],
            reason="the request contains personal data; it is only sent to local backends",
        ),
    ]


class PrivacyConfig(BaseModel):
    """The ``privacy`` section of the coordinator configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="Apply the rules at all.")
    rules: list[PrivacyRule] = Field(
        default_factory=default_rules,
        description="Read in order: a matching `allow` stops; else the strictest match wins.",
        json_schema_extra={
            "doc_default": "secrets and personal data `local_only` (`secrets-stay-local`, "
            "`personal-data-stays-local`)"
        },
    )
    scan_cpu_ms: float = Field(
        default=10.0,
        ge=0,
        description="CPU time the privacy scan of one request may use, plus scan_cpu_ms_per_mb "
        "per MB of request body; a scan that runs out keeps the request on local backends "
        "(fails closed)",
    )
    scan_cpu_ms_per_mb: float = Field(
        default=35.0, ge=0, description="the scan's extra CPU budget per MB of request body"
    )

    @model_validator(mode="after")
    def _unique_names(self) -> PrivacyConfig:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"duplicate privacy rule name {rule.name!r}")
            seen.add(rule.name)
        return self


@dataclass(frozen=True)
class PrivacyVerdict:
    """The outcome of evaluating the rules on one request.

    ``rule`` is the deciding rule (None when nothing matched; ``scan-budget`` when the scan
    ran out of CPU budget); ``reasons`` list every matching rule's hits; ``findings`` the
    detectors that fired (for telemetry: names and categories only); ``message`` the deciding
    rule's configured reason, meant for the client (403/503 body).
    """

    action: Action
    rule: str | None = None
    reasons: list[str] = field(default_factory=list)
    findings: tuple[Finding, ...] = ()
    message: str | None = None

    @property
    def cloud_allowed(self) -> bool:
        """Whether the request may be sent to (or fall back to) a cloud backend."""
        return self.action == "allow"


ALLOW = PrivacyVerdict(action="allow")


@dataclass(frozen=True)
class _CompiledRule:
    """A rule with its selectors expanded and its patterns compiled (RE2) once."""

    rule: PrivacyRule
    detectors: tuple[str, ...]
    patterns: tuple[Pattern, ...]
    keywords: tuple[Pattern, ...]

    @classmethod
    def build(cls, rule: PrivacyRule) -> _CompiledRule:
        return cls(
            rule=rule,
            detectors=tuple(detector_names(rule.detectors)),
            patterns=tuple(compile_pattern(p) for p in rule.patterns),
            keywords=tuple(compile_pattern(_keyword_pattern(k)) for k in rule.keywords),
        )

    def applies_to(self, key_id: str | None) -> bool:
        return not self.rule.api_keys or key_id in self.rule.api_keys

    def hits(self, scan: RequestScan) -> list[str]:
        """What fired, as safe labels; a rule without matchers matches everything."""
        if not (self.detectors or self.patterns or self.keywords):
            return ["every request" + (" of this key" if self.rule.api_keys else "")]
        found = [f"detector {name}" for name in scan.fired_among(self.detectors)]
        found += [f"pattern #{i}" for i, p in enumerate(self.patterns) if scan.pattern_occurs(p)]
        found += [f"keyword #{i}" for i, k in enumerate(self.keywords) if scan.pattern_occurs(k)]
        return found

    def reasons(self, hits: list[str]) -> list[str]:
        prefix = f"rule '{self.rule.name}' ({self.rule.action})"
        return [f"{prefix}: {hit}" for hit in hits]


_NOT_WORD = r"[^\pL\pN_]"


def _keyword_pattern(keyword: str) -> str:
    """A whole word or phrase, ignoring case: no letter, digit or ``_`` right around it."""
    return f"(?i)(?:^|{_NOT_WORD}){escape(keyword.strip())}(?:{_NOT_WORD}|$)"


# Made-up values of every kind the detectors confirm (none of them real).
_WARM_UP_BODY: dict[str, Any] = {
    "model": "auto",
    "messages": [
        {
            "role": "user",
            "content": (
                "call +49 151 23456789 or (646) 867-5309 or +44 20 7946 0958, mail a.b@example.org,"
                " SSN 536-22-4817, card 4398 2597 9190 7482, IBAN DE89370400440532013000,"
                " postgresql://app:Tr0ub4dor&3xyz@db/app, password: Zp3kL9qW2x,"
                " AKIAIOSFODNN7EXAMPLE ghp_abcdefghijklmnopqrstuvwxyz0123456789"
                " eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"
            ),
        }
    ],
}


class PrivacyPolicy:
    """Evaluates the configured rules on request bodies (pure, thread-safe)."""

    def __init__(self, cfg: PrivacyConfig, detectors: Mapping[str, Detector] | None = None):
        """Compile ``cfg``; ``detectors`` replaces the built-ins (for tests)."""
        self._enabled = cfg.enabled
        self._rules = tuple(_CompiledRule.build(rule) for rule in cfg.rules)
        self._budget_s = cfg.scan_cpu_ms / 1000
        self._budget_s_per_byte = cfg.scan_cpu_ms_per_mb / 1000 / 1_000_000
        available = dict(detectors) if detectors is not None else builtin_detectors()
        needed = {name for rule in self._rules for name in rule.detectors}
        self._detectors: Mapping[str, Detector] = {n: available[n] for n in needed}
        self._plan = ScanPlan(self._detectors)

    def warm_up(self) -> None:
        """Scan a sample that reaches every detector, without a budget: the libraries behind
        them load what they need on first use (``phonenumbers``' region data, ``stdnum``'s
        modules; several ms of CPU), and a request that paid for that would run out of its
        budget and stay local for no reason. Called once at start, off the event loop."""
        rules = list(self._rules)
        if not self._enabled or not rules:
            return
        upstream = upstream_text(_WARM_UP_BODY, lambda: None)
        self._decide(rules, upstream, ScanBudget(UNLIMITED_SECONDS))

    def budget_s(self, size: int) -> float:
        """The CPU seconds the scan of a ``size``-byte request may use."""
        return self._budget_s + self._budget_s_per_byte * size

    def evaluate(
        self, body: Mapping[str, Any], key_id: str | None, *, size: int | None = None
    ) -> PrivacyVerdict:
        """Decide allow / local_only / block for one request body from key ``key_id``.

        Reads everything in ``body`` that is sent upstream; fails closed (local only) when the
        scan runs out of its CPU budget, set by the body's size in bytes (``size``, the length
        of its JSON, computed when not given).
        """
        rules = [rule for rule in self._rules if rule.applies_to(key_id)]
        if not self._enabled or not rules:
            return ALLOW
        if size is None:
            size = json_size(body)
        budget = ScanBudget(self.budget_s(size), size)
        try:
            upstream = upstream_text(body, budget.tick)
            verdict = self._decide(rules, upstream, budget)
            budget.finish()
            return verdict
        except BudgetExceeded:
            return self._over_budget(size, budget)

    def _decide(
        self, rules: list[_CompiledRule], upstream: UpstreamText, budget: ScanBudget
    ) -> PrivacyVerdict:
        scan = RequestScan(self._plan, upstream, self._detectors, budget)
        decisive: _CompiledRule | None = None
        reasons: list[str] = []
        for rule in rules:
            hits = rule.hits(scan)
            if not hits:
                continue
            reasons += rule.reasons(hits)
            if decisive is None or _stricter(rule, decisive):
                decisive = rule
            if rule.rule.action in ("allow", "block"):
                break
        findings = tuple(Finding(name, _category(name, self._detectors)) for name in scan.fired)
        if decisive is None:
            return PrivacyVerdict(action="allow", findings=findings) if findings else ALLOW
        return PrivacyVerdict(
            action=decisive.rule.action,
            rule=decisive.rule.name,
            reasons=reasons,
            findings=findings,
            message=decisive.rule.reason,
        )

    def _over_budget(self, size: int, budget: ScanBudget) -> PrivacyVerdict:
        used_ms = budget.used() * 1000
        log.warning(
            "privacy scan of a %d-byte request ran out of its CPU budget after %.1f ms; "
            "the request stays on local backends",
            size,
            used_ms,
        )
        why = (
            f"the privacy scan ran out of its CPU budget ({used_ms:.0f} ms); "
            "the request is only sent to local backends"
        )
        return PrivacyVerdict(
            action="local_only",
            rule=BUDGET_RULE,
            reasons=[f"rule '{BUDGET_RULE}': {why}"],
            message=why,
        )


def json_size(body: Mapping[str, Any]) -> int:
    """The length of ``body`` as JSON (what the scan's budget is measured against)."""
    try:
        return len(orjson.dumps(body))
    except TypeError:  # not JSON (an integer too large, a set, ...): count its text instead
        return len(str(body))


def _category(name: str, detectors: Mapping[str, Detector]) -> Category:
    detector = detectors.get(name)
    return detector.category if detector is not None else DETECTOR_CATEGORIES[name]


def _stricter(candidate: _CompiledRule, current: _CompiledRule) -> bool:
    return _SEVERITY[candidate.rule.action] > _SEVERITY[current.rule.action]
