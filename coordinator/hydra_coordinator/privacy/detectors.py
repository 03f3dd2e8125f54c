"""The built-in detectors, by name and category.

Secrets (:mod:`.secrets`): private keys; AWS, GitHub, GitLab, OpenAI, Anthropic, Google,
Hugging Face, Slack, Stripe, SendGrid, Twilio, npm, PyPI, Discord, Telegram, Mailchimp, Square
and Azure credentials; JWTs; passwords in URLs, connection strings, ``.env`` lines, code, JSON,
headers, command lines and prose; tokens in URL query strings; random-looking tokens.
Personal data (:mod:`.pii`): e-mail addresses, phone numbers, payment cards, IBANs, national
ids. Detector objects are immutable and safe to share between threads;
:func:`builtin_detectors` builds a fresh set on every call.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType

from .detector import CATEGORIES, Category, Detector
from .pii import pii_detectors
from .secrets import secret_detectors

__all__ = ["DETECTOR_CATEGORIES", "builtin_detectors", "detector_names"]


def builtin_detectors() -> dict[str, Detector]:
    """A fresh set of every built-in detector, keyed by name, in a stable order."""
    return {d.name: d for d in [*secret_detectors(), *pii_detectors()]}


DETECTOR_CATEGORIES: MappingProxyType[str, Category] = MappingProxyType(
    {name: detector.category for name, detector in builtin_detectors().items()}
)
"""Every built-in detector name and its category (read-only)."""


def detector_names(selectors: Iterable[str]) -> list[str]:
    """Expand detector names and category names ("secret", "pii") into detector names.

    Raises ``ValueError`` naming the first unknown selector.
    """
    names: list[str] = []
    for selector in selectors:
        if selector in CATEGORIES:
            expanded = [n for n, c in DETECTOR_CATEGORIES.items() if c == selector]
        elif selector in DETECTOR_CATEGORIES:
            expanded = [selector]
        else:
            raise ValueError(f"unknown detector {selector!r}")
        names.extend(n for n in expanded if n not in names)
    return names
