"""Privacy detectors and rules: real detection on positive and look-alike examples."""

from __future__ import annotations

import base64
import json
import re
import sys
import unicodedata
from typing import Any, Literal

import pytest
from pydantic import ValidationError

from hydra_coordinator.privacy import (
    DETECTOR_CATEGORIES,
    PrivacyConfig,
    PrivacyPolicy,
    PrivacyRule,
    builtin_detectors,
    detector_names,
    is_placeholder,
    upstream_text,
)
from hydra_coordinator.privacy.extract import normalise

# Fake credentials in documented formats (never real ones).
AWS_KEY = "AKIAZ7VRSQ5TJ2K3LMNO"
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
OPENAI_KEY = "sk-proj-" + "Xq7Lm2Np9Rt4Vw6Yz8Ab1Cd3Ef5Gh0Jk2Mn4Pq6St8Uv0Wx2Yz4Ab6Cd8Ef0Gh"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwia"
    "WF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi+Y8Uq8bNrJQ6G0sD2V5u/AbCdEfGh\n"
    "-----END RSA PRIVATE KEY-----"
)


@pytest.fixture(scope="module")
def detectors() -> dict[str, Any]:
    return builtin_detectors()


def fired(detectors: dict[str, Any], text: str) -> set[str]:
    return {name for name, detector in detectors.items() if detector.scan(text)}


@pytest.mark.parametrize(
    ("text", "detector"),
    [
        (f"key = {AWS_KEY}", "aws_access_key"),
        (PRIVATE_KEY, "private_key"),
        (f"Authorization: Bearer {JWT}", "jwt"),
        (f"git push fails with {GITHUB_TOKEN}", "github_token"),
        (f'OpenAI(api_key="{OPENAI_KEY}")', "openai_key"),
        ("DATABASE_URL=postgres://app:Zx81vQe4Lp0s@db.lan/app", "connection_string_password"),
        ("Server=sql;Database=crm;User ID=sa;Password=Xk29!vLq0pz;", "connection_string_password"),
        ("DB_PASSWORD=s3cr3tP4ss!2024", "dotenv_password"),
        ('password = "hunter2hunter"', "password_assignment"),
        ("The token is 8Zq4TfK2pLx9VbN3mR7wY1cHjD5sQ0aGuE6b, why rejected?", "high_entropy"),
        ("Mail me at jane.doe@gmail.com", "email"),
        ("Call me at +1 415-555-2671 tonight", "phone"),
        ("Card 4398 2597 9190 7482, exp 09/28", "payment_card"),
        ("IBAN GB82 WEST 1234 5698 7654 32", "iban"),
        ("My SSN is 536-22-1234", "national_id"),
        ("Codice fiscale: RSSMRA85T10A562S", "national_id"),
    ],
)
def test_detector_finds_positive(detectors, text, detector):
    assert detector in fired(detectors, text)


@pytest.mark.parametrize(
    "text",
    [
        "Set OPENAI_API_KEY=YOUR_API_KEY before running.",
        "export ANTHROPIC_API_KEY=<your-key-here>",
        'api_key = os.environ["OPENAI_API_KEY"]',
        "DATABASE_URL=postgres://user:password@localhost:5432/db",
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",  # AWS's documented example key
        "My key file begins with -----BEGIN RSA PRIVATE KEY----- is that PKCS#1?",
        "The token looks like ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx in the docs.",
        'rev = "3f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39";',
        "request id 550e8400-e29b-41d4-a716-446655440000 failed",
        "Send a test mail to user@example.com",
        "git clone git@github.com:NixOS/nixpkgs.git",
        "my credit card number is 4012-8888-8888-1882",  # Luhn check fails
        "wire to GB82 WEST 1234 5698 7654 33",  # IBAN check digits fail
        "The timestamp 1700000000 corresponds to November 2023.",
        "Version 10.2.3 was released on 2024-03-15.",
        "Write a haiku about GPUs running hot in summer.",
    ],
)
def test_look_alikes_do_not_fire(detectors, text):
    assert fired(detectors, text) == set()


def test_placeholders():
    assert is_placeholder("YOUR_API_KEY")
    assert is_placeholder("${DB_PASSWORD}")
    assert is_placeholder("xxxxxxxx")
    assert not is_placeholder("Zx81vQe4Lp0s")


def test_detector_names_expand_categories():
    assert "aws_access_key" in detector_names(["secret"])
    assert set(detector_names(["pii"])) == {"email", "phone", "payment_card", "iban", "national_id"}
    assert detector_names(["jwt", "secret"]).count("jwt") == 1
    with pytest.raises(ValueError, match="nope"):
        detector_names(["nope"])
    assert set(DETECTOR_CATEGORIES) == set(builtin_detectors())


# --------------------------------------------------------------------------- text extraction

SECRET = f"here is {AWS_KEY}"


def _tool_call(arguments: str) -> dict[str, Any]:
    return {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}


