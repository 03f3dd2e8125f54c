"""The coordinator's MCP server: tools and resources for agents, thin over the runtime.

One server of the official SDK (``FastMCP`` in mcp 1.x, ``MCPServer`` in 2.x: see :mod:`.sdk`)
serves both transports: streamable HTTP mounted at ``/mcp`` in the
API's app (same process, same bearer-key auth) and stdio (``hydra-coordinator mcp``). Every tool
reads the runtime through ``runtime_provider`` at call time, so services attached to the runtime
later (knowledge base, telemetry store, feedback) are picked up without rebuilding the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import warnings
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import orjson
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from .. import __version__
from ..api.chat import handle_chat
from ..api.health import health_report
from ..config import Settings, redacted
from ..durations import parse_since
from ..errors import HydraError
from ..routing.pipeline import decide_query
from ..runtime import Runtime
from .caller import current_key
from .sdk import HttpTransport, Server, ToolContext, ToolError, server_kwargs, set_version

__all__ = ["build_mcp"]

log = logging.getLogger("hydra_coordinator.mcp")

_Service = TypeVar("_Service")

RuntimeProvider = Callable[[], Runtime]

INSTRUCTIONS = """\
Hydra's hybrid coordinator routes each LLM request between local GPU models and cloud APIs.
Use route_query to see where a query would go and why (no model call), ask to get a routed
answer, search_knowledge for similar past questions and answers, record_feedback to rate an
earlier answer by its request_id, coordinator_stats for the route mix, latency and spend, and
backend_health for the state of each backend and dependency."""

# --- results (structured output: each tool publishes its output schema) ---------------------


class RouteResult(BaseModel):
    route: str = Field(description="'local' or 'cloud'")
    backend: str | None = Field(description="first-choice backend; null when none can answer")
    confidence: float = Field(
        description="probability that the chosen route is the better one for this query, 0..1"
    )
    reasons: list[str] = Field(description="what counted, with the amounts")
    local_confidence: float | None = Field(
        None, description="the cold-start scorer's confidence that a local model suffices"
    )
    sampled: bool = Field(False, description="the decision was taken on a random draw")
    expected: dict[str, Any] | None = Field(
        None, description="the decision on expected values (deterministic): route, backend"
    )
    sampled_decision: dict[str, Any] | None = Field(
        None, description="what a request sent now may get: the router's random draw"
    )
    estimates: list[dict[str, Any]] = Field(
        default_factory=list,
        description="per backend: expected quality, its uncertainty, cost and utility",
    )
    pacing: dict[str, Any] | None = Field(
        None,
        description="with a monthly spend to pace to: spent, pace per day, the required gain",
    )


class AskResult(BaseModel):
    answer: str = Field(description="the model's answer")
    route: str | None = Field(description="'local' or 'cloud'")
    backend: str | None = Field(description="the backend that answered")
    model: str | None = Field(description="the model that answered")
    request_id: str | None = Field(description="rate this answer with record_feedback")
    finish_reason: str | None = None
    usage: dict[str, Any] | None = Field(None, description="token counts, as the upstream sent")


class KnowledgeResult(BaseModel):
    results: list[dict[str, Any]] = Field(
        description="most similar first; each: question, answer, backend, rating, score"
    )


# --- helpers ----------------------------------------------------------------------------------


class _HydraMCP(Server[Any]):
    """The SDK's server, whose argument-validation errors read as a short message, not
    pydantic's dump; ``transport`` is how it answers over streamable HTTP."""

    transport: HttpTransport

    async def call_tool(
        self, name: str, arguments: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        # mcp 2.x passes the request's context as a third argument, 1.x does not
        try:
            return await super().call_tool(name, arguments, *args, **kwargs)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError) and cause.title.endswith("Arguments"):
                raise ToolError(f"invalid arguments for {name}: {_describe(cause)}") from None
            raise


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "arguments"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def _key_id(ctx: ToolContext) -> str | None:
    """The API key id the HTTP request was authenticated with (None over stdio: local user)."""
    try:
        request = ctx.request_context.request
    except ValueError:  # outside a request
        return None
    scope = getattr(request, "scope", None)
    if not isinstance(scope, dict):
        return None
    state = scope.get("state") or {}
    key = state.get("key_id") if isinstance(state, dict) else None
    return key if isinstance(key, str) else None


