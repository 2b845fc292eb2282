"""One logging format for every process; configured only by the CLI entry points."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

__all__ = ["setup_logging", "LOG_FORMAT"]

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s[%(process)d]: %(message)s"


def setup_logging(level: str = "INFO", file: str | Path | None = None, stderr: bool = True) -> None:
    """Log to stderr (foreground) and/or a file (daemons), one line per event."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter(LOG_FORMAT)
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
