"""Where an embedding request goes: local first, privacy rules and budgets as for chat.

Embeddings are cheap and say nothing about how hard a question is, so there is no confidence to
score: ``auto`` tries the local backends that serve embeddings, then the cloud ones; ``local``
and ``cloud`` force the class; a model name goes to the backends that serve it, local first.
A backend takes ``auto``/``local``/``cloud`` embedding requests only when it lists
``embedding_models`` (the first is the model it is asked for).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .router import VIRTUAL_MODELS, Decision, UnknownModel

if TYPE_CHECKING:
    from ..backends.backend import Backend
    from ..runtime import Runtime

__all__ = ["route_embeddings"]

_STATUS_ORDER = {"healthy": 0, "degraded": 1, "down": 2}


async def route_embeddings(
    runtime: Runtime, body: dict[str, Any], model: str, key_id: str | None, *, request_id: str
) -> Decision:
    """Privacy rules (403 for ``block``, local only for ``local_only``), budgets, then the
    backends to try in order. Raises :class:`UnknownModel` for a model no backend serves."""
    verdict = await runtime.router.privacy_verdict(body, key_id)
    reasons = list(verdict.reasons)
    cloud_allowed = verdict.cloud_allowed
    if not cloud_allowed:
        reasons.append("privacy keeps this request on local backends, also on failover")
    ordered = _candidates(list(runtime.pool), model, cloud_allowed, reasons)
    if ordered and ordered[0].kind == "cloud" and runtime.budgets.enabled:
        ordered = await _within_budget(
            runtime, body, ordered, reasons, key_id=key_id, request_id=request_id
        )
    names = tuple(b.name for b in ordered)
    return Decision(
        route=ordered[0].kind if ordered else ("cloud" if model == "cloud" else "local"),
        backend=names[0] if names else None,
        confidence=1.0,
        reasons=tuple(reasons),
        candidates=names,
        privacy_rule=verdict.rule,
        cloud_allowed=cloud_allowed and any(b.kind == "cloud" for b in ordered),
    )


def _candidates(
    backends: list[Backend], model: str, cloud_allowed: bool, reasons: list[str]
) -> list[Backend]:
    def usable(b: Backend) -> bool:
        return b.status != "down" and (cloud_allowed or b.kind == "local")

    def order(b: Backend) -> tuple[bool, int, float]:
        load = (b.in_flight + b.waiting) / b.config.max_concurrency
        return b.kind != "local", _STATUS_ORDER[b.status], load

    if model not in VIRTUAL_MODELS:
        serving = [b for b in backends if model in b.models]
        if not serving:
            raise UnknownModel(model)
        found = sorted((b for b in serving if usable(b)), key=order)
        reasons.append(f"model {model!r} served by {', '.join(b.name for b in serving)}")
        if found or cloud_allowed:
            return found
        reasons.append(f"model {model!r} is served by a local embedding model instead")
        model = "local"
    if model == "cloud" and not cloud_allowed:
        reasons.append("model 'cloud' is served by a local embedding model instead")
        model = "local"
    kinds = ("local", "cloud") if model == "auto" else (model,)
    found = sorted(
        (b for b in backends if b.kind in kinds and b.config.embedding_models and usable(b)),
        key=order,
    )
    if not found:
        reasons.append(
            f"no healthy backend serves embeddings for {model!r} (backends[].embedding_models)"
        )
    else:
        reasons.append(f"embeddings: {model!r} goes to {found[0].name}")
    return found


async def _within_budget(
    runtime: Runtime,
    body: dict[str, Any],
    ordered: list[Backend],
    reasons: list[str],
    *,
    key_id: str | None,
    request_id: str,
) -> list[Backend]:
    """Reserve the cloud backend's expected cost; without budget, local candidates only (or 429
    with ``on_exhausted = "reject"``)."""
    budgets = runtime.budgets
    text = body.get("input")
    items = text if isinstance(text, list) else [text]
    tokens = runtime.proxy.tokens.count(" ".join(i for i in items if isinstance(i, str)))
    cost = tokens * ordered[0].config.price_per_mtok.input / 1e6
    failed = await budgets.reserve(request_id, key_id, cost)
    if failed is None:
        return ordered
    if budgets.config.on_exhausted == "reject":
        raise budgets.exhausted_error(failed)
    reasons.append(f"the {failed.describe()} is exhausted: cloud backends are skipped")
    return [b for b in ordered if b.kind == "local"]
