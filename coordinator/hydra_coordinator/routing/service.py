"""The routing service: privacy rules first, then the learned (or threshold) router.

Every surface (chat, ``/route``, MCP) asks :meth:`Router.decide`, so a rule that keeps a request
at home applies everywhere, including on failover. The cold-start scorer (:mod:`.scorer`) gives
every request its estimated cloud gain; the threshold strategy routes on it alone, the learned
strategy (default) makes it the prior of the per-prompt learner (:mod:`.bandit`), which ratings
correct. The gain the cloud must beat is the operator's knob (:mod:`.knobs`): the threshold, a
target cloud share or a monthly spend to pace to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..config import BackendConfig, Settings
from ..errors import Forbidden
from ..privacy import PrivacyPolicy, PrivacyVerdict, json_size
from .bandit import Belief, Choice, PromptLearner, Representation, represent
from .explanation import BackendEstimate, Explanation, decision_confidence
from .features import last_user_text, prompt_tokens
from .knobs import CloudShare, Pace, Pacer
from .neighbours import describe_votes, neighbour_votes
from .router import VIRTUAL_MODELS, BackendView, Decision, decide, order_from
from .scorer import ColdScore, cold_score
from .taskclass import TaskClassifier

__all__ = ["Router", "expected_cost"]

_DEFAULT_COMPLETION_TOKENS = 400
NEIGHBOUR_WEIGHT = 2.0  # pseudo-votes a rated similar question of similarity 1 adds


# Bodies larger than this are scanned in a worker thread: RE2 releases the GIL while it
# matches, so the event loop keeps serving other requests during a long scan.
_SCAN_INLINE_BYTES = 32 * 1024


def expected_cost(backend: BackendConfig, tokens: int, body: dict[str, Any]) -> float:
    """What one request of ``tokens`` prompt tokens is expected to cost on ``backend``, in US$."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    completion = limit if isinstance(limit, int) and limit > 0 else _DEFAULT_COMPLETION_TOKENS
    price = backend.price_per_mtok
    return (tokens * price.input + completion * price.output) / 1e6


