"""The ``hydra-coordinator`` command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

from . import __version__
from .config import CONFIG_ENV, ConfigError, Settings, load_settings, redacted, settings_from_dict
from .durations import unit_seconds

CONFIG_HELP = f"Config file (JSON or TOML). Default: ${CONFIG_ENV}, else the embedded defaults."

F = TypeVar("F", bound=Callable[..., Any])


def config_option(function: F) -> F:
    """``--config FILE`` (or ``$HYDRA_COORDINATOR_CONFIG``), as every command takes it."""
    option = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        envvar=CONFIG_ENV,
        show_envvar=False,
        help=CONFIG_HELP,
    )
    return option(function)


def _load(path: str | None, *, secrets: bool = True) -> Settings:
    try:
        return load_settings(path, secrets=secrets)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=f"""\b
Examples:
  hydra-coordinator serve                      # embedded defaults: 127.0.0.1:8092, Ollama
  hydra-coordinator serve --config hydra.json
  hydra-coordinator COMMAND --help             # each command's options and examples

Every command reads --config FILE, else ${CONFIG_ENV}, else the embedded defaults.""",
)
@click.version_option(__version__, prog_name="hydra-coordinator")
def main() -> None:
    """Hydra's hybrid coordinator: one OpenAI-compatible endpoint that routes each request
    between local GPU backends and cloud APIs."""


@main.command(short_help="Run the HTTP API (OpenAI-compatible, /health, /metrics, /mcp).")
@config_option
@click.option("--host", default=None, help="Listen address (overrides listen.host).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Listen port (overrides listen.port).",
)
def serve(config_path: str | None, host: str | None, port: int | None) -> None:
    """Run the coordinator's HTTP server (defaults: 127.0.0.1:8092, Ollama on 11434).

    \b
    Examples:
      hydra-coordinator serve
      hydra-coordinator serve --config /etc/hydra/coordinator.json --port 9000
    """
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


@main.command("check-config", short_help="Validate a config file and print the effective config.")
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@config_option
@click.option(
    "--defaults", is_flag=True, help="Print the embedded defaults (what runs without a file)."
)
@click.option(
    "--no-secrets",
    is_flag=True,
    help="Do not read secret files (for build-time checks without credentials).",
)
def check_config(
    file: str | None, config_path: str | None, defaults: bool, no_secrets: bool
) -> None:
    """Validate the configuration and print the effective configuration as JSON (secrets
    redacted; every key, with its default where the file leaves it out).

    The file is FILE, else --config, else $HYDRA_COORDINATOR_CONFIG; with none of them, the
    embedded defaults are checked.

    \b
    Examples:
      hydra-coordinator check-config hydra.json
      hydra-coordinator check-config --config hydra.toml --no-secrets
      hydra-coordinator check-config --defaults > hydra.json   # a starting point
    """
    if defaults:
        source = click.get_current_context().get_parameter_source("config_path")
        if file or source is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("--defaults prints the embedded defaults: give no file")
        from .config import default_settings

        click.echo(json.dumps(redacted(default_settings()), indent=2))
        return
    if file and config_path and file != config_path:
        raise click.UsageError(f"two config files given: {file} and --config {config_path}")
    chosen = file or config_path
    settings = _load(chosen, secrets=not no_secrets)
    if chosen is None:
        click.echo("check-config: no file given: checked the embedded defaults", err=True)
    click.echo(json.dumps(redacted(settings), indent=2))


def _client_key(settings: Settings, key_file: str | None) -> str | None:
    """The key to ask the server with: ``key_file``'s first key, else the first readable one
    of ``auth.api_key_files``, else none."""
    from .config import client_keys, read_keys

    if key_file is not None:
        try:
            keys = read_keys(key_file, "--api-key-file")
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        if not keys:
            raise click.ClickException(f"--api-key-file {key_file} holds no key")
        return keys[0]
    try:
        keys = client_keys(settings)
    except ConfigError:
        return None
    return keys[0] if keys else None


@main.command(short_help="Show where a query would be routed, and why (no model call).")
@click.argument("query")
@config_option
@click.option(
    "--model", default="auto", show_default=True, help="auto, local, cloud or a concrete model."
)
@click.option(
    "--offline",
    is_flag=True,
    help="Do not ask a running coordinator: evaluate the routing here.",
)
@click.option(
    "--url",
    default=None,
    help="The coordinator to ask (default: http://listen.host:listen.port of the config).",
)
@click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="A file with a client key for the coordinator (default: the first readable file of "
    "auth.api_key_files). The key's privacy rules and budgets apply.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (/route's answer and source).")
def route(
    query: str,
    *,
    config_path: str | None,
    model: str,
    offline: bool,
    url: str | None,
    api_key_file: str | None,
    as_json: bool,
) -> None:
    """Print where QUERY would be routed and why, without calling any model: the decision it
    would get now and the one on expected values, each backend's estimate and the reasons.

    The answer is the running coordinator's (POST /route at the configured address, or
    --url) when one answers there. Otherwise the same pipeline runs here: the privacy rules,
    the learned router's state from the state directory, the budgets (their spend from Redis
    when redis.url is set, else none) and the backends' health and models from one probe.
    The first line says which it did.

    \b
    Examples:
      hydra-coordinator route "What is 2+2?"
      hydra-coordinator route --json --model cloud "Prove Fermat's little theorem"
      hydra-coordinator route --offline --config /etc/hydra/coordinator.json "hello"
    """
    from .routing.preview import PreviewError, preview

    settings = _load(config_path, secrets=False)
    key = _client_key(settings, api_key_file)
    try:
        found = preview(settings, query, {"model": model}, key=key, url=url, ask=not offline)
    except PreviewError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(found.as_dict(), indent=2))
        return
    _print_preview(found.as_dict())


def _print_preview(answer: dict[str, Any]) -> None:
    if answer["source"] == "server":
        click.echo(f"source:     the coordinator at {answer['server_url']} (its live state)")
    else:
        where = answer["server_url"]
        click.echo(f"source:     evaluated here (no coordinator answered at {where})")
        for note in answer["notes"]:
            click.echo(f"            {note}")
    click.echo(f"route:      {answer['route']}")
    click.echo(f"backend:    {answer['backend'] or '-'}")
    click.echo(f"confidence: {answer['confidence']:.2f} (that this route is the better one)")
    expected = answer.get("expected")
    if expected and expected["backend"] != answer["backend"]:
        click.echo(
            f"expected:   {expected['route']} {expected['backend'] or '-'} "
            f"(confidence {expected['confidence']:.2f}; this decision was a random draw)"
        )
    drawn = answer.get("sampled_decision")
    if drawn:
        click.echo(
            f"a draw:     {drawn['route']} {drawn['backend'] or '-'} "
            f"(confidence {drawn['confidence']:.2f}; a request now samples, this is one draw)"
        )
    if answer.get("local_confidence") is not None:
        click.echo(f"cold start: {answer['local_confidence']:.2f} confidence that local suffices")
    if answer.get("privacy_rule"):
        click.echo(f"privacy:    rule {answer['privacy_rule']!r}")
    estimates = answer.get("estimates") or []
    if estimates:
        click.echo("estimates:")
        for e in estimates:
            click.echo(
                f"  {e['backend']} ({e['kind']}): quality {e['quality']:.2f} "
                f"+/- {e['uncertainty']:.2f}, cost ${e['cost_usd']:.4f}, "
                f"utility {e['utility']:.2f}"
            )
    click.echo("reasons:")
    for reason in answer["reasons"]:
        click.echo(f"  - {reason}")


@main.command("mcp", short_help="Serve the MCP tools over stdio (for editors and agents).")
@config_option
def mcp_stdio(config_path: str | None) -> None:
    """Serve the MCP tools over stdio, for MCP clients that start a command.

    The same server as http://HOST:PORT/mcp, as the local user (no API key). stdout carries the
    protocol; logs go to stderr.

    \b
    Example (an MCP client's server entry):
      {"command": "hydra-coordinator", "args": ["mcp", "--config", "/etc/hydra.json"]}
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


@main.command(short_help="Apply the telemetry database's pending migrations.")
@config_option
def migrate(config_path: str | None) -> None:
    """Apply the telemetry database's pending migrations (PostgreSQL or the SQLite file).
    The coordinator also applies them when it starts.

    \b
    Example:
      hydra-coordinator migrate --config /etc/hydra/coordinator.json
    """
    settings = _load(config_path, secrets=False)

    async def work(db: Any) -> tuple[str, list[Any]]:
        return db.where, await db.migrate()

    where, applied = _run_db(settings, work)
    for migration in applied:
        click.echo(f"applied {migration.version:04d}_{migration.name}")
    click.echo(f"{where}: {'up to date' if not applied else f'{len(applied)} applied'}")


def _config_source(config_path: str | None) -> str:
    if config_path:
        return str(Path(config_path).expanduser().absolute())
    return f"the embedded defaults (no --config, ${CONFIG_ENV} unset)"


@main.command(short_help="Summarize recorded requests: routes, errors, latency, cost.")
@config_option
@click.option("--since", default="24h", show_default=True, help="Window: 90s, 30m, 24h, 7d.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(config_path: str | None, since: str, as_json: bool) -> None:
    """Requests, errors, route mix, backends, latency, tokens, cost and cloud budgets, from
    the telemetry database the configuration names (it says which it read). Give the server's
    configuration: without one, the embedded defaults name an SQLite file in your own state
    directory. A database that does not exist is not created.

    \b
    Examples:
      hydra-coordinator stats --config /etc/hydra/coordinator.json
      hydra-coordinator stats --since 7d --json
    """
    settings = _load(config_path, secrets=False)
    since_s = parse_duration(since)
    source = _config_source(config_path)

    async def work(db: Any) -> dict[str, Any]:
        from .telemetry.stats import stats as query

        if not await db.has_telemetry():
            raise click.ClickException(
                f"no telemetry in {db.kind} {db.where}: nothing was recorded there. "
                f"Config read: {source}. Give the server's configuration with --config FILE "
                f"or ${CONFIG_ENV}."
            )
        return await query(db, since_s, settings.budgets)

    result: dict[str, Any] = _run_db(settings, work)
    result["config"] = source
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    total = result["requests"]

    def share(counts: dict[str, int]) -> str:
        if not counts:
            return "-"
        return ", ".join(f"{name} {n} ({100 * n / total:.0f}%)" for name, n in counts.items())

    latency = result["latency_ms"]
    click.echo(f"database:   {result['database']} {result['database_location']}")
    click.echo(f"config:     {source}")
    click.echo(f"since:      {since}")
    click.echo(f"requests:   {total} ({result['errors']} errors, {result['cache_hits']} cached)")
    if result["error_classes"]:
        classes = ", ".join(f"{name} {n}" for name, n in result["error_classes"].items())
        click.echo(f"errors:     {classes}")
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


@main.command("key-id", short_help="Print the key id that logs and telemetry show for a key.")
@click.argument("file", type=click.File("r"), default="-")
def key_id_command(file: TextIO) -> None:
    """Print the key id of each API key in FILE (default: stdin), one per line: the id that
    logs, telemetry, budgets, rate limits and privacy rules use instead of the key. FILE is
    read as the coordinator reads a key file: one key per line, blank lines and lines
    starting with # ignored.

    \b
    Examples:
      hydra-coordinator key-id /run/secrets/alice-key
      printf '%s' "$KEY" | hydra-coordinator key-id
    """
    from .auth import key_id
    from .config import parse_keys

    name = "stdin" if file.name == "<stdin>" else file.name
    try:
        keys = parse_keys(file.read(), name)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    for key in keys:
        click.echo(key_id(key))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
