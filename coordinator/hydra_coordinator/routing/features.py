"""Cheap features of a chat request that hint at how hard it is. Pure functions, no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Features", "extract_features", "last_user_text", "message_text", "prompt_tokens"]

# A scan of the last user message is enough to see what is asked; cap it so a huge paste
# costs the same as a long one.
_SCAN_LIMIT = 16_000

_CODE = re.compile(
    r"```|\bdef \w+\(|\bclass \w+[:(]|\bfunction\s*\w*\(|#include\b|\bimport \w+|=>|;\s*$"
    r"|\bSELECT\b.+\bFROM\b|\bfn \w+\(|\bpub fn\b|\bconst \w+ =",
    re.MULTILINE,
)
_MULTI_STEP = re.compile(
    r"\bstep[- ]by[- ]step\b|\bsteps?\b|\bfirst\b.*\bthen\b|\bplan\b|\bwalk me through\b"
    r"|^\s*\d+[.)]\s",
    re.IGNORECASE | re.MULTILINE | re.DOTALL,
)
_DESIGN = re.compile(
    r"\b(architect\w*|design\w*|trade-?offs?|compar\w+|analy[sz]\w+|prove|proof|optimi[sz]\w+"
    r"|refactor\w*|scalab\w+|evaluate|strategy|derive|formal\w*|rigorous\w*|threat model)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Features:
    """What the router looks at."""

    tokens: int  # rough prompt size, characters / 4
    turns: int  # messages in the conversation
    has_code: bool
    multi_step: bool
    design_terms: int  # distinct design or reasoning words in the last user message
    tools: bool  # the request offers tools or forces a JSON schema


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (p.get("text") for p in content if isinstance(p, dict))
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def message_text(messages: Iterable[Any]) -> str:
    """All text of all messages, joined by newlines."""
    return "\n".join(_content_text(m.get("content")) for m in messages if isinstance(m, dict))


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def prompt_tokens(body: dict[str, Any]) -> int:
    """Rough prompt size in tokens (characters / 4), as :func:`extract_features` counts it."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0
    return sum(len(_content_text(m.get("content"))) for m in messages if isinstance(m, dict)) // 4


def extract_features(body: dict[str, Any]) -> Features:
    messages = body.get("messages")
    if not isinstance(messages, list):
        messages = []
    chars = sum(len(_content_text(m.get("content"))) for m in messages if isinstance(m, dict))
    ask = last_user_text(messages)[-_SCAN_LIMIT:]
    response_format = body.get("response_format")
    wants_schema = (
        isinstance(response_format, dict) and response_format.get("type") == "json_schema"
    )
    return Features(
        tokens=chars // 4,
        turns=len(messages),
        has_code=bool(_CODE.search(ask)),
        multi_step=bool(_MULTI_STEP.search(ask)),
        design_terms=len({m.lower() for m in _DESIGN.findall(ask)}),
        tools=bool(body.get("tools") or body.get("functions")) or wants_schema,
    )
