"""The transport interface a protocol driver talks through (serial, VISA, TCP)."""

from __future__ import annotations

import abc


class Transport(abc.ABC):
    """A message link to one device: whole messages out, whole replies back, terminators handled here.

    ``query`` is atomic (one lock per physical port), so several drivers may share
    a port, as the devices of a Zaber daisy chain do. Errors: CommunicationError
    (port missing or lost), DeviceTimeoutError (no complete reply in time).
    """

    name: str

    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Release the link; safe to call twice."""

    @abc.abstractmethod
    def write(self, message: bytes) -> None:
        """Send ``message`` followed by the write terminator."""

    @abc.abstractmethod
    def read_reply(self, what: str) -> bytes:
        """The next reply without its terminator; ``what`` names the command in a timeout error."""

    @abc.abstractmethod
    def query(self, message: bytes, replies: int = 1) -> list[bytes]:
        """Discard stale input, send ``message``, return the next ``replies`` replies, all under the port lock."""
