"""Secret detectors: provider keys and tokens, private keys, passwords, random-looking tokens.

The provider patterns follow detect-secrets' plugins and gitleaks' rules (same shapes), written
for RE2: no look-around, so the boundaries those patterns asserted are checked on each match
instead. detect-secrets' own regexes are not run: some of them backtrack quadratically.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote

from detect_secrets.plugins.jwt import JwtTokenDetector

from .detector import Confirm, Detector, PatternDetector, Probe, ScanText, isolated, preceding
from .engine import Match, compile_pattern
from .extract import decode_base64_text
from .heuristics import char_classes, is_hex, is_placeholder, is_reference, looks_random

__all__ = ["secret_detectors"]


def _value(match: Match, group: int | None = None) -> str:
    """The group that holds the value: ``group``, else the last one that matched, else all."""
    if group is None:
        group = match.lastindex or 0
    return match.group(group) or ""


def _real(group: int | None = None) -> Confirm:
    """A match (or its group) that is not a placeholder."""

    def confirm(text: ScanText, match: Match) -> bool:
        return not is_placeholder(_value(match, group))

    return confirm


def _token(extra: str = "_-", *, group: int = 1) -> Confirm:
    """A whole token (nothing alphanumeric or in ``extra`` around it), not a placeholder."""

    def confirm(text: ScanText, match: Match) -> bool:
        start, end = match.start(group), match.end(group)
        return isolated(text.text, start, end, extra) and not is_placeholder(_value(match, group))

    return confirm


def _ends_token(extra: str = "_-", *, group: int = 1) -> Confirm:
    """Nothing alphanumeric or in ``extra`` right after the match; not a placeholder."""

    def confirm(text: ScanText, match: Match) -> bool:
        end = match.end(group)
        if end < len(text.text) and (text.text[end].isalnum() or text.text[end] in extra):
            return False
        return not is_placeholder(_value(match, group))

    return confirm


# Where a token may begin: at the start or after a character that cannot be part of it. RE2
# has no look-behind, so the pattern consumes that character and the token is group 1; a
# token then cannot start in the middle of a run of token characters, which also keeps the
# number of candidates in a long run down to one.
_AFTER_ALNUM = r"(?:^|[^A-Za-z0-9])"
_AFTER_TOKEN = r"(?:^|[^A-Za-z0-9_-])"


def _after(boundary: str, token: str, confirm: Confirm) -> Probe:
    """A probe for ``token`` (group 1) where ``boundary`` says it may begin."""
    return Probe(boundary + f"({token})", confirm, prefilter=token)


# --------------------------------------------------------------------------- provider keys


def _aws_key_id(text: ScanText, match: Match) -> bool:
    """AWS documents its sample keys with an ``EXAMPLE`` suffix."""
    value = _value(match, 1)
    return (
        isolated(text.text, match.start(1), match.end(1), "")
        and "EXAMPLE" not in value
        and not is_placeholder(value)
    )


def _aws_secret(text: ScanText, match: Match) -> bool:
    value = _value(match)
    return "EXAMPLE" not in value.upper() and not is_placeholder(value)


def _jwt(text: ScanText, match: Match) -> bool:
    """Header and payload must decode to JSON (detect-secrets' formal check)."""
    return bool(JwtTokenDetector.is_formally_valid(_value(match, 0)[:8192]))


def _provider_detectors() -> list[Detector]:
    return [
        PatternDetector(
            "private_key",
            "secret",
            (
                # PEM (also with literal "\n" escapes, as in a JSON or .env value), PuTTY
                Probe(
                    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:\s|\\[rn])*"
                    r"(?:[A-Za-z0-9-]+: [^\n\\]*(?:\n|\\n)(?:\s|\\[rn])*)*[A-Za-z0-9+/=]{40}",
                    prefilter="PRIVATE KEY",
                ),
                Probe(
                    r"PuTTY-User-Key-File-\d+:[^\n]*\n(?:[^\n]*\n){0,6}?"
                    r"Private-Lines: \d+\s*\n\s*[A-Za-z0-9+/=]{40}",
                    prefilter="PuTTY-User-Key-File-",
                ),
            ),
        ),
        PatternDetector(
            "aws_access_key",
            "secret",
            (
                _after(
                    _AFTER_ALNUM, r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}", _aws_key_id
                ),
                Probe(
                    r"(?i)aws.{0,20}?(?:key|pwd|pw|password|pass|token).{0,20}?"
                    r"[\"']([0-9a-zA-Z/+]{40})[\"']",
                    _aws_secret,
                    prefilter=r"(?i)aws",
                ),
            ),
        ),
        PatternDetector(
            "github_token",
            "secret",
            (
                Probe(r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9_]{36}", _real(0)),
                Probe(r"github_pat_[A-Za-z0-9_]{82}", _real(0)),
            ),
        ),
        PatternDetector(
            "gitlab_token",
            "secret",
            (
                _after(
                    _AFTER_TOKEN,
                    r"(?:glpat|gldt|glft|glsoat|glrt)-[A-Za-z0-9_-]{20,50}",
                    _ends_token(),
                ),
                _after(_AFTER_TOKEN, r"GR1348941[A-Za-z0-9_-]{20,50}", _ends_token()),
                _after(
                    _AFTER_TOKEN, r"glcbt-(?:[0-9a-fA-F]{2}_)?[A-Za-z0-9_-]{20,50}", _ends_token()
                ),
                _after(_AFTER_TOKEN, r"glimt-[A-Za-z0-9_-]{25}", _ends_token()),
                _after(_AFTER_TOKEN, r"glptt-[A-Za-z0-9_-]{40}", _ends_token()),
                _after(_AFTER_TOKEN, r"glagent-[A-Za-z0-9_-]{50,1000}", _ends_token()),
                _after(_AFTER_TOKEN, r"gloas-[A-Za-z0-9_-]{64}", _ends_token()),
            ),
        ),
        PatternDetector(
            "openai_key",
            "secret",
            (
                Probe(
                    r"sk-[A-Za-z0-9_-]*[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}",
                    _real(0),
                    prefilter="T3BlbkFJ",
                ),
                _after(
                    _AFTER_TOKEN, r"sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{40,}", _real(1)
                ),
                _after(_AFTER_TOKEN, r"sk-[A-Za-z0-9]{48}", _token()),
            ),
        ),
        PatternDetector(
            "anthropic_key",
            "secret",
            (Probe(r"sk-ant-(?:api03|admin01|oat01|ort01)-[A-Za-z0-9_-]{40,}", _real(0)),),
        ),
        PatternDetector(
            "google_api_key",
            "secret",
            (_after(_AFTER_TOKEN, r"AIza[0-9A-Za-z_-]{35}", _ends_token()),),
        ),
        PatternDetector(
            "huggingface_token", "secret", (_after(_AFTER_TOKEN, r"hf_[A-Za-z]{34}", _token()),)
        ),
        PatternDetector(
            "slack_token",
            "secret",
            (
                Probe(r"(?i)xox[abposr]-(?:\d+-)+[a-z0-9]+", _real(0)),
                Probe(
                    r"https://hooks\.slack\.com/services/T[a-zA-Z0-9_]+/B[a-zA-Z0-9_]+"
                    r"/[a-zA-Z0-9_]+",
                    _real(0),
                ),
            ),
        ),
        PatternDetector("stripe_key", "secret", (Probe(r"[rs]k_live_[0-9a-zA-Z]{24}", _real(0)),)),
        PatternDetector(
            "sendgrid_key",
            "secret",
            (Probe(r"SG\.[a-zA-Z0-9_-]{22}\.[a-zA-Z0-9_-]{43}", _real(0)),),
        ),
        PatternDetector(
            "twilio_key", "secret", (_after(_AFTER_ALNUM, r"(?:AC|SK)[a-z0-9]{32}", _token("")),)
        ),
        PatternDetector(
            "npm_token",
            "secret",
            (
                Probe(r"//\S+/:_authToken=[ \t]*([^\s\"']+)", _real(1), prefilter="/:_authToken="),
                _after(_AFTER_TOKEN, r"npm_[A-Za-z0-9]{36}", _token()),
            ),
        ),
        PatternDetector(
            "pypi_token",
            "secret",
            (
                Probe(r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{70,}", _real(0)),
                Probe(r"pypi-AgENdGVzdC5weXBpLm9yZw[A-Za-z0-9_-]{70,}", _real(0)),
            ),
        ),
        PatternDetector(
            "discord_token",
            "secret",
            (
                Probe(
                    _AFTER_TOKEN
                    + r"([MNO][a-zA-Z0-9_-]{23,25}\.[a-zA-Z0-9_-]{6}\.[a-zA-Z0-9_-]{27})",
                    _real(1),
                    prefilter=r"\.[a-zA-Z0-9_-]{6}\.[a-zA-Z0-9_-]{27}",
                ),
            ),
        ),
        PatternDetector(
            "telegram_token",
            "secret",
            (
                Probe(
                    _AFTER_TOKEN + r"(\d{8,10}:[0-9A-Za-z_-]{35})",
                    _token(),
                    prefilter=r"\d:[0-9A-Za-z_-]{35}",
                ),
            ),
        ),
        PatternDetector(
            "mailchimp_key",
            "secret",
            (
                Probe(
                    _AFTER_TOKEN + r"([0-9a-z]{32}-us[0-9]{1,2})", _token(), prefilter=r"-us[0-9]"
                ),
            ),
        ),
        PatternDetector(
            "square_token",
            "secret",
            (
                Probe(r"sq0csp-[0-9A-Za-z\\_-]{43}", _real(0)),
                Probe(r"sq0atp-[0-9A-Za-z_-]{22}", _real(0)),
            ),
        ),
        PatternDetector(
            "azure_storage_key",
            "secret",
            (Probe(r"AccountKey=[a-zA-Z0-9+/=]{88}", _real(0)),),
        ),
        PatternDetector(
            "jwt",
            "secret",
            (
                Probe(
                    r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}",
                    _jwt,
                ),
            ),
        ),
    ]