def _caller(runtime: Runtime, ctx: ToolContext | None = None) -> tuple[str | None, bool]:
    """The caller's key id (from a tool's request context; else, for resources, which get none
    in mcp 2.x, as the /mcp endpoint recorded it) and whether it may see every key's data (an
    admin key; anyone without keys configured; the local user over stdio)."""
    ident = _key_id(ctx) if ctx is not None else current_key.get()
    return ident, runtime.keys.is_admin(ident)


def key_config(settings: Settings, ident: str | None) -> dict[str, Any]:
    """The part of the configuration that concerns one key: the backends it can be routed to,
    the limits, its own budget and rate limit. No URLs, no paths, no other key's settings."""
    budgets, rates = settings.budgets, settings.rate_limits
    scope = ident or "anon"
    budget = budgets.keys.get(scope, budgets.per_key)
    rate = rates.keys.get(scope, rates)
    return {
        "key_id": ident,
        "backends": [
            {"name": b.name, "kind": b.kind, "models": list(b.models)} for b in settings.backends
        ],
        "routing": {"strategy": settings.routing.strategy},
        "limits": settings.limits.model_dump(mode="json"),
        "budget": {"daily_usd": budget.daily_usd, "monthly_usd": budget.monthly_usd},
        "rate_limit": {
            "requests_per_minute": rate.requests_per_minute,
            "burst": rate.burst,
        },
        "note": "the whole configuration needs an admin key (auth.admin_key_files)",
    }


def _service(service: _Service | None, what: str) -> _Service:
    """``service``, or a tool error saying it is not available."""
    if service is None:
        raise ToolError(f"{what} is not available on this coordinator")
    return service


def _upstream_error(body: bytes, status: int) -> str:
    try:
        payload = orjson.loads(body)
        message = payload["error"]["message"]
        if isinstance(message, str) and message:
            return f"upstream error (HTTP {status}): {message}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    return f"upstream error (HTTP {status})"


def _answer(body: bytes) -> tuple[str, str | None, str | None, dict[str, Any] | None]:
    try:
        payload = orjson.loads(body)
        choice = payload["choices"][0]
        content = choice["message"].get("content") or ""
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        raise ToolError("the backend's answer was not a chat completion") from None
    usage = payload.get("usage")
    return (
        content if isinstance(content, str) else json.dumps(content),
        payload.get("model"),
        choice.get("finish_reason"),
        usage if isinstance(usage, dict) else None,
    )


def _default_security(runtime: Runtime) -> TransportSecuritySettings:
    """The SDK's own DNS-rebinding check stays off: the app's ``BrowserGuard`` checks ``Host``
    and ``Origin`` for every path, /mcp included, against the same configuration
    (``listen.allowed_hosts``, ``listen.cors_origins``) as the REST API."""
    return TransportSecuritySettings(enable_dns_rebinding_protection=False)


def _quiet_server(**kwargs: Any) -> _HydraMCP:
    """The SDK's server configures logging (``logging.basicConfig()``); the coordinator
    configures its own (stderr only), so undo that side effect on the root logger. mcp 1.x with a
    newer pydantic-settings also warns about its own settings model's ``lifespan`` field:
    harmless."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Field '\w+' has an incomplete definition")
            return _HydraMCP(**kwargs)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


# --- the server -------------------------------------------------------------------------------


def build_mcp(
    runtime_provider: RuntimeProvider,
    *,
    transport_security: TransportSecuritySettings | None = None,
) -> _HydraMCP:
    """The coordinator's MCP server; ``runtime_provider()`` returns the live :class:`Runtime`."""
    runtime = runtime_provider()
    transport = HttpTransport(
        # one endpoint, /mcp, in the API's own router (see mount_mcp); every tool is one request
        # and one answer (stateless, plain JSON): no session state to keep or leak
        path="/mcp",
        security=transport_security or _default_security(runtime),
        max_body_bytes=runtime.settings.limits.max_body_bytes,
    )
    mcp = _quiet_server(
        name="hydra-coordinator",
        instructions=INSTRUCTIONS,
        log_level="WARNING",
        **server_kwargs(__version__, transport),
    )
    mcp.transport = transport
    set_version(mcp, __version__)  # serverInfo.version: the coordinator's, not the SDK's
    _add_routing_tools(mcp, runtime_provider)
    _add_service_tools(mcp, runtime_provider)
    _add_resources(mcp, runtime_provider)
    return mcp


