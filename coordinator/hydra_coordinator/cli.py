"""The ``hydra-coordinator`` command line."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from . import __version__
from .config import CONFIG_ENV, ConfigError, Settings, load_settings, redacted, settings_from_dict
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

    from .app import build_runtime
    from .logs import setup_logging
    from .mcp import run_stdio

    setup_logging(settings.log.level, access=False)
    try:
        runtime = build_runtime(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    anyio.run(run_stdio, runtime)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
