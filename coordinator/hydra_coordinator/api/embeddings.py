"""``POST /v1/embeddings``: routed to the backends that serve embedding models (local first),
under the same auth, limits, privacy rules, metrics and telemetry as chat."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..errors import BadRequest
from ..proxy import EMBEDDINGS
from ..routing.embeddings import route_embeddings
from ..routing.router import Decision
from .forwarding import check_model, check_text_input, forward, read_incoming

__all__ = ["PATH", "router"]

router = APIRouter()

PATH = "/v1/embeddings"


@router.post(PATH)
async def embeddings(request: Request) -> Response:
    incoming = await read_incoming(request)
    body = incoming.body
    model = check_model(body)
    check_text_input(body, "input")
    if body.get("stream"):
        raise BadRequest("embeddings cannot be streamed", code="invalid_stream")

    async def route(request_id: str) -> Decision:
        return await route_embeddings(
            incoming.runtime, body, model, incoming.key_id, request_id=request_id
        )

    return await forward(incoming, model=model, stream=False, endpoint=EMBEDDINGS, route=route)
