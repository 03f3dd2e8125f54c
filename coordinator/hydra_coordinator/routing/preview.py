"""Where would a query go? ``hydra-coordinator route`` asks the running coordinator's
``POST /route`` when one answers at the configured address, and otherwise runs the same
pipeline itself (:func:`~.pipeline.offline`)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Literal

from ..config import Settings

__all__ = ["Preview", "PreviewError", "ask_server", "preview", "server_url"]

_TIMEOUT_S = 10.0


class PreviewError(Exception):
    """The coordinator (or the offline pipeline) refused the query; the message says why."""


@dataclass
class Preview:
    """``/route``'s answer, and who gave it: the ``server`` at ``url``, or ``offline``."""

    answer: dict[str, Any]
    source: Literal["server", "offline"]
    url: str
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**self.answer, "source": self.source, "server_url": self.url, "notes": self.notes}


def server_url(settings: Settings) -> str:
    """The coordinator's own address from ``listen`` (a wildcard address as loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
        settings.listen.host, settings.listen.host
    )
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.listen.port}"


def ask_server(
    url: str, query: str, context: dict[str, Any], key: str | None
) -> dict[str, Any] | None:
    """``POST {url}/route``; None when nothing answers there (refused, unreachable, timeout).
    Raises :class:`PreviewError` when the coordinator answers with an error."""
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        f"{url.rstrip('/')}/route",
        data=json.dumps({"query": query, "context": context}).encode(),
        headers=headers,
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(request, timeout=_TIMEOUT_S) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as err:
        with err:
            raise PreviewError(_http_error(url, err.code, err.read())) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _http_error(url: str, status: int, body: bytes) -> str:
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode(errors="replace")[:200] or "no details"
    if status == 401:
        return (
            f"the coordinator at {url} wants an API key ({message}): pass --api-key-file "
            "FILE with one of its client keys"
        )
    return f"the coordinator at {url} answered HTTP {status}: {message}"


async def _offline(
    settings: Settings, query: str, context: dict[str, Any], key_id: str | None
) -> tuple[dict[str, Any], list[str]]:
    from ..errors import HydraError
    from .pipeline import decide_query, offline

    async with offline(settings) as routing:
        try:
            decision = await decide_query(routing, query, context, key_id)
        except HydraError as exc:
            raise PreviewError(exc.message) from None
        return decision.explain(), routing.notes


def preview(
    settings: Settings,
    query: str,
    context: dict[str, Any],
    *,
    key: str | None,
    url: str | None = None,
    ask: bool = True,
) -> Preview:
    """The decision for ``query``: the server's when one answers at ``url`` (default: the
    configured address) and ``ask`` is True, else evaluated here with the same pipeline."""
    target = url or server_url(settings)
    if ask:
        answer = ask_server(target, query, context, key)
        if answer is not None:
            return Preview(answer, "server", target)
    from ..auth import key_id

    found, notes = asyncio.run(_offline(settings, query, context, key_id(key) if key else None))
    return Preview(found, "offline", target, notes)