# --------------------------------------------------------------------------- passwords

# Passwords in URLs: scheme://user:password@host. The password runs to the last "@" that is
# followed by a host, so unencoded special characters (! $ & * + , ; = ( # ? @) stay in it.
_URL_PASSWORD_PLACEHOLDERS = frozenset({"password", "passwd", "pwd", "secret", "pass:word"})
_PORT_THEN_PATH = re.compile(r"\d{1,5}(?:[/?#]|$)")


def _url_password(text: ScanText, match: Match) -> bool:
    password = _value(match, 2)
    if _PORT_THEN_PATH.match(password):
        return False  # host:port/path...@ : no userinfo at all
    if "@" in password and "/" in password.split("@", 1)[1]:
        password = password.split("@", 1)[0]  # the host began at the first "@"
    return not _url_placeholder(unquote(password))


def _url_placeholder(password: str) -> bool:
    """Only template syntax and the bare word "password" stand in for a URL's password: in a
    connection string even "pass" or "tiger" may well be the real one."""
    lowered = password.lower()
    if lowered in _URL_PASSWORD_PLACEHOLDERS or len(set(lowered)) <= 2:
        return True
    return bool(_TEMPLATE.search(password)) or is_reference(password)


_TEMPLATE = re.compile(r"<[^<>]{0,64}>|\$\{|\{\{|%\(|%s\b|^\*+$|\.\.\.|x{4,}|\bYOUR[_-]", re.I)


