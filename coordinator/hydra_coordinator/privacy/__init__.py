"""Privacy and safety rules: built-in detectors and the per-request policy.

Typical use on the request path::

    policy = PrivacyPolicy(config.privacy)
    verdict = policy.evaluate(body, key_id)
    if verdict.action == "block": ...        # 403 with verdict.message
    elif verdict.action == "local_only": ... # never a cloud backend, also not on fallback
"""

from .detectors import (
    CATEGORIES,
    DETECTOR_CATEGORIES,
    Category,
    Detector,
    Finding,
    builtin_detectors,
    detector_names,
    is_placeholder,
)
from .rules import (
    Action,
    PrivacyConfig,
    PrivacyPolicy,
    PrivacyRule,
    PrivacyVerdict,
    default_rules,
    extract_text,
)

__all__ = [
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
    "builtin_detectors",
    "default_rules",
    "detector_names",
    "extract_text",
    "is_placeholder",
]
