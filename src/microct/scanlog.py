"""The log of a scan, kept beside its file (``SCAN.nxs.log``) and stored in it at the end.

While a scan runs, every record of the ``microct`` loggers at ``level`` or above (INFO by default:
what ``microct -v`` shows) is appended to the log file; a resumed scan appends to the same file, so it
tells the whole story. ``text()`` is what the scan file stores as ``logs/log`` when it closes (the last
``IN_FILE_BYTES`` of it). For the time of the scan the ``microct`` logger lets records of ``level``
through; a console handler should set its own level (``microct`` the command does).
"""

from __future__ import annotations

import logging
from pathlib import Path

IN_FILE_BYTES = 4 * 1024 * 1024
"""At most this much of the log (its end) goes into the scan file; the log file keeps all of it."""
FORMAT = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"


class ScanLog:
    """A context manager: the log file's handler is attached while the scan runs (``with``)."""

    def __init__(self, path: str | Path, level: int = logging.INFO) -> None:
        self.path = Path(path)
        self.level = level
        self._handler: logging.Handler | None = None
        self._restore: int | None = None

    def __enter__(self) -> ScanLog:
        logger = logging.getLogger("microct")
        try:
            handler = logging.FileHandler(self.path, mode="a", encoding="utf-8")
        except OSError as error:  # the folder was checked writable; log why, but do not stop the scan for it
            logger.warning("cannot write the scan's log %s: %s", self.path, error)
            return self
        handler.setLevel(self.level)
        handler.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(handler)
        self._handler = handler
        if logger.getEffectiveLevel() > self.level:
            self._restore = logger.level
            logger.setLevel(self.level)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logger = logging.getLogger("microct")
        if self._handler is not None:
            logger.removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        if self._restore is not None:
            logger.setLevel(self._restore)
            self._restore = None

    def text(self) -> str:
        """The log so far (its last IN_FILE_BYTES); "" if there is none."""
        if self._handler is not None:
            self._handler.flush()
        try:
            with open(self.path, "rb") as stream:
                size = stream.seek(0, 2)
                stream.seek(max(size - IN_FILE_BYTES, 0))
                return stream.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
