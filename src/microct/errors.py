"""The exception hierarchy: every error microct raises derives from MicroCTError.

Subclasses also derive from the matching built-in exception, so that callers
may catch either (``except TimeoutError`` catches a device time-out).
"""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class MicroCTError(Exception):
    """Root of every error raised by microct."""


class ConfigurationError(MicroCTError, ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


class LimitError(MicroCTError, ValueError):
    """A requested value lies outside what the device allows (range, soft limit, power)."""


class CommunicationError(MicroCTError, ConnectionError):
    """The link to a device failed: not connected, connection lost, port missing."""


class DeviceTimeoutError(MicroCTError, TimeoutError):
    """A device did not answer, or an operation did not finish, in time."""


class ProtocolError(MicroCTError):
    """A device answered something the protocol does not allow (a bad or error reply)."""


class ErrorReply(ProtocolError):
    """The device refused a command with its protocol's error reply (Hamamatsu ``ERR``, a Spellman
    error code, a camserver ``ERR`` ...). ``code`` is the device's code (None where the protocol has
    none), ``meaning`` what the manual says it means, ``command`` what was sent. ``message`` replaces
    the default wording ``'CMD' was refused: error CODE (MEANING)``."""

    def __init__(self, code: int | str | None, meaning: str, command: str, message: str | None = None) -> None:
        self.code = code
        self.meaning = meaning
        self.command = command
        number = "" if code is None else f" with error {code}"
        super().__init__(message or f"{command!r} was refused{number} ({meaning})")

    def __reduce__(self):  # picklable although __init__ takes more than the message
        return type(self), (self.code, self.meaning, self.command, str(self))


class FrameLostError(ProtocolError):
    """A detector made a frame that never reached us (dropped by a plugin, a queue, the network)."""


class DeviceStateError(MicroCTError):
    """The device is not in a state that allows the request (not connected, warm-up needed)."""


class InterlockError(DeviceStateError):
    """The X-ray interlock is open: the beam cannot be (or no longer is) on."""


class DeviceFaultError(MicroCTError):
    """The device reports a fault (tube overload or arc, stage stall, detector failure)."""


class ReferenceCheckError(MicroCTError, RuntimeError):
    """The darks and flats of a scan do not look right (flats dark, darks lit): the scan stops before its
    projections (``scan.reference_check``)."""


class ScanAborted(MicroCTError):
    """A scan stopped on an error before its end; the cause is ``__cause__``.

    ``path`` is the file, kept and marked aborted, holding ``frames_written`` frames.
    (Ctrl-C and SIGTERM stop a scan the same way but propagate as KeyboardInterrupt
    and SystemExit.)
    """

    def __init__(self, message: str, path: object = None, frames_written: int = 0) -> None:
        super().__init__(message)
        self.path = path
        self.frames_written = frames_written


class LockedError(MicroCTError, BlockingIOError):
    """Another live process owns what we asked to lock (a scan file, an instrument's connection).

    ``path`` is the lock file; ``holder`` the owner's record as it wrote it (``pid``, ``host``, ``user``,
    ``command``, ``what``, ``started``), or None if it could not be read. The message names what is
    locked, the holder and what to do. (BlockingIOError, as ``flock`` itself raises for a held lock.)
    """

    def __init__(self, message: str, path: object = None, holder: dict | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.holder = holder

    def __reduce__(self):  # picklable although __init__ takes more than the message
        return type(self), (str(self), self.path, self.holder)


def reworded(error: E, message: str) -> E:
    """A copy of ``error`` (same class, same attributes) whose message is ``message``: for adding
    context (the device, the operation) without losing what the error carries."""
    new = type(error).__new__(type(error))
    new.__dict__.update(error.__dict__)
    new.args = (message,)
    return new