class Router:
    def __init__(
        self,
        settings: Settings,
        privacy: PrivacyPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.routing
        self.privacy = privacy or PrivacyPolicy(settings.privacy)
        self.classifier = TaskClassifier()
        self._backends = {b.name: b for b in settings.backends}
        learned_config = self.config.learned
        self.prompts = PromptLearner(
            cost_weight=learned_config.cost_weight,
            exploration=learned_config.exploration,
            key_ratings_per_hour=learned_config.key_ratings_per_hour,
            key_weights=learned_config.key_weights,
        )
        # the gain a cloud answer must add: 1 - threshold, and the margin by which an equally
        # good local answer wins (equal quality should not cost money)
        self._required = 1.0 - self.config.threshold + learned_config.local_margin
        share = self.config.target_cloud_share
        self.cloud_share = None if share is None else CloudShare(share, default=self._required)
        pacing = self.config.pacing
        self.pacer = (
            None
            if pacing.monthly_usd is None
            else Pacer(pacing.monthly_usd, default=self._required, window=pacing.window)
        )

    def required_gain(self) -> float:
        """The expected gain (net of cost) a cloud backend must beat: the operator's knob."""
        if self.cloud_share is not None:
            return self.cloud_share.required_gain()
        if self.pacer is not None:
            return self.pacer.required_gain()
        return self._required

    def check_privacy(self, body: dict[str, Any], key_id: str | None) -> PrivacyVerdict:
        """The privacy verdict; a ``block`` rule raises 403 with the rule's reason."""
        return _enforced(self.privacy.evaluate(body, key_id))

    async def privacy_verdict(self, body: dict[str, Any], key_id: str | None) -> PrivacyVerdict:
        """:meth:`check_privacy` without holding up the event loop: a large body is scanned
        in a worker thread (the scan's own CPU budget bounds how long it takes)."""
        size = json_size(body)
        if size <= _SCAN_INLINE_BYTES:
            return _enforced(self.privacy.evaluate(body, key_id, size=size))
        return _enforced(await asyncio.to_thread(self.privacy.evaluate, body, key_id, size=size))

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
        request_id: str | None = None,
        privacy: PrivacyVerdict | None = None,
    ) -> Decision:
        """Privacy, then the route. Raises Forbidden (block) or UnknownModel.

        ``budget_remaining`` (US$) keeps the learned router from trying a cloud backend that
        would cost more than what is left of a budget. With ``request_id`` (a real request) the
        learned route is *sampled* and the prompt is remembered, so that a rating of the request
        teaches; without (a preview: ``/route``) the route is the *expected* one. ``privacy`` is
        the verdict when the caller has it (:meth:`privacy_verdict`); else the body is scanned
        here."""
        verdict = privacy if privacy is not None else self.check_privacy(body, key_id)
        reasons: list[str] = list(verdict.reasons)
        if not verdict.cloud_allowed:
            cloud_allowed = False
            reasons.append("privacy keeps this request on local backends, also on failover")
        elif not cloud_allowed and cloud_blocked_by:
            reasons.append(cloud_blocked_by)
        tokens = prompt_tokens(body)
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
            tokens,
            views,
            cloud_allowed=cloud_allowed,
            budget_remaining=budget_remaining,
            neighbours=neighbours,
            request_id=request_id,
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
        tokens: int,
        views: Sequence[BackendView],
        *,
        cloud_allowed: bool,
        budget_remaining: float | None,
        neighbours: Sequence[tuple[str, float, float]],
        request_id: str | None,
    ) -> Decision:
        cold = cold_score(body)
        if model != "auto" or self.config.strategy != "learned":
            counted = [f"counted: {why}" for why in cold.explain()]
            decision = decide(None, model, views, self.config, cold=(cold.local, counted))
            if request_id is not None and decision.backend is not None:
                # a rating of a request sent to a named class or model teaches its prompt too
                rep = self.prompts.assign(represent(body, cold), learn=True)
                self.prompts.remember_decision(request_id, decision.backend, rep)
            return decision
        return self._learned(
            body,
            cold,
            tokens,
            views,
            cloud_allowed=cloud_allowed,
            budget_remaining=budget_remaining,
            neighbours=neighbours,
            request_id=request_id,
        )

    def _choices(
        self,
        body: dict[str, Any],
        tokens: int,
        usable: Sequence[BackendView],
        *,
        cloud_allowed: bool,
        budget_remaining: float | None,
        reasons: list[str],
    ) -> list[Choice]:
        choices = []
        for view in usable:
            cost = expected_cost(self._backends[view.name], tokens, body)
            if view.kind == "cloud" and not cloud_allowed:
                continue
            if view.kind == "cloud" and budget_remaining is not None and cost > budget_remaining:
                reasons.append(
                    f"skipped cloud '{view.name}': expected cost ${cost:.4f} exceeds the "
                    f"remaining budget ${budget_remaining:.4f}"
                )
                continue
            choices.append(Choice(view.name, view.kind, cost))
        return choices

    def _learned(
        self,
        body: dict[str, Any],
        cold: ColdScore,
        tokens: int,
        views: Sequence[BackendView],
        *,
        cloud_allowed: bool,
        budget_remaining: float | None,
        neighbours: Sequence[tuple[str, float, float]],
        request_id: str | None,
    ) -> Decision:
        """The per-prompt learner's route, with the cold-start scorer as its prior."""
        rep = self.prompts.assign(represent(body, cold), learn=request_id is not None)
        task_class = self.task_class(body)
        why = [f"cold-start estimate of the cloud's quality gain {cold.gain:+.2f}"]
        why += [f"counted: {reason}" for reason in cold.explain()]
        reasons = list(why)
        usable = sorted(
            (v for v in views if v.status != "down"),
            key=lambda v: (v.kind != "local", v.status != "healthy", v.load),
        )  # local first: a tie goes local
        choices = self._choices(
            body,
            tokens,
            usable,
            cloud_allowed=cloud_allowed,
            budget_remaining=budget_remaining,
            reasons=reasons,
        )
        pace = self.pacer.status() if self.pacer is not None else None
        required = pace.required_gain if pace is not None else self.required_gain()
        if pace is not None:
            reasons.append(pace.describe())
        votes = neighbour_votes(neighbours, {c.name for c in choices}, NEIGHBOUR_WEIGHT)
        if votes:
            reasons.append(describe_votes(votes))
        belief = self.prompts.estimate(rep, choices, required, votes)
        chosen = belief.sampled if request_id is not None else belief.expected
        if chosen is None:
            reasons.append("no eligible backend")
            return Decision(
                "local",
                None,
                1.0,
                tuple(reasons),
                (),
                task_class=task_class,
                local_confidence=cold.local,
            )
        kind = next(c.kind for c in choices if c.name == chosen)
        if request_id is not None:
            self._observe(
                request_id, chosen=chosen, kind=kind, rep=rep, belief=belief, choices=choices
            )
        reasons += self._describe(belief, choices, required)
        reasons.append(self.prompts.describe_group(rep))
        if chosen != belief.expected:
            reasons.append(f"sampled '{chosen}' (expected: '{belief.expected}'): exploring")
        elif request_id is None and belief.draws is not None:
            reasons.append(f"a request, which samples, would now go to '{belief.sampled}'")
        estimates = tuple(
            BackendEstimate(
                backend=c.name,
                kind=c.kind,
                quality=belief.qualities[c.name][0],
                uncertainty=belief.qualities[c.name][1],
                cost_usd=c.cost,
                utility=belief.utilities[c.name],
                sample=None if belief.draws is None else belief.draws[c.name],
            )
            for c in choices
        )
        explanation = Explanation(
            "learned",
            estimates=estimates,
            expected_backend=belief.expected,
            sampled=request_id is not None and belief.draws is not None,
            sampled_backend=None if belief.draws is None else belief.sampled,
            local_score=cold.local,
            scorer=tuple(why),
            pacing=None if pace is None else pace.as_dict(),
        )
        sure = decision_confidence(estimates, chosen)
        ordered = order_from(chosen, usable, allow_other_kind=cloud_allowed)
        return Decision(
            route=kind,
            backend=chosen,
            confidence=1.0 if sure is None else sure,
            reasons=tuple(reasons),
            candidates=tuple(b.name for b in ordered),
            task_class=task_class,
            explored=chosen != belief.expected,
            local_confidence=cold.local,
            explanation=explanation,
        )

    def _observe(
        self,
        request_id: str,
        *,
        chosen: str,
        kind: str,
        rep: Representation,
        belief: Belief,
        choices: Sequence[Choice],
    ) -> None:
        self.prompts.remember_decision(request_id, chosen, rep)
        # the value a request's route was decided on (sampled, once there are ratings), so
        # that the share of requests sent to the cloud follows the knob
        if self.cloud_share is not None:
            self.cloud_share.observe(belief.sampled_net_gain)
        if self.pacer is not None:
            costs = {c.name: c.cost for c in choices if c.kind == "cloud"}
            if costs and any(c.kind == "local" for c in choices):
                # what the cloud would cost: the backend it chose, else the best cloud one
                cost = costs.get(chosen)
                if cost is None:
                    best = max(costs, key=lambda name: belief.utilities[name])
                    cost = costs[best]
                self.pacer.observe(
                    belief.sampled_net_gain, cost, request_id=request_id, sent=kind == "cloud"
                )

    def pace(self) -> Pace | None:
        """Where the month's spend stands against the pace (None: no pacing)."""
        return None if self.pacer is None else self.pacer.status()

    def _describe(self, belief: Belief, choices: Sequence[Choice], required: float) -> list[str]:
        ratings = self.prompts.ratings()
        lines = [
            f"estimated quality gain of the cloud {belief.gain:+.2f} ± {belief.uncertainty:.2f}"
            f" (prior {belief.prior_gain:+.2f}; net of cost {belief.net_gain:+.2f}), "
            f"required {required:.2f}"
        ]
        lines += [
            f"{c.kind} '{c.name}': quality {belief.qualities[c.name][0]:.2f} ± "
            f"{belief.qualities[c.name][1]:.2f} ({ratings.get(c.name, 0.0):.0f} ratings learnt), "
            f"cost ${c.cost:.4f}, utility {belief.utilities[c.name]:.2f}"
            for c in choices
        ]
        return lines

    def expected_cost(self, backend: str, body: dict[str, Any]) -> float:
        return expected_cost(self._backends[backend], prompt_tokens(body), body)


def _enforced(verdict: PrivacyVerdict) -> PrivacyVerdict:
    """``verdict``, unless a ``block`` rule decided: then 403 with the rule's reason."""
    if verdict.action == "block":
        why = verdict.message or f"blocked by privacy rule {verdict.rule!r}"
        raise Forbidden(why, code="blocked_by_policy")
    return verdict
