"""What ``serve`` says when it starts: where it listens, the URL to give clients, and each
backend's first probe with what to check when one did not answer.

The listening socket is bound here, before the app starts, so a port that is taken is a clear
error naming the key to change instead of a traceback after the start-up messages.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket

from . import __version__
from .backends.backend import Backend
from .backends.client import UpstreamTimeout
from .backends.pool import BackendPool
from .config import ConfigError, Settings
from .runtime import Runtime

__all__ = ["ListenError", "backend_report", "listen_socket", "report_when_probed", "urls"]

log = logging.getLogger("hydra_coordinator")


class ListenError(ConfigError):
    """The coordinator cannot listen where it is configured to."""


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for ``host``:``port`` (uvicorn listens on it)."""
    address = host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise ListenError(_listen_problem(host, port, exc)) from None
    sock.set_inheritable(True)
    return sock


def _listen_problem(host: str, port: int, exc: OSError) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: port {port} is already in use (another "
            f"hydra-coordinator? `ss -ltnp 'sport = :{port}'` shows which process). "
            "Change listen.port in the config, or pass --port."
        )
    if exc.errno == errno.EACCES:
        return (
            f"cannot listen on {where}: ports below 1024 need privileges. "
            "Change listen.port in the config, or pass --port."
        )
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return (
            f"cannot listen on {where}: {host} is not an address of this machine. "
            "Change listen.host in the config, or pass --host."
        )
    return f"cannot listen on {where}: {exc.strerror or exc}. Check listen.host and listen.port."


def urls(host: str, port: int) -> tuple[str, str]:
    """(where the server listens, the OpenAI base URL to give clients)."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    root = f"http://{shown}:{port}"
    return root, f"{root}/v1"


def backend_report(backend: Backend, settings: Settings) -> tuple[int, str]:
    """(log level, line) about one backend after its first probe."""
    config = backend.config
    head = f"backend {backend.name} ({backend.kind}, {config.base_url})"
    if backend.probed and backend.probe_ok:
        if not backend.models:
            return logging.WARNING, (
                f"{head}: answered, but lists no models. Pull or load one (Ollama: "
                "`ollama pull llama3.2`), or name them in backends[].models."
            )
        shown = ", ".join(backend.models[:6]) + (", ..." if len(backend.models) > 6 else "")
        return logging.INFO, f"{head}: answered; models: {shown}"
    error = backend.probe_error
    if error is None:
        why = f"no answer within {settings.health.timeout_s:g} s"
    else:
        why = str(error) or type(error).__name__
    return logging.WARNING, (
        f"{head}: did not answer its first probe (GET {BackendPool.probe_url(backend)}: {why}). "
        f"{_what_to_check(backend, error, settings)} Until it answers, requests go to the other "
        f"backends; it is probed again every {settings.health.interval_s:g} s."
    )


def _what_to_check(backend: Backend, error: Exception | None, settings: Settings) -> str:
    config = backend.config
    text = str(error or "")
    if text.startswith(("HTTP 401", "HTTP 403")):
        source = "api_key_file" if config.api_key_file else "api_key_env"
        if not (config.api_key_file or config.api_key_env):
            return "Check: it wants an API key; set backends[].api_key_file or api_key_env."
        return f"Check: the upstream refused the key from backends[].{source}."
    if text.startswith("HTTP 404"):
        return (
            "Check: base_url must be the OpenAI API root, usually ending in /v1 "
            "(Ollama: http://HOST:11434/v1, TabbyAPI: http://HOST:5000/v1)."
        )
    if text.startswith("HTTP "):
        return "Check the upstream's own logs."
    if isinstance(error, UpstreamTimeout) or error is None:
        return (
            "Check: the server may be busy or loading a model, or a firewall drops the "
            f"connection; health.timeout_s is {settings.health.timeout_s:g} s."
        )
    return (
        "Check: is the server running and listening on that address and port (Ollama on another "
        "host: OLLAMA_HOST=0.0.0.0 there), can this machine reach it (firewall), and is "
        "base_url right?"
    )


async def report_when_probed(runtime: Runtime, host: str, port: int) -> None:
    """Log where the server listens, then, after the first probe, what each backend said."""
    root, base = urls(host, port)
    log.info("hydra-coordinator %s serving on %s", __version__, root)
    log.info(
        'OpenAI base URL for clients: %s (model "auto", "local", "cloud" or one a backend serves)',
        base,
    )
    pool = runtime.pool
    if pool.first_probe is not None:
        await asyncio.wait({pool.first_probe}, timeout=runtime.settings.health.timeout_s + 1.0)
    for backend in pool:
        level, line = backend_report(backend, runtime.settings)
        log.log(level, "%s", line)
    if not any(b.probed and b.probe_ok for b in pool):
        log.warning(
            "no backend answered yet: requests get 503 until one does "
            "(configuration: docs/configuration.md, examples/)"
        )
