"""``POST /v1/completions``, OpenAI's legacy text completions: routed as a chat request whose
one user message is the prompt, forwarded to the backend's ``/completions`` as it came."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..errors import BadRequest
from ..proxy import COMPLETIONS
from ..routing.pipeline import route_within_budget
from ..routing.router import Decision
from .forwarding import check_model, check_text_input, forward, read_incoming

__all__ = ["PATH", "router"]

router = APIRouter()

PATH = "/v1/completions"


def as_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The body as routing sees it: the prompt as a user message (privacy rules scan both)."""
    prompt = body["prompt"]
    texts = prompt if isinstance(prompt, list) else [prompt]
    text = "\n".join(t for t in texts if isinstance(t, str))
    return {**body, "messages": [{"role": "user", "content": text}]}


@router.post(PATH)
async def completions(request: Request) -> Response:
    incoming = await read_incoming(request)
    body = incoming.body
    model = check_model(body)
    check_text_input(body, "prompt")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false", code="invalid_stream")

    async def route(request_id: str) -> Decision:
        return await route_within_budget(
            incoming.runtime,
            as_chat(body),
            model,
            incoming.key_id,
            request_id=request_id,
            body_size=len(incoming.raw),
        )

    return await forward(incoming, model=model, stream=stream, endpoint=COMPLETIONS, route=route)
