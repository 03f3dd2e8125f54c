"""Routing v1: the confidence that a local model suffices, and the backends to try in order.

Everything here is pure: the caller passes what it knows about the backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..config import RoutingConfig
from .explanation import Explanation, decision_confidence
from .features import Features

__all__ = [
    "VIRTUAL_MODELS",
    "BackendView",
    "Decision",
    "Route",
    "UnknownModel",
    "decide",
    "local_confidence",
    "order_from",
]

Route = Literal["local", "cloud"]
Status = Literal["healthy", "degraded", "down"]
VIRTUAL_MODELS = ("auto", "local", "cloud")

_STATUS_ORDER = {"healthy": 0, "degraded": 1, "down": 2}


class UnknownModel(LookupError):
    """No backend serves the requested model."""


@dataclass(frozen=True, slots=True)
class BackendView:
    """What routing needs to know about one backend right now."""

    name: str
    kind: Route
    status: Status
    load: float  # in flight / max concurrency
    models: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a request goes, and why.

    ``confidence`` is the probability that the chosen route (local or cloud) is the better one
    for this request: from the learned router's beliefs, or the cold-start score of the chosen
    side (``local_confidence`` for local, 1 - it for cloud) under the threshold strategy; 1.0
    when the other route is not an option (privacy, a budget, none configured or healthy) or
    the client named a class or a model. ``local_confidence`` is the cold-start scorer's
    confidence that a local model suffices, whatever was decided.
    """

    route: Route
    backend: str | None  # first choice; None when nothing can take the request
    confidence: float
    reasons: tuple[str, ...]
    candidates: tuple[str, ...] = field(default=())  # in the order they will be tried
    task_class: str | None = None
    privacy_rule: str | None = None  # the privacy rule that decided, if any
    cloud_allowed: bool = True
    explored: bool = False  # the learned router tried a backend it is unsure of
    local_confidence: float | None = None
    explanation: Explanation | None = None

    def as_dict(self) -> dict[str, object]:
        """The decision in brief (``/route``'s first fields, recent decisions)."""
        result: dict[str, object] = {
            "route": self.route,
            "backend": self.backend,
            "confidence": round(self.confidence, 3),
            "reasons": list(self.reasons),
            "candidates": list(self.candidates),
        }
        if self.task_class is not None:
            result["task_class"] = self.task_class
        if self.privacy_rule is not None:
            result["privacy_rule"] = self.privacy_rule
        return result

    def expected(self) -> tuple[Route, str | None, float]:
        """The decision on expected values (deterministic): route, backend and its confidence.
        The same as this decision's unless the router sampled and explored."""
        why = self.explanation
        return self._as(why.expected_backend if why is not None else None)

    def sampled(self) -> tuple[Route, str | None, float] | None:
        """What the router's draw for this request chose (Thompson sampling: what a request
        sent now may get); None when the router did not sample."""
        why = self.explanation
        if why is None or why.sampled_backend is None:
            return None
        return self._as(why.sampled_backend)

    def _as(self, backend: str | None) -> tuple[Route, str | None, float]:
        """Route, backend and confidence had the router chosen ``backend`` (None: this one)."""
        why = self.explanation
        if why is None or backend in (None, self.backend):
            return self.route, self.backend, self.confidence
        found = why.estimate(backend)
        route: Route = found.kind if found is not None else self.route
        confidence = decision_confidence(why.estimates, backend)
        return route, backend, self.confidence if confidence is None else confidence

    def explain(self) -> dict[str, object]:
        """:meth:`as_dict` and what the router believed: the decision on expected values and
        the one it drew, each backend's estimate, the cloud's expected quality gain and the
        monthly pace when the operator set one."""
        result = self.as_dict()
        why = self.explanation
        gain = why.cloud_gain() if why is not None else None
        drawn = self.sampled()
        result.update(
            {
                "local_confidence": None
                if self.local_confidence is None
                else round(self.local_confidence, 3),
                "strategy": why.strategy if why is not None else None,
                "sampled": why.sampled if why is not None else False,
                "explored": self.explored,
                "expected": _brief(self.expected()),
                "sampled_decision": None if drawn is None else _brief(drawn),
                "estimates": [e.as_dict() for e in why.estimates] if why is not None else [],
                "cloud_gain": None
                if gain is None
                else {"mean": round(gain[0], 4), "sd": round(gain[1], 4)},
                "pacing": None if why is None or why.pacing is None else dict(why.pacing),
            }
        )
        return result


def _brief(choice: tuple[Route, str | None, float]) -> dict[str, object]:
    route, backend, confidence = choice
    return {"route": route, "backend": backend, "confidence": round(confidence, 3)}


