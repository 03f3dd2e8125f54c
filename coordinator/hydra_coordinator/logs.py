"""Logging: one structured JSON line per request (no prompt text), plain lines otherwise."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import orjson

__all__ = ["access_log", "setup_logging"]

_access = logging.getLogger("hydra_coordinator.access")
# The handler setup_logging installs for access lines. While it is the logger's only handler,
# access_log writes the line to its stream itself: the same bytes, without building a LogRecord
# (the logging machinery was ~5% of the CPU per proxied request, see bench/).
_lines: logging.StreamHandler[TextIO] | None = None


FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str, access: bool = True) -> None:
    """Every log line in one format on stderr: the coordinator's at ``level``, the libraries'
    (uvicorn, the MCP SDK, ...) from WARNING up (DEBUG with ``level`` debug).

    The root logger gets the coordinator's handler too: a library that logs through the root
    logger (``logging.debug(...)``, as the MCP SDK does) or calls ``logging.basicConfig()``
    would otherwise install a handler of its own, in another format, the first time."""
    global _lines  # noqa: PLW0603
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    libraries = logging.DEBUG if level.lower() == "debug" else logging.WARNING
    top = logging.getLogger()
    top.handlers[:] = [handler]
    top.setLevel(libraries)
    logging.captureWarnings(True)  # a library's warnings.warn() too, as a WARNING line
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logging.getLogger(name).setLevel(logging.NOTSET)  # the root's level
    root = logging.getLogger("hydra_coordinator")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    lines = logging.StreamHandler(sys.stderr)
    lines.setFormatter(logging.Formatter("%(message)s"))
    _access.handlers[:] = [lines]
    _lines = lines
    _access.propagate = False
    _access.setLevel(logging.INFO if access else logging.WARNING)


def access_log(**fields: Any) -> None:
    if not _access.isEnabledFor(logging.INFO):
        return
    line = orjson.dumps({"event": "request", **fields}).decode()
    handlers = _access.handlers
    if _lines is not None and len(handlers) == 1 and handlers[0] is _lines and not _access.filters:
        try:
            _lines.stream.write(line + _lines.terminator)
            _lines.flush()
        except Exception:
            _lines.handleError(
                _access.makeRecord(_access.name, logging.INFO, "", 0, line, (), None)
            )
        return
    _access.info(line)
