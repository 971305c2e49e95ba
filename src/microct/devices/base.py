"""What every device shares: lifecycle, state checks and the completion status of started operations.

Pattern (from python-microscope): public methods check arguments and state,
then call ``_do_*`` hooks that a driver implements. ``__init__`` does no I/O,
so a device can be built and its capabilities checked before anything connects.
"""

from __future__ import annotations

import abc
import logging
import threading
from typing import Any, ClassVar

from microct.clock import Clock
from microct.errors import DeviceStateError, MicroCTError

log = logging.getLogger("microct.devices")


class Status:
    """Completion of a started operation (for example a move).

    ``wait()`` blocks through the device's clock and re-raises the operation's
    error. A driver calls ``set_done()`` (with an error if it failed) once.
    """

    def __init__(self, clock: Clock, what: str) -> None:
        self._clock = clock
        self._what = what
        self._event = threading.Event()
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def set_done(self, error: BaseException | None = None) -> None:
        if not self._event.is_set():
            self._error = error
            self._event.set()

    def wait(self, timeout_s: float | None = None) -> None:
        """Block until done. Raises DeviceTimeoutError after ``timeout_s``, or the operation's error."""
        self._clock.wait_for(self._event, timeout_s, self._what)
        if self._error is not None:
            raise self._error


class Device(abc.ABC):
    """Base of all instruments: ``connect()`` / ``close()`` and context-manager use.

    ``close()`` is safe to call twice and after a failed ``connect()``.
    """

    kind: ClassVar[str]
    """Device kind: "source", "axis" or "detector"."""
    backend: ClassVar[str]
    """How the driver reaches its device, for ``microct drivers``: "serial", "VISA", "EPICS", "in-process"."""

    def __init__(self, name: str, clock: Clock | None = None) -> None:
        self.name = name
        self.clock = clock or Clock()
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        """Open the link and identify the device. Raises CommunicationError or DeviceTimeoutError.

        If a step after opening the link fails, the link is closed again and the
        device stays disconnected, so that ``connect()`` can simply be retried.
        """
        if self._connected:
            return
        self._do_connect()
        try:
            self._after_connect()
        except BaseException:
            try:
                self._do_close()
            except Exception as error:  # the first failure is the one to report
                log.warning("%s %r: closing after a failed connect also failed: %s", self.kind, self.name, error)
            raise
        self._connected = True

    def _after_connect(self) -> None:
        """Bring base-class state and device into agreement once the link is open (interfaces override)."""

    def close(self) -> None:
        """Leave the device safe and release the link. Never raises for "already closed"."""
        if not self._connected:
            return
        try:
            self._do_close()
        finally:
            self._connected = False

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """Identity and status for ``microct check``: a flat mapping of readable values."""
        self._require_connected()
        return {"name": self.name, "driver": type(self).__name__, **self._do_describe()}

    def _require_connected(self) -> None:
        if not self._connected:
            raise DeviceStateError(f"{self.kind} {self.name!r}: not connected (call connect() first)")

    def _error(self, cls: type[MicroCTError], message: str) -> MicroCTError:
        """An error of ``cls`` whose message starts with this device's kind and name."""
        return cls(f"{self.kind} {self.name!r}: {message}")

    @abc.abstractmethod
    def _do_connect(self) -> None: ...

    @abc.abstractmethod
    def _do_close(self) -> None: ...

    @abc.abstractmethod
    def _do_describe(self) -> dict[str, Any]: ...
