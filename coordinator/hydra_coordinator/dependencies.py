"""The dependencies a runtime uses (telemetry database, Redis, Qdrant, embeddings): a cheap,
non-blocking check of each, for ``/health`` and ``hydra_dependency_up``, and what each one is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from .redaction import redact_text

__all__ = ["Dependencies", "DependencyCheck", "DependencyState"]

DependencyState = Literal["healthy", "degraded", "down"]
DependencyCheck = Callable[[], DependencyState]


@dataclass
class Dependencies:
    checks: dict[str, DependencyCheck] = field(default_factory=dict)  # name -> its check
    details: dict[str, str] = field(default_factory=dict)  # name -> what it is, for /health

    def add(self, name: str, check: DependencyCheck, detail: str | None = None) -> None:
        self.checks[name] = check
        if detail is not None:
            self.details[name] = redact_text(detail)
