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
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .detectors import (
    DETECTOR_CATEGORIES,
    Detector,
    Finding,
    ScanText,
    SharedScanDetector,
    builtin_detectors,
    detector_names,
)

Action = Literal["block", "local_only", "allow"]
_SEVERITY: dict[str, int] = {"allow": 0, "local_only": 1, "block": 2}

# Content-part keys that hold binary payloads (base64 images, audio, files) or
# metadata rather than text a user wrote; scanning them only yields noise.
_SKIPPED_PART_KEYS = frozenset(
    {
        "type",
        "id",
        "role",
        "name",
        "tool_call_id",
        "cache_control",
        "image_url",
        "input_audio",
        "file",
        "image",
        "audio",
        "source",
        "data",
        "mime_type",
        "detail",
    }
)
_MESSAGE_TEXT_KEYS = ("content", "reasoning_content", "refusal")


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
    patterns: list[str] = Field(default_factory=list, description="regular expressions")
    keywords: list[str] = Field(
        default_factory=list, description="case-insensitive whole words or phrases"
    )
    api_keys: list[str] = Field(default_factory=list, description="key ids; empty = every key")
    reason: str | None = Field(default=None, description="message for clients (e.g. the 403)")

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
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern #{index} is not a valid regex: {exc}") from None
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

    ``rule`` is the deciding rule (None when nothing matched); ``reasons`` list
    every matching rule's hits; ``findings`` the detectors that fired (for
    telemetry: names and categories only); ``message`` the deciding rule's
    configured reason, meant for the client (403/503 body).
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


# --------------------------------------------------------------------------- text extraction


def extract_text(body: Mapping[str, Any]) -> str:
    """All user-controlled text of a chat (or legacy completion) request, joined by newlines.

    Covers every message (system, user, assistant, tool, earlier turns), string
    and list-of-parts content, tool call and legacy function call arguments,
    and the ``prompt`` / ``input`` fields. Binary parts (images, audio, files)
    are skipped.
    """
    texts: list[str] = []
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if _is_mapping(message):
                _add_message_texts(message, texts)
    for key in ("prompt", "input"):
        _add_strings(body.get(key), texts)
    return "\n".join(texts)


