"""Running the app under uvicorn (uvloop when installed, httptools with connection limits)."""

from __future__ import annotations

import asyncio
import logging
import math
import socket

import uvicorn
from fastapi import FastAPI

from .app import create_app
from .config import Settings
from .connections import effective_max_connections, guarded_protocol, raise_fd_limit
from .logs import setup_logging
from .runtime import Runtime
from .startup import listen_socket, report_when_probed

__all__ = ["run", "uvicorn_config"]

log = logging.getLogger("hydra_coordinator")


class _Server(uvicorn.Server):
    """uvicorn's server, which says what it serves once it listens (see :mod:`.startup`)."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.report: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and sockets:
            port = sockets[0].getsockname()[1]
            self.report = asyncio.create_task(
                report_when_probed(self.runtime, self.config.host, port),
                name="hydra-startup-report",
            )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.report is not None:
            self.report.cancel()
        await super().shutdown(sockets)


def uvicorn_config(settings: Settings, app: FastAPI) -> uvicorn.Config:
    """The server's configuration: ``serve`` and the tests run the app with exactly this."""
    limits = settings.limits
    fd_limit = raise_fd_limit()
    max_connections = effective_max_connections(limits.max_connections, fd_limit)
    if max_connections < limits.max_connections:
        log.warning(
            "limits.max_connections is %d, but the file descriptor limit is %d: allowing %d "
            "connections (raise LimitNOFILE)",
            limits.max_connections,
            fd_limit,
            max_connections,
        )
    refused = app.state.runtime.metrics.connections_refused
    return uvicorn.Config(
        app,
        host=settings.listen.host,
        port=settings.listen.port,
        loop="auto",
        http=guarded_protocol(limits, max_connections, lambda r: refused.labels(r).inc()),
        lifespan="on",
        access_log=False,  # one structured line per request comes from the coordinator itself
        log_config=None,  # setup_logging's handlers and levels (uvicorn's: warnings and up)
        log_level=None,
        server_header=False,
        date_header=False,
        timeout_keep_alive=max(1, math.ceil(limits.idle_timeout_s)),
        timeout_graceful_shutdown=max(1, math.ceil(limits.shutdown_timeout_s)),
    )


def run(settings: Settings) -> None:
    """Serve until stopped. A port that is taken raises :class:`~.startup.ListenError`."""
    setup_logging(settings.log.level, settings.log.access)
    sock = listen_socket(settings.listen.host, settings.listen.port)
    app = create_app(settings)
    _Server(uvicorn_config(settings, app), app.state.runtime).run(sockets=[sock])
