"""Running the app under uvicorn (uvloop and httptools when installed)."""

from __future__ import annotations

import asyncio
import socket

import uvicorn

from .app import create_app
from .config import Settings
from .logs import setup_logging
from .runtime import Runtime
from .startup import listen_socket, report_when_probed

__all__ = ["run"]


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


def run(settings: Settings) -> None:
    """Serve until stopped. A port that is taken raises :class:`~.startup.ListenError`."""
    setup_logging(settings.log.level, settings.log.access)
    sock = listen_socket(settings.listen.host, settings.listen.port)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.listen.host,
        port=settings.listen.port,
        loop="auto",
        http="auto",
        lifespan="on",
        access_log=False,  # one structured line per request comes from the coordinator itself
        log_config=None,  # setup_logging's handlers and levels (uvicorn's: warnings and up)
        log_level=None,
        server_header=False,
        date_header=False,
    )
    _Server(config, app.state.runtime).run(sockets=[sock])