READ_ONLY = ToolAnnotations(readOnlyHint=True, openWorldHint=False)


def _add_routing_tools(mcp: Server[Any], runtime_provider: RuntimeProvider) -> None:
    """Tools over the routing core: route_query, ask, backend_health."""

    @mcp.tool(
        title="Routing decision",
        annotations=READ_ONLY,
        description=(
            "Show where the coordinator would send a query and why, without calling any model: "
            "the route (local GPU or cloud), the first-choice backend, the confidence in that "
            "route, the decision on expected values (the router samples, so it may explore), "
            "each backend's estimated quality and the reasons. Pass earlier turns in `messages` "
            "to judge a whole conversation, and `model` to force a class ('local', 'cloud') or "
            "a concrete model."
        ),
    )
    async def route_query(
        ctx: ToolContext,
        query: Annotated[str, Field(min_length=1, description="the user's question")],
        model: Annotated[
            str, Field(min_length=1, description="auto (route), local, cloud or a model")
        ] = "auto",
        messages: Annotated[
            list[dict[str, Any]] | None,
            Field(description="earlier turns, OpenAI chat format ({role, content})"),
        ] = None,
    ) -> RouteResult:
        context: dict[str, Any] = {"model": model}
        if messages:
            context["messages"] = messages
        try:
            decision = await decide_query(runtime_provider(), query, context, _key_id(ctx))
        except HydraError as exc:
            raise ToolError(exc.message) from None
        return RouteResult.model_validate(decision.explain())

    @mcp.tool(
        title="Ask (routed completion)",
        annotations=ToolAnnotations(readOnlyHint=False, openWorldHint=True),
        description=(
            "Answer a question with the model the coordinator routes it to (a local GPU model "
            "when it suffices, else a cloud API), exactly as POST /v1/chat/completions would: "
            "same routing, limits, failover, privacy rules and budgets. Returns the answer with "
            "the route, backend, model and a request_id (use it with record_feedback)."
        ),
    )
    async def ask(
        query: Annotated[str, Field(min_length=1, description="the question or instruction")],
        ctx: ToolContext,
        *,
        model: Annotated[
            str, Field(min_length=1, description="auto (route), local, cloud or a model")
        ] = "auto",
        system: Annotated[str | None, Field(description="optional system prompt")] = None,
        max_tokens: Annotated[
            int | None, Field(ge=1, description="upper bound on the answer's tokens")
        ] = None,
        temperature: Annotated[float | None, Field(ge=0, le=2)] = None,
    ) -> AskResult:
        messages: list[dict[str, str]] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": query})
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": False}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        runtime = runtime_provider()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(runtime.settings.limits.request_timeout_s):
                response = await handle_chat(
                    runtime, body, orjson.dumps(body), _key_id(ctx), started
                )
        except HydraError as exc:
            raise ToolError(exc.message) from None
        except TimeoutError:
            raise ToolError("the request took longer than limits.request_timeout_s") from None
        raw = bytes(response.body)
        if response.status_code >= 400:
            raise ToolError(_upstream_error(raw, response.status_code))
        answer, served_by, finish_reason, usage = _answer(raw)
        headers = response.headers
        return AskResult(
            answer=answer,
            route=headers.get("x-hydra-route"),
            backend=headers.get("x-hydra-backend"),
            model=served_by,
            request_id=headers.get("x-hydra-request-id"),
            finish_reason=finish_reason,
            usage=usage,
        )

    @mcp.tool(
        title="Backend health",
        annotations=READ_ONLY,
        description=(
            "The coordinator's overall status (healthy, degraded or unhealthy), its version, and "
            "the state of each backend and dependency (healthy, degraded or down), as GET /health."
        ),
    )
    # async: mcp 2.x runs plain functions in a worker thread; the runtime lives on the loop
    async def backend_health() -> dict[str, Any]:
        return health_report(runtime_provider())