def _not_placeholder_value(text: ScanText, match: Match) -> bool:
    return not is_placeholder(_value(match))


def _connection_string_detector() -> Detector:
    return PatternDetector(
        "connection_string_password",
        "secret",
        (
            Probe(
                r"(?i)[a-z][a-z0-9+.-]{1,30}://([^\s/?#@:\"'<>`]*):([^\s\"'<>`]+)@"
                r"[A-Za-z0-9\[_-]",
                _url_password,
                prefilter="://",
            ),
            # ADO.NET / ODBC style: Server=...;Password=...;
            Probe(
                r"(?i)(?:^|[;\s\"'])(?:password|pwd)[ \t]*=[ \t]*([^;'\"\s]{4,})",
                _not_placeholder_value,
                prefilter=r"(?i)(?:password|pwd)[ \t]*=",
            ),
        ),
    )


# Tokens in URL query strings: ?access_token=..., &api_key=..., &sig=...
_URL_TOKEN_NAMES = (
    r"access_token|accesstoken|auth_token|authtoken|token|api_key|apikey|api-key|key|secret"
    r"|client_secret|password|passwd|pwd|sig|signature|refresh_token|id_token|private_token"
    r"|session|sessionid|session_id|sid|x-amz-signature|x-amz-credential|x-amz-security-token"
    r"|x-goog-signature"
)
_GENERIC_PARAMS = frozenset(
    {"key", "sig", "signature", "sid", "session", "sessionid", "session_id", "code"}
)


