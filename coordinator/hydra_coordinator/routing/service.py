"""The routing service: privacy rules first, then the learned (or threshold) router.

Every surface (chat, ``/route``, MCP) asks :meth:`Router.decide`, so a rule that keeps a request
at home applies everywhere, including on failover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..config import BackendConfig, Settings
from ..errors import Forbidden
from ..privacy import PrivacyPolicy, PrivacyVerdict
from .explanation import Explanation, decision_confidence
from .features import Features, extract_features, last_user_text
from .learned import Candidate, LearnedRouter, NoEligibleBackend
from .router import VIRTUAL_MODELS, BackendView, Decision, decide, local_confidence, order_from
from .taskclass import TaskClassifier

__all__ = ["Router", "expected_cost"]

_DEFAULT_COMPLETION_TOKENS = 400


def expected_cost(backend: BackendConfig, features: Features, body: dict[str, Any]) -> float:
    """What one request is expected to cost on ``backend``, in US dollars."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    completion = limit if isinstance(limit, int) and limit > 0 else _DEFAULT_COMPLETION_TOKENS
    price = backend.price_per_mtok
    return (features.tokens * price.input + completion * price.output) / 1e6


class Router:
    def __init__(
        self,
        settings: Settings,
        learned: LearnedRouter | None = None,
        privacy: PrivacyPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.routing
        self.privacy = privacy or PrivacyPolicy(settings.privacy)
        self.learned = learned
        self.classifier = TaskClassifier()
        self._backends = {b.name: b for b in settings.backends}

    def check_privacy(self, body: dict[str, Any], key_id: str | None) -> PrivacyVerdict:
        """The privacy verdict; a ``block`` rule raises 403 with the rule's reason."""
        verdict = self.privacy.evaluate(body, key_id)
        if verdict.action == "block":
            why = verdict.message or f"blocked by privacy rule {verdict.rule!r}"
            raise Forbidden(why, code="blocked_by_policy")
        return verdict

    def task_class(self, body: dict[str, Any]) -> str:
        return self.classifier.classify(last_user_text(body.get("messages") or []))

    def decide(
        self,
        body: dict[str, Any],
        model: str,
        views: Sequence[BackendView],
        key_id: str | None,
        *,
        cloud_allowed: bool = True,
        cloud_blocked_by: str | None = None,
        budget_remaining: float | None = None,
        neighbours: Sequence[tuple[str, float, float]] = (),
    ) -> Decision:
        """Privacy, then the route. Raises Forbidden (block) or UnknownModel.

        ``budget_remaining`` (US$) keeps the learned router from trying a cloud backend that
        would cost more than what is left of a budget."""
        verdict = self.check_privacy(body, key_id)
        reasons: list[str] = list(verdict.reasons)
        if not verdict.cloud_allowed:
            cloud_allowed = False
            reasons.append("privacy keeps this request on local backends, also on failover")
        elif not cloud_allowed and cloud_blocked_by:
            reasons.append(cloud_blocked_by)
        features = extract_features(body)
        if not cloud_allowed:
            views = [v for v in views if v.kind == "local"]
            if model == "cloud" or (
                model not in VIRTUAL_MODELS and not any(model in v.models for v in views)
            ):
                reasons.append(f"model {model!r} is served by a local backend instead")
                model = "local"
        decision = self._route(
            body,
            model,
            features,
            views,
            cloud_allowed=cloud_allowed,
            budget_remaining=budget_remaining,
            neighbours=neighbours,
        )
        return replace(
            decision,
            task_class=decision.task_class or self.task_class(body),
            reasons=tuple(reasons) + decision.reasons,
            privacy_rule=verdict.rule,
            cloud_allowed=cloud_allowed,
        )

    def _route(
        self,
        body: dict[str, Any],
        model: str,
        features: Features,
        views: Sequence[BackendView],
        *,
        cloud_allowed: bool,
        budget_remaining: float | None,
        neighbours: Sequence[tuple[str, float, float]],
    ) -> Decision:
        if model != "auto" or self.learned is None or self.config.strategy != "learned":
            return decide(features, model, views, self.config)
        return self._learned(
            body,
            features,
            views,
            cloud_allowed=cloud_allowed,
            budget_remaining=budget_remaining,
            neighbours=neighbours,
        )

    def _learned(
        self,
        body: dict[str, Any],
        features: Features,
        views: Sequence[BackendView],
        *,
        cloud_allowed: bool,
        budget_remaining: float | None,
        neighbours: Sequence[tuple[str, float, float]],
    ) -> Decision:
        assert self.learned is not None
        confidence, why = local_confidence(features, self.config)
        task_class = self.task_class(body)
        usable = sorted(
            (v for v in views if v.status != "down"),
            key=lambda v: (v.kind != "local", v.status != "healthy", v.load),
        )  # local candidates in v1's order: at cold start the first local one wins
        candidates = [
            Candidate(v.name, v.kind, expected_cost(self._backends[v.name], features, body))
            for v in usable
        ]
        try:
            choice = self.learned.decide(
                task_class,
                candidates,
                cloud_allowed=cloud_allowed,
                local_prior_mean=confidence,
                budget_remaining=budget_remaining,
                neighbours=neighbours,
            )
        except NoEligibleBackend as exc:
            return Decision(
                "local",
                None,
                1.0,
                (*why, str(exc)),
                (),
                task_class=task_class,
                local_confidence=confidence,
            )
        ordered = order_from(choice.backend, usable, allow_other_kind=cloud_allowed)
        explanation = Explanation(
            "learned",
            estimates=choice.estimates,
            expected_backend=choice.expected or choice.backend,
            sampled=choice.sampled,
            local_score=confidence,
            scorer=tuple(why),
        )
        sure = decision_confidence(choice.estimates, choice.backend)
        return Decision(
            route="cloud" if choice.kind == "cloud" else "local",
            backend=choice.backend,
            confidence=1.0 if sure is None else sure,
            reasons=(*why, *choice.reasons),
            candidates=tuple(b.name for b in ordered),
            task_class=task_class,
            explored=choice.explored,
            local_confidence=confidence,
            explanation=explanation,
        )

    def expected_cost(self, backend: str, body: dict[str, Any]) -> float:
        return expected_cost(self._backends[backend], extract_features(body), body)