def _add_service_tools(mcp: Server[Any], runtime_provider: RuntimeProvider) -> None:
    """Tools over the runtime's services (knowledge base, feedback, telemetry store); each
    answers a clear tool error while its service is not attached to the runtime."""

    @mcp.tool(
        title="Search the knowledge base",
        annotations=READ_ONLY,
        description=(
            "Find past questions similar to `query` in the coordinator's knowledge base, with "
            "their answers, the backend that answered, the user rating and a similarity score "
            "(most similar first). Useful before asking: a good earlier answer may already exist."
        ),
    )
    async def search_knowledge(
        query: Annotated[str, Field(min_length=1, description="what to look for")],
        ctx: ToolContext,
        limit: Annotated[int, Field(ge=1, le=50, description="how many results")] = 5,
    ) -> KnowledgeResult:
        knowledge = _service(runtime_provider().knowledge, "the knowledge base")
        try:
            results = await knowledge.search(query, limit, _key_id(ctx))
        except HydraError as exc:
            raise ToolError(exc.message) from None
        return KnowledgeResult(results=list(results))

    @mcp.tool(
        title="Rate an answer",
        annotations=ToolAnnotations(readOnlyHint=False, idempotentHint=True, openWorldHint=False),
        description=(
            "Rate an earlier answer by its request_id (from ask, or the x-hydra-request-id "
            "header of the HTTP API): rating from -1 (bad) to 1 (good), 0 neutral, with an "
            "optional comment. Ratings teach the router which backend answers what well."
        ),
    )
    async def record_feedback(
        request_id: Annotated[
            str,
            Field(min_length=1, max_length=128, description="the request id of the answer"),
        ],
        rating: Annotated[float, Field(ge=-1, le=1, description="-1 bad .. 1 good")],
        ctx: ToolContext,
        comment: Annotated[str | None, Field(max_length=4000)] = None,
    ) -> dict[str, Any]:
        feedback = _service(runtime_provider().feedback, "feedback")
        try:
            result = await feedback.record(request_id, rating, comment, _key_id(ctx))
        except HydraError as exc:
            raise ToolError(exc.message) from None
        return dict(result)

    @mcp.tool(
        title="Coordinator statistics",
        annotations=READ_ONLY,
        description=(
            "Traffic over a recent window: number of requests, the route mix (local/cloud), "
            "per-backend counts, latency percentiles (p50/p95/p99), tokens and spend in US$. "
            "`since` is a duration like '30m', '24h' or '7d'. The caller's own requests; an "
            "admin key sees every key's."
        ),
    )
    async def coordinator_stats(
        ctx: ToolContext,
        since: Annotated[
            str, Field(description="window length: a number and s, m, h, d or w")
        ] = "24h",
    ) -> dict[str, Any]:
        try:
            since_s = parse_since(since)
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        runtime = runtime_provider()
        telemetry = _service(runtime.telemetry, "the telemetry store")
        ident, admin = _caller(runtime, ctx)
        try:
            stats = await telemetry.stats(since_s, key_id=None if admin else (ident or ""))
        except HydraError as exc:
            raise ToolError(exc.message) from None
        result = dict(stats)
        result["scope"] = "all keys" if admin else f"key {ident}"
        if not admin:
            result.pop("database_location", None)
        return result


def _add_resources(mcp: Server[Any], runtime_provider: RuntimeProvider) -> None:
    @mcp.resource(
        "hydra://config",
        name="config",
        title="Effective configuration",
        description=(
            "The coordinator's effective configuration, secrets redacted (an admin key); for "
            "another key, what concerns it: backends, limits, its budget and rate limit."
        ),
        mime_type="application/json",
    )
    async def config_resource() -> str:
        runtime = runtime_provider()
        ident, admin = _caller(runtime)
        if admin:
            return json.dumps(redacted(runtime.settings), indent=2)
        return json.dumps(key_config(runtime.settings, ident), indent=2)

    @mcp.resource(
        "hydra://decisions/recent",
        name="recent-decisions",
        title="Recent routing decisions",
        description=(
            "The most recent routing decisions, newest first: time, kind (chat or a route "
            "preview), request_id, model, route, backend, confidence and reasons. No prompt text. "
            "The caller's own decisions; an admin key sees every key's."
        ),
        mime_type="application/json",
    )
    async def recent_decisions_resource() -> str:
        runtime = runtime_provider()
        ident, admin = _caller(runtime)
        decisions = runtime.recent.latest(key_id=ident, everyone=admin)
        return json.dumps({"decisions": decisions}, indent=2)