def _url_token(text: ScanText, match: Match) -> bool:
    name = (match.group(1) or "").lower()
    value = unquote(match.group(2) or "")
    if is_placeholder(value) or is_reference(value):
        return False
    if name in _GENERIC_PARAMS or name.startswith(("x-amz-", "x-goog-")):
        return len(value) >= 16 and char_classes(value) >= 2
    return True


def _url_token_detector() -> Detector:
    return PatternDetector(
        "url_token",
        "secret",
        (
            Probe(
                rf"(?i)[?&#;]({_URL_TOKEN_NAMES})=([^&#\s\"'<>]{{6,}})",
                _url_token,
                prefilter=rf"(?i)[?&#;](?:{_URL_TOKEN_NAMES})=",
            ),
        ),
    )


# Names of settings that hold a secret, and suffixes that make them name something else.
_SECRET_SEGMENTS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "passphrase",
        "passcode",
        "passwort",
        "kennwort",
        "contraseña",
        "contrasena",
        "secret",
        "secrets",
        "token",
        "auth",
        "credential",
        "credentials",
        "apikey",
    }
)
_SECRET_JOINED = ("apikey", "accesskey", "privatekey", "secretkey", "clientsecret", "authtoken")
_NOT_SECRET_SUFFIXES = (
    "file",
    "path",
    "dir",
    "name",
    "count",
    "type",
    "length",
    "len",
    "limit",
    "url",
    "uri",
    "endpoint",
    "policy",
    "env",
    "var",
    "field",
    "header",
    "prefix",
    "format",
    "regex",
    "pattern",
    "hint",
    "label",
    "placeholder",
    "expiry",
    "expires",
    "expiration",
    "ttl",
    "timeout",
    "usage",
    "budget",
    "size",
    "ref",
    "reset",
    "rotation",
    "required",
    "enabled",
    "min",
    "max",
    "mode",
    "method",
    "provider",
    "source",
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEGMENT_SPLIT = re.compile(r"[^A-Za-z0-9ñÑ]+")


def is_secret_setting(identifier: str) -> bool:
    """Whether a setting's name says it holds a secret: ``DB_PASSWORD``, ``apiKey``,
    ``client-secret``, ``X-Api-Key``; not ``author``, ``max_tokens``, ``token_type``,
    ``password_file``."""
    identifier = identifier[-80:].strip("$\"'[]")
    segments = [s for s in _SEGMENT_SPLIT.split(_CAMEL.sub("_", identifier).lower()) if s]
    if not segments or segments[-1] in _NOT_SECRET_SUFFIXES:
        return False
    if any(s in _SECRET_SEGMENTS for s in segments):
        return True
    joined = "".join(segments)
    return any(word in joined for word in _SECRET_JOINED)


_STOP_WORDS = frozenset(
    {
        "the",
        "a",
        "an",
        "not",
        "too",
        "is",
        "was",
        "be",
        "being",
        "been",
        "incorrect",
        "wrong",
        "correct",
        "invalid",
        "valid",
        "required",
        "optional",
        "missing",
        "empty",
        "expired",
        "stored",
        "saved",
        "set",
        "hashed",
        "encrypted",
        "same",
        "different",
        "weak",
        "strong",
        "secure",
        "insecure",
        "changed",
        "reset",
        "visible",
        "hidden",
        "shown",
        "sent",
        "used",
        "needed",
        "now",
        "still",
        "also",
        "only",
        "case",
        "sensitive",
        "unknown",
        "forgotten",
        "lost",
        "blank",
        "null",
        "none",
        "undefined",
        "here",
        "there",
        "below",
        "above",
        "attached",
        "following",
        "this",
        "that",
    }
)
_TRAILING = ".,;:!?)]}>\"'`\u2019\u201d"
_OPENERS = {")": "(", "]": "[", "}": "{", ">": "<"}


def _trim(value: str) -> str:
    """``value`` without the punctuation of the sentence around it (``hunter2).`` is
    ``hunter2``), but with a closing bracket that closes one in the value: ``[value]`` and
    ``<password>`` stay templates. (Runs per match: C-level string operations only, but for
    a closing bracket in the stripped tail.)"""
    stripped = value.rstrip(_TRAILING)
    tail = value[len(stripped) :]
    if "]" not in tail and ")" not in tail and ">" not in tail and "}" not in tail:
        return stripped
    for i, char in enumerate(tail):
        opener = _OPENERS.get(char)
        if opener is not None and opener in stripped:
            return value[: len(stripped) + i + 1]
    return stripped


def _assigned_value(match: Match) -> str:
    return (_value(match) if (match.lastindex or 0) > 1 else "").strip()


# A value that starts like a provider's key but is not one (the provider's own detector would
# have fired) is a fake: "sk-ant-oat01-tooShort".
_PROVIDER_PREFIXES = (
    "sk-",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xox",
    "AKIA",
    "AIza",
    "hf_",
    "npm_",
    "pypi-",
    "SG.",
)


def _literal_secret(value: str) -> bool:
    return (
        len(value) >= 4
        and not value.startswith(_PROVIDER_PREFIXES)
        and not is_placeholder(value)
        and not is_reference(value)
    )


def _assignment(text: ScanText, match: Match) -> bool:
    """``identifier = "value"`` in code, JSON or YAML: the identifier names a secret and the
    value is a literal, not a placeholder or a reference to another value."""
    return is_secret_setting(match.group(1) or "") and _literal_secret(_assigned_value(match))


def _dotenv(text: ScanText, match: Match) -> bool:
    """``KEY=value`` ending a line (.env, shell, INI, YAML; also after a field's name)."""
    if not is_secret_setting(match.group(1) or ""):
        return False
    value = _assigned_value(match)
    if (match.lastindex or 0) == 4:  # unquoted: a sentence may end right after it
        if is_placeholder(value):
            return False
        value = _trim(value)
    return not value.replace(".", "").isdigit() and _literal_secret(value)


def _prose_password(text: ScanText, match: Match) -> bool:
    """ "the password is ..." in a sentence: a value that looks like a password (two kinds of
    characters, or six digits or more), not an ordinary word."""
    value = _trim(match.group(1) or "").lstrip("\"'`\u2018\u201c")
    if len(value) < 4 or value.lower() in _STOP_WORDS:
        return False
    if is_placeholder(value) or is_reference(value):
        return False
    return char_classes(value) >= 2 or (value.isdigit() and len(value) >= 6)


def _quoted_prose_password(text: ScanText, match: Match) -> bool:
    """A quoted value after the word "password": it must also look like one (a digit, or
    three kinds of characters), not a field's or a function's name."""
    value = match.group(1) or ""
    if not _prose_password(text, match):
        return False
    return any(c.isdigit() for c in value) or char_classes(value) >= 3


def _flag_value(text: ScanText, match: Match) -> bool:
    value = _trim(match.group(1) or "")
    return len(value) >= 4 and not is_placeholder(value) and not is_reference(value)


_QUOTED_VALUE = r"(?:\"([^\"\n]{1,300})\"|'([^'\n]{1,300})'|`([^`\n]{1,300})`)"
_SETTING_NAME = (
    r"(?:pass(?:word|wd|phrase|code)?|pwd|secrets?|token|api[_-]?key|apikey|access[_-]?key"
    r"|private[_-]?key|client[_-]?secret|credentials?|auth|passwort|kennwort|contrase[ñn]a)"
)


def _dotenv_detector() -> Detector:
    return PatternDetector(
        "dotenv_password",
        "secret",
        (
            Probe(
                r"(?im)(?:^|[\s;,])(?:export[ \t]+|set[ \t]+)?"
                rf"([A-Za-z0-9_.-]*{_SETTING_NAME}[A-Za-z0-9_.-]*)[ \t]*[=:][ \t]*"
                r"(?:\"([^\"\n]*)\"|'([^'\n]*)'|([^\s\"'][^\s]*))[ \t]*"
                r"(?:[ \t]#[^\n]*)?$",
                _dotenv,
                prefilter=rf"(?i){_SETTING_NAME}[A-Za-z0-9_.-]*[ \t]*[=:]",
            ),
        ),
    )


def _password_assignment_detector() -> Detector:
    return PatternDetector(
        "password_assignment",
        "secret",
        (
            # code, JSON, YAML: name = "value", "name": "value", name => 'value', name := `v`
            Probe(
                rf"(?i)([A-Za-z0-9_$.-]{{0,40}}{_SETTING_NAME}[A-Za-z0-9_.-]{{0,40}})"
                rf"[\"'\]]?[ \t]*(?:=>|:=|==|!=|=|:)[ \t]*{_QUOTED_VALUE}",
                _assignment,
                prefilter=rf"(?i){_SETTING_NAME}[A-Za-z0-9_.-]*[\"'\]]?[ \t]*[=:!][=>]?[ \t]*"
                r"[\"'`]",
            ),
            # prose: "the password is hunter2", "my passphrase was: ..."
            Probe(
                r"(?i)\b(?:password|passwd|passphrase|passcode|passwort|kennwort|contrase[ñn]a"
                r"|mot de passe|pwd|pw)\b[^\n\"'.]{0,40}?(?:\bis|\bwas|\bist|\blautet|\bheißt"
                r"|\bheisst|\bwar|\bes|\best|\bera|=|:)[ \t]+([^\s]{4,128})",
                _prose_password,
                prefilter=r"(?i)\b(?:password|passwd|passphrase|passcode|passwort|kennwort"
                r"|contrase[ñn]a|mot de passe|pwd|pw)\b",
            ),
            # prose, the value quoted: "log in with the password `Kz!48vQpL2`"
            Probe(
                r"(?i)\b(?:password|passwd|passphrase|passcode|passwort|kennwort|contrase[ñn]a"
                r"|mot de passe)\b[^\n\"'`.]{0,40}?[ \t][\"'`\x{2018}\x{201c}]"
                r"([^\s\"'`\x{2019}\x{201d}]{4,128})[\"'`\x{2019}\x{201d}]",
                _quoted_prose_password,
                prefilter=r"(?i)\b(?:password|passwd|passphrase|passcode|passwort|kennwort"
                r"|contrase[ñn]a|mot de passe)\b",
            ),
            # HTTP headers: Authorization: Bearer ..., Basic ...
            Probe(
                r"(?i)\bauthorization[\"']?[ \t]*[:=][ \t]*[\"']?(?:bearer|basic|token|digest"
                r"|apikey|api-key)[ \t]+([A-Za-z0-9._~+/=:-]{8,})",
                _flag_value,
                prefilter="(?i)authorization",
            ),
            Probe(
                r"(?i)\bbearer[ \t]+([A-Za-z0-9._~+/-]{20,}=*)",
                _flag_value,
                prefilter=r"(?i)bearer[ \t]",
            ),
            # command lines: --password x, --token=x, redis-cli -a x, mysql -px, sshpass -p x
            Probe(
                r"(?i)(?:^|\s)--?(?:password|passwd|pass|pwd|token|secret|api-key|apikey"
                r"|auth-token)(?:=|[ \t]+)[\"']?([^\s\"'-][^\s\"']{3,200})",
                _flag_value,
                prefilter=r"(?i)-(?:password|passwd|pass|pwd|token|secret|api-key|apikey"
                r"|auth-token)[= \t]",
            ),
            Probe(
                r"(?i)\bredis-cli\b[^\n|;&]{0,80}?[ \t]-a[ \t]+[\"']?([^\s\"']{4,200})",
                _flag_value,
                prefilter="(?i)redis-cli",
            ),
            Probe(
                r"(?i)\bmysql(?:dump|admin)?\b[^\n|;&]{0,80}?[ \t]-p[\"']?"
                r"([^\s\"'-][^\s\"']{3,200})",
                _flag_value,
                prefilter="(?i)mysql",
            ),
            # curl -u user:password, docker login -u user -p password
            Probe(
                r"(?i)\bcurl\b[^\n|;&]{0,120}?[ \t](?:-u|--user)(?:=|[ \t]+)[\"']?"
                r"[^\s\"':]*:([^\s\"']{4,200})",
                _flag_value,
                prefilter="(?i)curl",
            ),
            Probe(
                r"(?i)\b(?:docker|podman|buildah|skopeo|helm|oc)\b[^\n|;&]{0,40}?\blogin\b"
                r"[^\n|;&]{0,120}?[ \t]-p(?:=|[ \t]+)[\"']?([^\s\"'-][^\s\"']{3,200})",
                _flag_value,
                prefilter=r"(?i)\blogin\b",
            ),
            Probe(
                r"(?i)\bsshpass[ \t]+-p[ \t]*[\"']?([^\s\"']{4,200})",
                _flag_value,
                prefilter="(?i)sshpass",
            ),
            # XML: <password>...</password>
            Probe(
                r"(?i)<(?:password|passwd|secret|token|api[_-]?key|client[_-]?secret)>"
                r"([^<\s]{4,200})</",
                _flag_value,
            ),
        ),
    )


# --------------------------------------------------------------------------- random tokens

_HASH_CONTEXT = re.compile(
    r"sha\d*|md5|hash|digest|checksum|commit|\brev\b|revision|integrity|etag|nonce|uuid"
    r"|\bid\b|_id\b|fingerprint|narhash|vendorhash|cargohash|\bsri\b|\bref\b|\bblob\b"
)
_CREDENTIAL_CONTEXT = re.compile(r"key|token|secret|passw|credential|api|auth|bearer")
_PUBLIC_BLOCK = compile_pattern(
    r"(?s)-----BEGIN (?:[A-Z0-9]+ )*(?:PUBLIC KEY|CERTIFICATE|CERTIFICATE REQUEST|X509 CRL"
    r"|PGP PUBLIC KEY BLOCK|PGP SIGNATURE|SSH2 PUBLIC KEY)-----.*?(?:-----END[^\n]*-----|$)"
    r"|(?:ssh-(?:rsa|dss|ed25519)|ecdsa-sha2-nistp(?:256|384|521)"
    r"|sk-(?:ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)[ \t]+AAAA[A-Za-z0-9+/]+={0,3}"
)


def _public_spans(text: str) -> tuple[tuple[int, int], ...]:
    """Where public keys and certificates are: their base64 is not a secret."""
    if "-----BEGIN" not in text and "AAAA" not in text:
        return ()
    return tuple((m.start(), m.end()) for m in _PUBLIC_BLOCK.finditer(text))


def _in_public_key(text: ScanText, start: int) -> bool:
    spans = text.fact("public-spans", _public_spans)
    return any(a <= start < b for a, b in spans)


def _quoted_high_entropy(text: ScanText, match: Match) -> bool:
    start, end = match.start() + 1, match.end() - 1  # inside the quotes
    return _high_entropy(text, start, end, quoted=True)


def _bare_high_entropy(text: ScanText, match: Match) -> bool:
    """A bare token: a whole run of token characters, not after a dot (a file, a domain)."""
    start, end = match.start(), match.end()
    if not isolated(text.text, start, end, "+/_=-."):
        return False
    return _high_entropy(text, start, end, quoted=False)


def _high_entropy(text: ScanText, start: int, end: int, *, quoted: bool) -> bool:
    raw = text.text
    value = raw[start:end]
    context = preceding(raw, start, 30).rpartition("\n")[2]  # on the token's own line
    if _HASH_CONTEXT.search(context):
        return False
    if not quoted and is_hex(value) and not _CREDENTIAL_CONTEXT.search(context):
        return False  # bare hex in prose is usually a hash or an id
    if _in_public_key(text, start):
        return False
    if decode_base64_text(value) is not None:
        return False  # base64 of text: the decoded text is scanned instead
    return looks_random(value, quoted=quoted)


def _high_entropy_detector() -> Detector:
    return PatternDetector(
        "high_entropy",
        "secret",
        (
            # No capture groups: RE2 finds a match's bounds with its DFA alone, fast however
            # long the token; a group would cost a slower pass over it.
            Probe(
                r"\"[A-Za-z0-9+/_=-]{20,}\"|'[A-Za-z0-9+/_=-]{20,}'|`[A-Za-z0-9+/_=-]{20,}`",
                _quoted_high_entropy,
                memo=False,  # reads where public keys are in the whole text
                prefilter=r"[\"'`][A-Za-z0-9+/_=-]{20}",
            ),
            # a greedy run starts where the run starts: one candidate per run of token characters
            Probe(
                r"[A-Za-z0-9+/_=-]{32,}",
                _bare_high_entropy,
                memo=False,
                prefilter=r"[A-Za-z0-9+/_=-]{32}",
            ),
        ),
    )


def secret_detectors() -> list[Detector]:
    """Provider keys and tokens first (specific, cheap), generic heuristics last."""
    generic: list[Callable[[], Detector]] = [
        _connection_string_detector,
        _url_token_detector,
        _dotenv_detector,
        _password_assignment_detector,
        _high_entropy_detector,
    ]
    return [*_provider_detectors(), *(make() for make in generic)]
