"""Summaries of the telemetry table, for ``hydra-coordinator stats`` and the MCP tools.

Percentiles are computed by PostgreSQL (``percentile_cont``) or, on SQLite, in Python with the same
linear interpolation.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ..config import BudgetsConfig
from .db import Database

__all__ = ["percentile", "recent_decisions", "stats"]

_QUANTILES = (0.5, 0.95, 0.99)


def percentile(values: list[float], q: float) -> float | None:
    """Like SQL ``percentile_cont(q)``: linear interpolation on sorted ``values``."""
    if not values:
        return None
    position = q * (len(values) - 1)
    low, high = math.floor(position), math.ceil(position)
    return values[low] + (values[high] - values[low]) * (position - low)


def _since(db: Database, since_s: float) -> Any:
    moment = datetime.now(UTC) - timedelta(seconds=since_s)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") if db.kind == "sqlite" else moment


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


async def budget_status(
    db: Database, config: BudgetsConfig, key_id: str | None = None
) -> list[dict[str, Any]]:
    """Each configured cloud budget with its spend so far this period, from the telemetry;
    with ``key_id`` only that key's own budget."""
    from ..routing.budgets import Budgets, period_start, reset_time

    p = "?" if db.kind == "sqlite" else "%s"
    now = time.time()
    if key_id is not None:
        scope = key_id or "anon"
        lines = Budgets.lines_for(scope, config.keys.get(scope, config.per_key))
    else:
        lines = [
            *Budgets.lines_for("global", config),
            *(line for k, v in config.keys.items() for line in Budgets.lines_for(k, v)),
        ]
    result = []
    for line in lines:
        since = _since(db, now - period_start(line.period, now))
        sql = f"SELECT sum(cost_usd) FROM telemetry WHERE route = 'cloud' AND timestamp > {p}"
        params: tuple[Any, ...] = (since,)
        if line.scope != "global":
            sql += f" AND key_id = {p}"
            params = (since, line.scope)
        ((spent,),) = await db.fetch(sql, params)
        spent = float(spent or 0.0)
        result.append(
            {
                "scope": line.scope,
                "period": line.period,
                "limit_usd": line.limit,
                "spent_usd": round(spent, 6),
                "remaining_usd": round(max(0.0, line.limit - spent), 6),
                "resets_at": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(reset_time(line.period, now))
                ),
            }
        )
    return result


async def stats(
    db: Database,
    since_s: float,
    budgets: BudgetsConfig | None = None,
    *,
    key_id: str | None = None,
) -> dict[str, Any]:
    """Requests, errors (and their classes), route mix, per-backend counts, latency
    p50/p95/p99, tokens and cost of the requests answered in the last ``since_s`` seconds, and
    each cloud budget's spend. With ``key_id``, of that key's requests and budget only (""
    for requests made without a key)."""
    p = "?" if db.kind == "sqlite" else "%s"
    params: tuple[Any, ...] = (_since(db, since_s),)
    where = f"WHERE timestamp > {p}"
    if key_id is not None:
        where += f" AND key_id = {p}" if key_id else " AND key_id IS NULL"
        params += (key_id,) if key_id else ()
    (row,) = await db.fetch(
        "SELECT count(*), "
        "sum(CASE WHEN status >= 400 OR error_class IS NOT NULL THEN 1 ELSE 0 END), "
        "sum(prompt_tokens), sum(completion_tokens), sum(cost_usd), "
        f"sum(CASE WHEN cache_hit THEN 1 ELSE 0 END) FROM telemetry {where}",
        params,
    )
    requests, errors, prompt_tokens, completion_tokens, cost, cache_hits = row
    classes = await db.fetch(
        f"SELECT coalesce(error_class, 'http_' || status), count(*) FROM telemetry {where} "
        "AND (status >= 400 OR error_class IS NOT NULL) GROUP BY 1 ORDER BY 2 DESC, 1",
        params,
    )
    routes = await db.fetch(
        f"SELECT route, count(*) FROM telemetry {where} GROUP BY route ORDER BY 2 DESC", params
    )
    backends = await db.fetch(
        f"SELECT backend, count(*) FROM telemetry {where} GROUP BY backend ORDER BY 2 DESC",
        params,
    )
    if db.kind == "postgres":
        ((latency,),) = await db.fetch(
            "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_s) "
            f"FROM telemetry {where}",
            params,
        )
        quantiles = list(latency) if latency is not None else [None] * len(_QUANTILES)
    else:
        values = [
            float(v)
            for (v,) in await db.fetch(
                f"SELECT latency_s FROM telemetry {where} ORDER BY latency_s", params
            )
        ]
        quantiles = [percentile(values, q) for q in _QUANTILES]
    return {
        "since_s": since_s,
        "database": db.kind,
        "database_location": db.where,
        "requests": int(requests or 0),
        "errors": int(errors or 0),
        "error_classes": {str(name): int(count) for name, count in classes},
        "cache_hits": int(cache_hits or 0),
        "routes": {str(name): int(count) for name, count in routes},
        "backends": {str(name): int(count) for name, count in backends},
        "latency_ms": {
            name: _ms(value) for name, value in zip(("p50", "p95", "p99"), quantiles, strict=True)
        },
        "tokens": {"prompt": int(prompt_tokens or 0), "completion": int(completion_tokens or 0)},
        "cost_usd": round(float(cost or 0.0), 6),
        "budgets": await budget_status(db, budgets, key_id) if budgets is not None else [],
    }


async def recent_decisions(db: Database, limit: int) -> list[dict[str, Any]]:
    """The last ``limit`` requests' routing decisions, newest first."""
    p = "?" if db.kind == "sqlite" else "%s"
    rows = await db.fetch(
        "SELECT timestamp, request_id, route, backend, model, confidence, reasons, status, "
        f"latency_s, error_class FROM telemetry ORDER BY timestamp DESC, id DESC LIMIT {p}",
        (max(0, int(limit)),),
    )
    decisions = []
    for stamp, request_id, route, backend, model, confidence, why, status, latency, err in rows:
        reasons = orjson.loads(why) if isinstance(why, str | bytes) else why
        decisions.append(
            {
                "timestamp": stamp.isoformat() if isinstance(stamp, datetime) else str(stamp),
                "request_id": request_id,
                "route": route,
                "backend": backend,
                "model": model,
                "confidence": confidence,
                "reasons": list(reasons or []),
                "status": status,
                "latency_ms": _ms(latency),
                "error_class": err,
            }
        )
    return decisions