def _is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)``, with fast paths for JSON (a dict, or None)."""
    return type(value) is dict or (value is not None and isinstance(value, Mapping))


def _add_message_texts(message: Mapping[str, Any], texts: list[str]) -> None:
    for key in _MESSAGE_TEXT_KEYS:
        _add_strings(message.get(key), texts)
    tool_calls = message.get("tool_calls")
    if isinstance(tool_calls, list):
        for call in tool_calls:
            if _is_mapping(call):
                _add_function_arguments(call.get("function"), texts)
    _add_function_arguments(message.get("function_call"), texts)


def _add_function_arguments(function: object, texts: list[str]) -> None:
    """Tool call arguments: the string values of the JSON object, else the raw string."""
    if not _is_mapping(function):
        return
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            decoded = json.loads(arguments)
        except ValueError:
            texts.append(arguments)
            return
        _add_json_strings(decoded, texts)
    else:
        _add_json_strings(arguments, texts)


def _add_json_strings(value: object, texts: list[str]) -> None:
    """Every string value inside decoded JSON, whatever its key."""
    if isinstance(value, str):
        if value:
            texts.append(value)
    elif isinstance(value, list):
        for item in value:
            _add_json_strings(item, texts)
    elif _is_mapping(value):
        for item in value.values():
            _add_json_strings(item, texts)


def _add_strings(value: object, texts: list[str]) -> None:
    """Every string inside ``value`` (parts lists, nested tool results), minus binary parts."""
    if isinstance(value, str):
        if value:
            texts.append(value)
    elif isinstance(value, list):
        for item in value:
            _add_strings(item, texts)
    elif _is_mapping(value):
        for key, item in value.items():
            if key not in _SKIPPED_PART_KEYS:
                _add_strings(item, texts)


# --------------------------------------------------------------------------- evaluation


Scanner = Callable[[ScanText], bool]
"""A detector's scan on the request's shared :class:`ScanText`."""


def _scanner(detector: Detector) -> Scanner:
    if isinstance(detector, SharedScanDetector):
        return detector.scan_shared
    return lambda text: detector.scan(text.text)


class _Scan:
    """Detector results for one request, computed lazily and at most once each."""

    __slots__ = ("fired", "results", "scanners", "shared", "text")

    def __init__(self, text: str, scanners: Mapping[str, Scanner]) -> None:
        self.text = text
        self.shared = ScanText(text)
        self.scanners = scanners
        self.results: dict[str, bool] = {}
        self.fired: list[str] = []  # detectors that fired, in the order they ran

    def fired_among(self, names: tuple[str, ...]) -> list[str]:
        """The detectors of ``names`` that fire, running each not yet run (one flat loop)."""
        results, scanners, shared = self.results, self.scanners, self.shared
        found: list[str] = []
        for name in names:
            hit = results.get(name)
            if hit is None:
                hit = results[name] = scanners[name](shared)
                if hit:
                    self.fired.append(name)
            if hit:
                found.append(name)
        return found

    def findings(self) -> tuple[Finding, ...]:
        return tuple(Finding(name, DETECTOR_CATEGORIES[name]) for name in self.fired)


@dataclass(frozen=True)
class _CompiledRule:
    """A rule with its selectors expanded and its regexes compiled once."""

    rule: PrivacyRule
    detectors: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]
    keywords: tuple[re.Pattern[str], ...]

    @classmethod
    def build(cls, rule: PrivacyRule) -> _CompiledRule:
        keywords = tuple(
            re.compile(rf"(?<!\w){re.escape(k.strip())}(?!\w)", re.IGNORECASE)
            for k in rule.keywords
        )
        return cls(
            rule=rule,
            detectors=tuple(detector_names(rule.detectors)),
            patterns=tuple(re.compile(p) for p in rule.patterns),
            keywords=keywords,
        )

    def applies_to(self, key_id: str | None) -> bool:
        return not self.rule.api_keys or key_id in self.rule.api_keys

    def hits(self, scan: _Scan) -> list[str]:
        """What fired, as safe labels; a rule without matchers matches everything."""
        if not (self.detectors or self.patterns or self.keywords):
            return ["every request" + (" of this key" if self.rule.api_keys else "")]
        found = [f"detector {name}" for name in scan.fired_among(self.detectors)]
        found += [f"pattern #{i}" for i, p in enumerate(self.patterns) if p.search(scan.text)]
        found += [f"keyword #{i}" for i, k in enumerate(self.keywords) if k.search(scan.text)]
        return found

    def reasons(self, hits: list[str]) -> list[str]:
        prefix = f"rule '{self.rule.name}' ({self.rule.action})"
        return [f"{prefix}: {hit}" for hit in hits]


class PrivacyPolicy:
    """Evaluates the configured rules on request bodies (pure, thread-safe)."""

    def __init__(self, cfg: PrivacyConfig, detectors: Mapping[str, Detector] | None = None):
        """Compile ``cfg``; ``detectors`` replaces the built-ins (for tests)."""
        self._enabled = cfg.enabled
        self._rules = tuple(_CompiledRule.build(rule) for rule in cfg.rules)
        available = dict(detectors) if detectors is not None else builtin_detectors()
        needed = {name for rule in self._rules for name in rule.detectors}
        self._scanners: Mapping[str, Scanner] = {n: _scanner(available[n]) for n in needed}

    def evaluate(self, body: Mapping[str, Any], key_id: str | None) -> PrivacyVerdict:
        """Decide allow / local_only / block for one request body from key ``key_id``."""
        rules = [rule for rule in self._rules if rule.applies_to(key_id)]
        if not self._enabled or not rules:
            return ALLOW
        scan = _Scan(extract_text(body), self._scanners)
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
        if decisive is None:
            return PrivacyVerdict(action="allow", findings=scan.findings()) if scan.fired else ALLOW
        return PrivacyVerdict(
            action=decisive.rule.action,
            rule=decisive.rule.name,
            reasons=reasons,
            findings=scan.findings(),
            message=decisive.rule.reason,
        )


def _stricter(candidate: _CompiledRule, current: _CompiledRule) -> bool:
    return _SEVERITY[candidate.rule.action] > _SEVERITY[current.rule.action]
