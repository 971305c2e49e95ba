"""What every device shares: lifecycle, state checks and the completion status of started operations.

Pattern (from python-microscope): public methods check arguments and state,
then call ``_do_*`` hooks that a driver implements. ``__init__`` does no I/O,
so a device can be built and its capabilities checked before anything connects.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar, get_args

from pydantic import BaseModel

from microct.clock import Clock
from microct.errors import DeviceStateError, MicroCTError, reworded
from microct.options import DriverOptions

log = logging.getLogger("microct.devices")

E = TypeVar("E", bound=BaseException)
D = TypeVar("D", bound="Device")


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
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[Status], None]] = []

    @property
    def what(self) -> str:
        """The operation, as named in errors ("axis 'rotation': move to 10 deg")."""
        return self._what

    @property
    def done(self) -> bool:
        return self._event.is_set()

    @property
    def error(self) -> BaseException | None:
        """The error the operation ended with; None while it runs or if it succeeded."""
        return self._error

    def set_done(self, error: BaseException | None = None) -> bool:
        """End the operation (with ``error`` if it failed). Only the first call counts: it returns True,
        later calls False. Callbacks run in the calling thread."""
        with self._lock:
            if self._event.is_set():
                return False
            self._error = error
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:  # a callback must not keep the others from running
                log.exception("a callback of %s failed", self._what)
        return True

    def add_callback(self, callback: Callable[[Status], None]) -> None:
        """Call ``callback(status)`` once the operation ends (at once if it has)."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback(self)

    def wait(self, timeout_s: float | None = None) -> None:
        """Block until done. Raises DeviceTimeoutError after ``timeout_s``, or the operation's error."""
        self._clock.wait_for(self._event, timeout_s, self._what)
        if self._error is not None:
            raise self._error


FindingLevel = Literal["ok", "warning", "error"]
"""How a commissioning finding stands: "ok"; "warning", needs attention but a scan may still run (not
homed, interlock open, warm-up needed); "error", the device cannot be used as it is (a fault, no link)."""


@dataclass(frozen=True)
class Finding:
    """One line of a device's commissioning report (``Device.check``, ``microct check``): its ``level``,
    the ``item`` checked (a ``describe()`` key, a status word, a flag) and ``text``, the value and what it
    means in words ("WR: no reference position (home needed)")."""

    level: FindingLevel
    item: str
    text: str

    def __post_init__(self) -> None:
        if self.level not in get_args(FindingLevel):
            raise ValueError(f"level={self.level!r}: allowed {list(get_args(FindingLevel))}")


def shown(value: Any) -> str:
    """A read value as a report shows it: numbers to 6 significant digits, None (no limit, not read) as
    "none"."""
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(shown(item) for item in value) + ")"
    return str(value)


class NoOptions(DriverOptions):
    """The options of a driver that takes none."""


@dataclass
class DriverContext:
    """What every driver built from a configuration gets besides its own options: the clock all the
    instruments of one scan share. An environment (see ``microct.environment``) may hand its drivers
    a subclass carrying more (the simulated bench of the in-process simulators)."""

    clock: Clock = field(default_factory=Clock)


