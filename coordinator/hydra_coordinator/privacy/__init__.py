"""Privacy and safety rules: built-in detectors and the per-request policy.

Typical use on the request path::

    policy = PrivacyPolicy(config.privacy)
    verdict = policy.evaluate(body, key_id)  # reads everything the body sends upstream
    if verdict.action == "block": ...        # 403 with verdict.message
    elif verdict.action == "local_only": ... # never a cloud backend, also not on fallback
"""

from .detector import CATEGORIES, Category, Detector, Finding
from .detectors import DETECTOR_CATEGORIES, builtin_detectors, detector_names
from .extract import UpstreamText, normalise, upstream_text
from .heuristics import is_placeholder
from .rules import (
    BUDGET_RULE,
    Action,
    PrivacyConfig,
    PrivacyPolicy,
    PrivacyRule,
    PrivacyVerdict,
    default_rules,
    json_size,
)

__all__ = [
    "BUDGET_RULE",
    "CATEGORIES",
    "DETECTOR_CATEGORIES",
    "Action",
    "Category",
    "Detector",
    "Finding",
    "PrivacyConfig",
    "PrivacyPolicy",
    "PrivacyRule",
    "PrivacyVerdict",
    "UpstreamText",
    "builtin_detectors",
    "default_rules",
    "detector_names",
    "is_placeholder",
    "json_size",
    "normalise",
    "upstream_text",
]