MESSAGE_SHAPES = {
    "system": {"messages": [{"role": "system", "content": SECRET}]},
    "user": {"messages": [{"role": "user", "content": SECRET}]},
    "assistant-earlier-turn": {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": SECRET},
            {"role": "user", "content": "go on"},
        ]
    },
    "tool-result": {"messages": [{"role": "tool", "tool_call_id": "c1", "content": SECRET}]},
    "list-content": {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "see"}, {"type": "text", "text": SECRET}],
            }
        ]
    },
    "tool-result-parts": {
        "messages": [{"role": "tool", "content": [{"type": "text", "text": SECRET}]}]
    },
    "tool-call-arguments": {
        "messages": [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [_tool_call(json.dumps({"q": SECRET}))],
            }
        ]
    },
    "tool-call-arguments-not-json": {
        "messages": [{"role": "assistant", "tool_calls": [_tool_call(SECRET + " {")]}]
    },
    "legacy-function-call": {
        "messages": [{"role": "assistant", "function_call": {"name": "f", "arguments": SECRET}}]
    },
    "legacy-prompt": {"prompt": [SECRET]},
}


@pytest.mark.parametrize("shape", sorted(MESSAGE_SHAPES))
def test_every_message_part_is_scanned(shape):
    verdict = PrivacyPolicy(PrivacyConfig()).evaluate(MESSAGE_SHAPES[shape], key_id=None)
    assert verdict.action == "local_only"
    assert verdict.rule == "secrets-stay-local"


def test_tool_arguments_are_decoded_before_scanning():
    arguments = json.dumps({"env": "DB_PASSWORD=s3cr3tP4ss!2024\nDEBUG=1"})
    body = {"messages": [{"role": "assistant", "tool_calls": [_tool_call(arguments)]}]}
    assert "DB_PASSWORD=s3cr3tP4ss!2024\nDEBUG=1" in upstream_text(body).fields


def test_binary_payloads_are_not_scanned_but_text_payloads_are():
    png = (
        "data:image/png;base64,"
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    text = "data:text/plain;base64," + base64.b64encode(f"deploy key {AWS_KEY}".encode()).decode()

    def body(url: str) -> dict[str, Any]:
        parts = [
            {"type": "text", "text": "what is in this picture?"},
            {"type": "image_url", "image_url": {"url": url}},
        ]
        return {"messages": [{"role": "user", "content": parts}]}

    upstream = upstream_text(body(png))
    assert "what is in this picture?" in upstream.fields
    assert "iVBOR" not in upstream.fields and upstream.decoded == ()
    assert PrivacyPolicy(PrivacyConfig()).evaluate(body(png), key_id=None).action == "allow"
    assert upstream_text(body(text)).decoded == (f"deploy key {AWS_KEY}",)
    assert PrivacyPolicy(PrivacyConfig()).evaluate(body(text), key_id=None).action == "local_only"


def test_every_key_and_value_is_read_with_its_key():
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"db_password": "hunter2Hunter", "n": 7, "ok": True},
        "stop": ["END"],
    }
    fields = upstream_text(body).fields.splitlines()
    assert "db_password: hunter2Hunter" in fields
    assert "n: 7" in fields and "ok" in fields and "stop: END" in fields


# --------------------------------------------------------------------------- rules


def policy(*rules: dict[str, Any]) -> PrivacyPolicy:
    return PrivacyPolicy(PrivacyConfig.model_validate({"rules": list(rules)}))


def user(text: str) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}]}


def test_default_config_keeps_secrets_and_personal_data_local():
    default = PrivacyPolicy(PrivacyConfig())
    assert default.evaluate(user("Explain Python generators."), None).action == "allow"
    secret = default.evaluate(user(f"my key {AWS_KEY}"), None)
    assert (secret.action, secret.rule) == ("local_only", "secrets-stay-local")
    assert secret.reasons == ["rule 'secrets-stay-local' (local_only): detector aws_access_key"]
    assert not secret.cloud_allowed
    pii = default.evaluate(user("reach me at jane.doe@gmail.com"), None)
    assert (pii.action, pii.rule) == ("local_only", "personal-data-stays-local")


def test_reasons_and_findings_never_contain_matched_text():
    text = f"key {AWS_KEY}, mail jane.doe@gmail.com, card 4398 2597 9190 7482, codename zeta-9"
    verdict = policy(
        {"name": "codenames", "action": "block", "keywords": ["zeta-9"], "patterns": [r"\bzeta"]},
        {"name": "secrets", "action": "local_only", "detectors": ["secret", "pii"]},
    ).evaluate(user(text), None)
    assert verdict.action == "block"
    rendered = json.dumps(
        [verdict.reasons, verdict.message, [f.detector for f in verdict.findings]]
    )
    for sensitive in (AWS_KEY, "jane.doe", "4398", "zeta"):
        assert sensitive not in rendered
    assert verdict.reasons == [
        "rule 'codenames' (block): pattern #0",
        "rule 'codenames' (block): keyword #0",
    ]


