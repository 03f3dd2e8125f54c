"""Adversarial inputs for the privacy scan: texts built to make each detector work hard.

Each family repeats a unit that starts, or almost completes, a detector's pattern (its
prefix, its character class, a look-alike its check rejects) so that a backtracking engine
would go quadratic and a candidate-heavy detector confirms as many candidates as possible.
Used by tests/test_privacy_cost.py (linearity, budget) and bench/privacy_eval.py (cost).
"""

from __future__ import annotations

import random
import string

__all__ = ["FAMILIES", "adversarial", "families_for"]

_RNG_SEED = 16


def _random_digits(size: int) -> str:
    """Groups of 2 to 4 random digits: numbers that are almost phone, card or id numbers."""
    rng = random.Random(_RNG_SEED)
    digits = rng.choices(string.digits, k=size)
    for index in range(0, size, 4):
        digits[index] = " "
    return "".join(digits)


def _random_tokens(size: int) -> str:
    """Random 40-character alphanumeric tokens: each one a high-entropy candidate."""
    rng = random.Random(_RNG_SEED)
    chars = rng.choices(string.ascii_letters + string.digits, k=size)
    for index in range(40, size, 41):
        chars[index] = " "
    return "".join(chars)


# name: (unit to repeat, or a builder of a text of about ``size`` characters)
FAMILIES: dict[str, str] = {
    # character classes and separators most patterns use
    "letters": "a",
    "alnum": "aB3",
    "digits": "7",
    "digits-spaced": "1 ",
    "digits-dashed": "1-",
    "digit-pairs": "12 34 ",
    "plus-digits": "+1 ",
    "newlines": "a\n",
    "quotes": "'a",
    "dquotes": '"a',
    # provider prefixes and token shapes
    "eyJ": "eyJ",
    "eyJ-dots": "eyJhbGci.",
    "sk-": "sk-",
    "sk-ant": "sk-ant-api03-",
    "ghp_": "ghp_",
    "github_pat_": "github_pat_",
    "glpat-": "glpat-",
    "AKIA": "AKIA",
    "aws-words": "aws key pass ",
    "AIza": "AIza",
    "hf_": "hf_",
    "xoxb": "xoxb-1-",
    "SG.": "SG.",
    "npm": "//r/:_authToken=",
    "pypi": "pypi-AgEIcHlwaS5vcmc",
    "discord": "M" + "a" * 24 + ".",
    "telegram": "12345678:",
    "mailchimp": "-us1",
    "sq0": "sq0csp-",
    "AccountKey": "AccountKey=",
    "pem": "-----BEGIN PRIVATE KEY-----",
    "putty": "PuTTY-User-Key-File-2: a\n",
    # passwords
    "scheme": "://",
    "userinfo": "a://b:",
    "at-colon": "a:b@",
    "query-token": "?token=",
    "password=": "PASSWORD",
    "=PASSWORD": "=PASSWORD",
    "snake": "secret_",
    "assign": "password=",
    "json-key": '"password": ',
    "prose": "the password is ",
    "bearer": "Authorization: Bearer ",
    "cli": " --password ",
    "redis-cli": "redis-cli -a",
    "xml": "<password>",
    # random-looking tokens
    "b64-run": "QUJD",
    "b64-text": "SGVsbG8sIHdvcmxkIQ",
    "hex": "0a",
    "random-tokens": "",  # built by _random_tokens
    "public-key": "ssh-rsa AAAA",
    # personal data
    "at": "a@",
    "email-ish": "@a.",
    "phone-words": "phone 1 2 3 4 5 6 7 8 ",
    "nanp": "(646) 86",
    "random-digits": "",  # built by _random_digits
    "card": "4398 2597 9190 7483 ",
    "iban": "DE89 ",
    "id-shape": "123-45-678 ",
    "upper-digits": "AB12",
    # encodings the scan decodes or normalises
    "percent": "%41",
    "zero-width": "a\u200b",
    "fullwidth": "\uff41",
    "data-url": "data:text/plain;base64,",
}

_BUILT = {"random-tokens": _random_tokens, "random-digits": _random_digits}

# The families aimed at each built-in detector (every detector also gets the generic ones).
_GENERIC = ("letters", "alnum", "digits", "digits-spaced", "newlines", "quotes", "b64-run")
_AIMED: dict[str, tuple[str, ...]] = {
    "private_key": ("pem", "putty"),
    "aws_access_key": ("AKIA", "aws-words"),
    "github_token": ("ghp_", "github_pat_"),
    "gitlab_token": ("glpat-",),
    "openai_key": ("sk-",),
    "anthropic_key": ("sk-ant",),
    "google_api_key": ("AIza",),
    "huggingface_token": ("hf_",),
    "slack_token": ("xoxb",),
    "stripe_key": ("alnum",),
    "sendgrid_key": ("SG.",),
    "twilio_key": ("alnum",),
    "npm_token": ("npm",),
    "pypi_token": ("pypi",),
    "discord_token": ("discord",),
    "telegram_token": ("telegram",),
    "mailchimp_key": ("mailchimp",),
    "square_token": ("sq0",),
    "azure_storage_key": ("AccountKey",),
    "jwt": ("eyJ", "eyJ-dots"),
    "connection_string_password": ("scheme", "userinfo", "at-colon"),
    "url_token": ("query-token",),
    "dotenv_password": ("password=", "=PASSWORD", "snake", "assign"),
    "password_assignment": (
        "password=",
        "=PASSWORD",
        "json-key",
        "prose",
        "bearer",
        "cli",
        "redis-cli",
        "xml",
    ),
    "high_entropy": ("b64-run", "b64-text", "hex", "random-tokens", "public-key", "dquotes"),
    "email": ("at", "email-ish"),
    "phone": ("phone-words", "nanp", "plus-digits", "random-digits", "digit-pairs"),
    "payment_card": ("card", "random-digits", "digits-dashed"),
    "iban": ("iban", "upper-digits"),
    "national_id": ("id-shape", "upper-digits", "random-digits"),
}


def families_for(detector: str) -> tuple[str, ...]:
    """The families to run against ``detector``: the generic ones and those aimed at it."""
    return tuple(dict.fromkeys((*_GENERIC, *_AIMED.get(detector, ()))))


def adversarial(family: str, size: int) -> str:
    """About ``size`` characters of ``family``."""
    build = _BUILT.get(family)
    if build is not None:
        return build(size)[:size]
    unit = FAMILIES[family]
    return (unit * (size // len(unit) + 1))[:size]
