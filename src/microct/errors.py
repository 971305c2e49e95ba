"""The exception hierarchy: every error microct raises derives from MicroCTError.

Subclasses also derive from the matching built-in exception, so that callers
may catch either (``except TimeoutError`` catches a device time-out).
"""


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


class FrameLostError(ProtocolError):
    """A detector made a frame that never reached us (dropped by a plugin, a queue, the network)."""


class DeviceStateError(MicroCTError):
    """The device is not in a state that allows the request (not connected, warm-up needed)."""


class InterlockError(DeviceStateError):
    """The X-ray interlock is open: the beam cannot be (or no longer is) on."""


class DeviceFaultError(MicroCTError):
    """The device reports a fault (tube overload or arc, stage stall, detector failure)."""


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