class Device(abc.ABC):
    """Base of all instruments: ``connect()`` / ``close()`` and context-manager use.

    ``close()`` is safe to call twice and after a failed ``connect()``.

    A driver declares ``backend``, an ``Options`` pydantic model (its ``[role.options]`` table) and
    takes ``(name, options, connection, *, clock=...)`` in ``__init__``, which must do no I/O; the
    default ``from_config`` builds it so. ``connect()`` runs ``_do_connect`` (open the link, identify
    the device) and then ``_after_connect`` (the interface's: send held settings); if either fails,
    ``_do_close`` runs, so ``_do_close`` must be safe on a half-open link.
    """

    kind: ClassVar[str]
    """Device kind: "source", "axis" or "detector"."""
    backend: ClassVar[str]
    """How the driver reaches its device, for ``microct drivers``: "serial", "VISA", "EPICS", "in-process"."""
    Options: ClassVar[type[BaseModel]] = NoOptions
    """The pydantic model of the driver's options (``[role.options]`` of a scan configuration)."""
    environment: ClassVar[str | None] = None
    """The environment the driver lives in, if any: a name in the entry-point group
    ``microct.environments`` (the in-process simulators: "simulation"). None for real drivers."""

    @classmethod
    def from_config(cls: type[D], name: str, options: Any, connection: str | None, context: DriverContext) -> D:
        """Build the device a configuration describes (no I/O): ``cls(name, options, connection,
        clock=context.clock)``. Override it if the constructor takes something else."""
        factory: Any = cls  # a driver's own __init__ signature, not Device's
        built: D = factory(name, options, connection, clock=context.clock)
        return built

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
        try:
            self._do_connect()
            self._after_connect()
        except BaseException:
            try:
                self._do_close()
            except Exception as error:  # the first failure is the one to report
                log.warning("%s %r: closing after a failed connect also failed: %s", self.kind, self.name, error)
            raise
        self._connected = True

    def _after_connect(self) -> None:  # noqa: B027 - a hook with nothing to do by default, not abstract
        """Bring base-class state and device into agreement once the link is open (interfaces override)."""

    def close(self) -> None:
        """Leave the device safe and release the link (interfaces add the safe state: beam off, stop).
        Never raises for "already closed"."""
        self.release()

    def release(self) -> None:
        """Release the link without the safe-state actions of ``close()`` (no beam off, no stop): for a
        session that started nothing on the device and must send it nothing but queries, as ``microct
        check`` (a beam or a move another client runs is left alone). Never raises for "already released"."""
        if not self._connected:
            return
        try:
            self._do_close()
        finally:
            self._connected = False

    def __enter__(self: D) -> D:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """Identity and status for ``microct check``: a flat mapping of readable values."""
        self._require_connected()
        return {"name": self.name, "driver": type(self).__name__, **self._do_describe()}

    def check(self) -> list[Finding]:
        """The device's commissioning report, read-only (queries only, nothing set): one "ok" Finding per
        ``describe()`` entry, in order, where ``_do_check`` puts what the device's codes mean (a finding for
        an item of ``describe()`` replaces its line, others follow it). DeviceStateError if not connected;
        a failed exchange raises the driver's error (the caller reports it as the device's error)."""
        findings = [Finding("ok", key, shown(value)) for key, value in self.describe().items()]
        replaced: set[str] = set()
        for finding in self._do_check():
            lines = [i for i, line in enumerate(findings) if line.item == finding.item]
            if lines and finding.item not in replaced:
                findings[lines[0]] = finding
                replaced.add(finding.item)
            else:
                findings.insert(lines[-1] + 1 if lines else len(findings), finding)
        return findings

    def _do_check(self) -> list[Finding]:
        """What the device reports, judged and in words, for ``check()``: interfaces add their generic
        findings (a source's state, an axis' reference), drivers extend them (``[*super()._do_check(),
        ...]``) with their codes' meanings (the tables in their codec). Queries only: never a set-point,
        an action or a move. Default: none."""
        return []

    def _require_connected(self) -> None:
        if not self._connected:
            raise DeviceStateError(f"{self.kind} {self.name!r}: not connected (call connect() first)")

    @property
    def who(self) -> str:
        """How errors and logs name this device: ``source 'tube'``."""
        return f"{self.kind} {self.name!r}"

    def _error(self, cls: type[MicroCTError], message: str) -> MicroCTError:
        """An error of ``cls`` whose message starts with this device's kind and name."""
        return cls(f"{self.who}: {message}")

    def _named(self, error: E) -> E:
        """``error`` (same class and attributes) with its message starting with this device's kind and name."""
        return reworded(error, f"{self.who}: {error}")

    @abc.abstractmethod
    def _do_connect(self) -> None: ...

    @abc.abstractmethod
    def _do_close(self) -> None: ...

    @abc.abstractmethod
    def _do_describe(self) -> dict[str, Any]: ...


def check_device(device: Device) -> list[Finding]:
    """``device``'s commissioning report, never raising: connect, ``check()``, then ``release()`` (no
    safe-state actions: nothing was started). A failure is the report's one "error" Finding, naming the
    step ("connect" or "status") and the error; the link is released whatever happens. Writes nothing to
    the device (connect and check send queries only)."""
    try:
        device.connect()
    except Exception as error:
        if not isinstance(error, MicroCTError):
            log.debug("%s: connect failed", device.who, exc_info=True)
        return [Finding("error", "connect", f"{type(error).__name__}: {error}")]
    try:
        return device.check()
    except Exception as error:
        if not isinstance(error, MicroCTError):
            log.debug("%s: check failed", device.who, exc_info=True)
        return [Finding("error", "status", f"{type(error).__name__}: {error}")]
    finally:
        try:
            device.release()
        except Exception as error:  # the report is what matters; the link is gone either way
            log.warning("%s: releasing the link failed: %s", device.who, error)
