"""Running the app under uvicorn (uvloop and httptools when installed)."""

from __future__ import annotations

import uvicorn

from .app import create_app
from .config import Settings
from .logs import setup_logging

__all__ = ["run"]


def run(settings: Settings) -> None:
    setup_logging(settings.log.level, settings.log.access)
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
    uvicorn.Server(config).run()
