"""One logging format for every process; configured only by the CLI entry points.

Every line goes through config.redact: a password in a store URL or an option never
reaches a log file, whichever module logged it (a driver's error message included).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from analytics.config import redact

__all__ = ["setup_logging", "component_format", "LOG_FORMAT", "RedactingFormatter"]

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s[%(process)d]: %(message)s"


def component_format(component: str) -> str:
    """LOG_FORMAT with the component's name in front of the logger's (daemons of `analytics start`)."""
    return LOG_FORMAT.replace("%(name)s", component.replace("%", "%%") + " %(name)s", 1)


class RedactingFormatter(logging.Formatter):
    """A Formatter whose lines (message and traceback) have their secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: str = "INFO", file: str | Path | None = None, stderr: bool = True,
                  component: str | None = None) -> None:
    """Log to stderr (foreground) and/or a file (daemons), one line per event.

    With `component`, every line carries that name (one log file per component,
    but lines are often grepped together).
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = RedactingFormatter(component_format(component) if component else LOG_FORMAT)
    if stderr:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(fmt)
        root.addHandler(h)
    if file is not None:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(file)
        fh.setFormatter(fmt)
        root.addHandler(fh)
    root.setLevel(level.upper())