def test_block_beats_local_only_whatever_the_order():
    rules = (
        {"name": "secrets", "action": "local_only", "detectors": ["secret"]},
        {"name": "no-codenames", "action": "block", "keywords": ["Project Zeta"], "reason": "no"},
    )
    verdict = policy(*rules).evaluate(user(f"Project Zeta uses {AWS_KEY}"), None)
    assert (verdict.action, verdict.rule, verdict.message) == ("block", "no-codenames", "no")
    assert len(verdict.reasons) == 2


def test_allow_first_exempts_later_rules_but_not_earlier_ones():
    exempt = {"name": "ops", "action": "allow", "api_keys": ["ops"]}
    secrets = {"name": "secrets", "action": "local_only", "detectors": ["secret"]}
    body = user(f"rotate {AWS_KEY}")
    assert policy(exempt, secrets).evaluate(body, "ops").action == "allow"
    assert policy(exempt, secrets).evaluate(body, "ops").rule == "ops"
    assert policy(exempt, secrets).evaluate(body, "dev").action == "local_only"
    assert policy(secrets, exempt).evaluate(body, "ops").action == "local_only"


def test_rules_per_api_key():
    contractor = {"name": "contractor-local", "action": "local_only", "api_keys": ["contractor"]}
    p = policy(contractor)
    assert p.evaluate(user("hello"), "contractor").action == "local_only"
    assert p.evaluate(user("hello"), "contractor").reasons == [
        "rule 'contractor-local' (local_only): every request of this key"
    ]
    assert p.evaluate(user("hello"), "staff").action == "allow"
    assert p.evaluate(user("hello"), None).action == "allow"


def test_keywords_match_whole_words_ignoring_case():
    p = policy({"name": "k", "action": "block", "keywords": ["zeta"]})
    assert p.evaluate(user("About ZETA launch"), None).action == "block"
    assert p.evaluate(user("zetabytes of data"), None).action == "allow"


def test_disabled_policy_allows_everything():
    p = PrivacyPolicy(PrivacyConfig(enabled=False))
    assert p.evaluate(user(f"key {AWS_KEY}"), None).action == "allow"


def test_detectors_run_lazily_and_once():
    calls: list[str] = []

    class Counting:
        name = "aws_access_key"
        category: Literal["secret"] = "secret"

        def scan(self, text: str) -> bool:
            calls.append(text)
            return "AKIA" in text

    rules = (
        {"name": "ops", "action": "allow", "api_keys": ["ops"]},
        {"name": "a", "action": "local_only", "detectors": ["aws_access_key"]},
        {"name": "b", "action": "local_only", "detectors": ["aws_access_key"]},
    )
    p = PrivacyPolicy(
        PrivacyConfig.model_validate({"rules": list(rules)}), {"aws_access_key": Counting()}
    )
    assert p.evaluate(user("AKIA"), "ops").action == "allow"
    assert calls == []
    verdict = p.evaluate(user("AKIA"), "dev")
    assert (verdict.action, verdict.rule, len(verdict.reasons)) == ("local_only", "a", 2)
    assert len(calls) == 1  # shared by both rules


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"name": "r", "action": "block", "detectors": ["nope"]}, "unknown detector 'nope'"),
        ({"name": "r", "action": "block", "patterns": ["("]}, "pattern #0 is not a valid regex"),
        ({"name": "r", "action": "deny"}, "action"),
        ({"name": "r", "action": "block", "extra": 1}, "extra"),
        ({"name": "r", "action": "block", "keywords": [" "]}, "keywords must not be empty"),
    ],
)
def test_invalid_rules_are_rejected(rule, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        PrivacyConfig.model_validate({"rules": [rule]})


def test_duplicate_rule_names_are_rejected():
    rule = {"name": "same", "action": "allow"}
    with pytest.raises(ValidationError, match="duplicate"):
        PrivacyConfig.model_validate({"rules": [rule, rule]})


def test_config_round_trips_and_defaults_are_local_only():
    cfg = PrivacyConfig()
    assert [(r.action, r.detectors) for r in cfg.rules] == [
        ("local_only", ["secret"]),
        ("local_only", ["pii"]),
    ]
    assert PrivacyConfig.model_validate(cfg.model_dump()) == cfg
    assert isinstance(PrivacyRule(name="x", action="allow").reason, type(None))


def test_every_format_character_is_dropped_by_normalisation():
    """The invisible characters' class is built from planes 0, 1 and 14 only: every format
    character (Cf) this Python's Unicode database knows must still be in it."""
    format_chars = [
        chr(code) for code in range(sys.maxunicode + 1) if unicodedata.category(chr(code)) == "Cf"
    ]
    assert len(format_chars) > 100
    assert normalise("a" + "".join(format_chars) + "é") == "aé"