def local_confidence(features: Features, config: RoutingConfig) -> tuple[float, list[str]]:
    """How confident we are that a local model is good enough, with the reasons."""
    confidence = 1.0
    reasons: list[str] = []

    def penalise(amount: float, why: str) -> None:
        nonlocal confidence
        if amount > 0:
            confidence -= amount
            reasons.append(f"{why} (-{amount:.2f})")

    size = min(1.0, features.tokens / config.long_prompt_tokens)
    penalise(round(0.35 * size, 2), f"prompt of ~{features.tokens} tokens")
    if features.has_code:
        penalise(0.15, "contains code")
    if features.multi_step:
        penalise(0.15, "multi-step request")
    if features.design_terms:
        penalise(
            min(0.25, 0.1 * features.design_terms),
            f"{features.design_terms} design or reasoning term(s)",
        )
    depth = min(1.0, features.turns / config.deep_conversation_turns)
    if features.turns > 2:
        penalise(round(0.15 * depth, 2), f"conversation of {features.turns} messages")
    if features.tools:
        penalise(0.2, "tools or a JSON schema requested")
    confidence = max(0.0, min(1.0, confidence))
    if not reasons:
        reasons.append("short, simple request")
    return confidence, reasons


def _order(backends: Sequence[BackendView], kind: Route) -> list[BackendView]:
    usable = [b for b in backends if b.kind == kind and b.status != "down"]
    return sorted(usable, key=lambda b: (_STATUS_ORDER[b.status], b.load))


def order_from(
    first: str, backends: Sequence[BackendView], *, allow_other_kind: bool
) -> list[BackendView]:
    """``first``, then the other backends of its kind, then (if allowed) the other kind."""
    chosen = next(b for b in backends if b.name == first)
    same = [b for b in _order(backends, chosen.kind) if b.name != first]
    other: Route = "cloud" if chosen.kind == "local" else "local"
    return [chosen, *same, *(_order(backends, other) if allow_other_kind else [])]


def _decide_class(
    want: Route, backends: Sequence[BackendView], reasons: list[str], *, strict: bool
) -> tuple[Route, list[BackendView]]:
    other: Route = "cloud" if want == "local" else "local"
    preferred = _order(backends, want)
    fallback = [] if strict else _order(backends, other)
    if preferred:
        return want, preferred + fallback
    if fallback:
        reasons.append(f"no healthy {want} backend, using {other}")
        return other, fallback
    reasons.append(f"no healthy {want} backend")
    return want, []


def decide(
    features: Features | None,
    model: str,
    backends: Sequence[BackendView],
    config: RoutingConfig,
    *,
    cold: tuple[float, list[str]] | None = None,
) -> Decision:
    """Pick the route and the backends to try, in order.

    ``model`` is ``auto`` (route by confidence), ``local`` or ``cloud`` (force the class) or a
    concrete model that some backend serves (raises :class:`UnknownModel` otherwise).
    ``cold`` is the cold-start scorer's confidence that local suffices and what counted
    (default: v1's :func:`local_confidence`).
    """
    if cold is None:
        if features is None:
            raise ValueError("decide() needs the features or the cold-start score")
        cold = local_confidence(features, config)
    confidence, reasons = cold
    reasons = list(reasons)
    scorer = tuple(reasons)
    strategy = "forced"
    sure = 1.0
    if model == "auto":
        strategy = "threshold"
        want: Route = "local" if confidence >= config.threshold else "cloud"
        verdict = ">=" if want == "local" else "<"
        reasons.append(f"confidence {confidence:.2f} {verdict} threshold {config.threshold:.2f}")
        route, ordered = _decide_class(want, backends, reasons, strict=False)
        if any(b.kind != route for b in ordered):  # the other route was an option
            sure = confidence if route == "local" else 1.0 - confidence
    elif model in ("local", "cloud"):
        reasons.append(f"model {model!r} forces the {model} class")
        route, ordered = _decide_class(model, backends, reasons, strict=True)  # type: ignore[arg-type]
    else:
        serving = [b for b in backends if model in b.models]
        if not serving:
            raise UnknownModel(model)
        ordered = sorted(
            (b for b in serving if b.status != "down"),
            key=lambda b: (b.kind != "local", _STATUS_ORDER[b.status], b.load),
        )
        route = ordered[0].kind if ordered else serving[0].kind
        reasons.append(f"model {model!r} served by {', '.join(b.name for b in serving)}")
    names = tuple(b.name for b in ordered)
    backend = names[0] if names else None
    return Decision(
        route=route,
        backend=backend,
        confidence=sure,
        reasons=tuple(reasons),
        candidates=names,
        local_confidence=confidence,
        explanation=Explanation(
            strategy, expected_backend=backend, local_score=confidence, scorer=scorer
        ),
    )
