"""The ``hydra-coordinator`` command line."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

import click

from . import __version__
from .config import CONFIG_ENV, ConfigError, Settings, load_settings, redacted, settings_from_dict
from .durations import unit_seconds
from .routing.features import extract_features
from .routing.router import BackendView, UnknownModel, decide

CONFIG_HELP = f"Config file (JSON or TOML). Default: ${CONFIG_ENV}, else the embedded defaults."


def _load(path: str | None, *, secrets: bool = True) -> Settings:
    try:
        return load_settings(path, secrets=secrets)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hydra-coordinator")
def main() -> None:
    """Hydra's hybrid coordinator: one OpenAI-compatible endpoint that routes each request
    between local GPU backends and cloud APIs."""


@main.command()
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), envvar=CONFIG_ENV, help=CONFIG_HELP
)
@click.option("--host", default=None, help="Listen address (overrides listen.host).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Listen port (overrides listen.port).",
)
def serve(config_path: str | None, host: str | None, port: int | None) -> None:
    """Run the coordinator's HTTP server (defaults: 127.0.0.1:8092, Ollama on 11434)."""
    settings = _load(config_path)
    if host is not None or port is not None:
        data = settings.model_dump()
        data["listen"] = {
            "host": host or settings.listen.host,
            "port": settings.listen.port if port is None else port,
        }
        try:
            settings = settings_from_dict(data, "command line")
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    from .server import run  # imported here so `--help` and `check-config` stay fast

    try:
        run(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@main.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--no-secrets",
    is_flag=True,
    help="Do not read secret files (for build-time checks without credentials).",
)
def check_config(file: str, no_secrets: bool) -> None:
    """Validate FILE and print the effective configuration (secrets redacted)."""
    settings = _load(file, secrets=not no_secrets)
    click.echo(json.dumps(redacted(settings), indent=2))


def _views(settings: Settings) -> list[BackendView]:
    return [BackendView(b.name, b.kind, "healthy", 0.0, tuple(b.models)) for b in settings.backends]


@main.command()
@click.argument("query")
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), envvar=CONFIG_ENV, help=CONFIG_HELP
)
@click.option(
    "--model", default="auto", show_default=True, help="auto, local, cloud or a concrete model."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def route(query: str, config_path: str | None, model: str, as_json: bool) -> None:
    """Print the routing decision for QUERY without calling any model.

    Backends are assumed healthy; the live decision also weighs health and load.
    """
    settings = _load(config_path, secrets=False)
    body: dict[str, Any] = {"messages": [{"role": "user", "content": query}]}
    try:
        decision = decide(extract_features(body), model, _views(settings), settings.routing)
    except UnknownModel:
        raise click.ClickException(f"no backend serves the model {model!r}") from None
    if as_json:
        click.echo(json.dumps(decision.as_dict(), indent=2))
        return
    click.echo(f"route:      {decision.route}")
    click.echo(f"backend:    {decision.backend or '-'}")
    click.echo(f"confidence: {decision.confidence:.2f}")
    click.echo("reasons:")
    for reason in decision.reasons:
        click.echo(f"  - {reason}")


@main.command("mcp")
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), envvar=CONFIG_ENV, help=CONFIG_HELP
)
def mcp_stdio(config_path: str | None) -> None:
    """Serve the MCP tools over stdio, for MCP clients that start a command.

    The same server as http://HOST:PORT/mcp, as the local user (no API key). stdout carries the
    protocol; logs go to stderr.
    """
    settings = _load(config_path)
    import anyio

    from .logs import setup_logging
    from .mcp import run_stdio
    from .runtime import build_runtime

    setup_logging(settings.log.level, access=False)
    try:
        runtime = build_runtime(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    anyio.run(run_stdio, runtime)


# --- telemetry ---------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``24h``, ``7d``, ``2w`` as seconds (a bare number is seconds)."""
    seconds = unit_seconds(text)
    if seconds is None:
        try:
            seconds = float(text)
        except ValueError:
            raise click.BadParameter(
                f"{text!r} is not a duration like 90s, 30m, 24h or 7d"
            ) from None
    if seconds <= 0:
        raise click.BadParameter(f"{text!r} must be positive")
    return seconds


def _run_db(settings: Settings, work: Any) -> Any:
    import asyncio

    from .telemetry.db import open_database

    async def main() -> Any:
        db = open_database(settings)
        try:
            return await work(db)
        finally:
            await db.close()

    try:
        return asyncio.run(main())
    except Exception as exc:
        if isinstance(exc, click.ClickException):
            raise
        raise click.ClickException(f"telemetry database: {type(exc).__name__}: {exc}") from None


@main.command()
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), envvar=CONFIG_ENV, help=CONFIG_HELP
)
def migrate(config_path: str | None) -> None:
    """Apply the telemetry database's pending migrations (PostgreSQL or the SQLite file)."""
    settings = _load(config_path, secrets=False)

    async def work(db: Any) -> tuple[str, list[Any]]:
        return db.where, await db.migrate()

    where, applied = _run_db(settings, work)
    for migration in applied:
        click.echo(f"applied {migration.version:04d}_{migration.name}")
    click.echo(f"{where}: {'up to date' if not applied else f'{len(applied)} applied'}")


@main.command()
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), envvar=CONFIG_ENV, help=CONFIG_HELP
)
@click.option("--since", default="24h", show_default=True, help="Window: 90s, 30m, 24h, 7d.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(config_path: str | None, since: str, as_json: bool) -> None:
    """Requests, route mix, backends, latency, tokens, cost and cloud budgets, from telemetry."""
    settings = _load(config_path, secrets=False)
    since_s = parse_duration(since)

    async def work(db: Any) -> dict[str, Any]:
        from .telemetry.stats import stats as query

        await db.migrate()  # a fresh SQLite file or database: an empty table, not an error
        return await query(db, since_s, settings.budgets)

    result: dict[str, Any] = _run_db(settings, work)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    total = result["requests"]

    def share(counts: dict[str, int]) -> str:
        if not counts:
            return "-"
        return ", ".join(f"{name} {n} ({100 * n / total:.0f}%)" for name, n in counts.items())

    latency = result["latency_ms"]
    click.echo(f"since:      {since} ({result['database']})")
    click.echo(f"requests:   {total} ({result['errors']} errors, {result['cache_hits']} cached)")
    click.echo(f"routes:     {share(result['routes'])}")
    click.echo(f"backends:   {share(result['backends'])}")
    if latency["p50"] is None:
        click.echo("latency:    -")
    else:
        click.echo(
            f"latency:    p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms, "
            f"p99 {latency['p99']:.1f} ms"
        )
    tokens = result["tokens"]
    click.echo(f"tokens:     {tokens['prompt']} prompt, {tokens['completion']} completion")
    click.echo(f"cost:       ${result['cost_usd']:.4f}")
    for b in result["budgets"]:
        click.echo(
            f"budget:     {b['period']} {b['scope']}: ${b['spent_usd']:.4f} of "
            f"${b['limit_usd']:g} spent, ${b['remaining_usd']:.4f} left, resets {b['resets_at']}"
        )


@main.command("key-id")
@click.argument("file", type=click.File("r"), default="-")
def key_id_command(file: TextIO) -> None:
    """Print the key id of the API key in FILE (default: stdin): the id that logs, telemetry,
    budgets, rate limits and privacy rules use instead of the key."""
    from .auth import key_id

    key = file.read().strip()
    if not key:
        raise click.ClickException("no key given: FILE (or stdin) is empty")
    click.echo(key_id(key))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
