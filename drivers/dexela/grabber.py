"""The frame channel's host end (this project's definition, in ``codec``): a folder the frame grabber
writes frame files into (``FolderChannel``, on the kit's ``FolderReader``), or its TCP frame stream
(``StreamChannel``, on the kit's ``StreamReader``). Both trigger frames as a grabber does.

Errors name the channel: CommunicationError (gone), DeviceTimeoutError "frame N did not come on the
CHANNEL within T s" (a frame not there in time), ProtocolError (a frame of the wrong size, or a header
that is not one).
"""

from __future__ import annotations

import abc
import logging
from pathlib import Path

import numpy as np

from microct.driverkit import Clock, CommunicationError, DeviceTimeoutError, FolderReader, ProtocolError, StreamReader
from microct.drivers.dexela.codec import (
    FRAME_HEADER,
    NO_FRAME,
    PIXEL_DTYPE,
    TRIGGER_SUFFIX,
    decode_pixels,
    encode_frame_request,
    frame_file_name,
    next_frame_number,
    parse_frame_header,
)

log = logging.getLogger("microct.drivers.dexela")


class FrameChannel(abc.ABC):
    """Where frames come from (see the module docstring for the errors)."""

    description: str

    @abc.abstractmethod
    def open(self) -> int:
        """Open the channel; returns the first frame number to use."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the channel; safe to call twice."""

    @abc.abstractmethod
    def request(self, number: int | None, wait_s: float = 0.0) -> None:
        """Software trigger of frame ``number``, or (None) ask for the next externally triggered frame,
        to come within ``wait_s`` (s)."""

    @abc.abstractmethod
    def receive(self, number: int, shape: tuple[int, int], timeout_s: float) -> tuple[int, np.ndarray]:
        """(frame number, uint16 pixels of ``shape``) of frame ``number``, or of the grabber's next one
        (external trigger; at least ``number``), within ``timeout_s`` (s)."""

    def _timeout(self, number: int, timeout_s: float, detail: str = "") -> DeviceTimeoutError:
        return DeviceTimeoutError(f"frame {number} did not come on the {self.description} within "
                                  f"{timeout_s:g} s{detail}")


class FolderChannel(FrameChannel):
    """Frame files in ``folder``, looked for every ``poll_interval_s`` (s) on ``clock`` (default: real time)."""

    def __init__(self, folder: str | Path, keep_files: bool = False, poll_interval_s: float = 0.002,
                 clock: Clock | None = None) -> None:
        self._files = FolderReader(folder, clock=clock, poll_s=poll_interval_s)
        self.folder = self._files.folder
        self.keep_files = keep_files
        self.description = self._files.description

    def open(self) -> int:
        """The first number after any frame file already there (older frames are never read)."""
        if not self.folder.is_dir():
            raise CommunicationError(f"{self.description} does not exist (the frame grabber writes there)")
        return next_frame_number(self._files.names())

    def close(self) -> None:
        pass  # nothing held open

    def request(self, number: int | None, wait_s: float = 0.0) -> None:
        if number is not None:
            try:
                self._files.path(frame_file_name(number, TRIGGER_SUFFIX)).touch()
            except OSError as error:
                raise CommunicationError(f"{self.description}: cannot write the trigger for frame {number}: "
                                         f"{error}") from None

    def receive(self, number: int, shape: tuple[int, int], timeout_s: float) -> tuple[int, np.ndarray]:
        """Frame ``number``: the grabber numbers on from its last frame, in either trigger mode. On a
        time-out the trigger is withdrawn, so that no late frame turns up for a later request."""
        name = frame_file_name(number)
        try:
            pixels = self._files.read(name, lambda path: decode_pixels(path.read_bytes(), shape,
                                                                        f"{self.description}: {name}"),
                                      timeout_s=timeout_s)
        except DeviceTimeoutError:
            self._files.remove(frame_file_name(number, TRIGGER_SUFFIX))
            raise self._timeout(number, timeout_s, f" (no file {name})") from None
        if not self.keep_files:
            self._files.remove(name)
        return number, pixels


class StreamChannel(FrameChannel):
    """Frames over TCP from ``host:port``. A connection that fails (CommunicationError) or falls out of
    step (ProtocolError: a header that is not one) is closed, and the next request connects anew, as
    the serial and VISA transports re-open a lost link: a retry recovers once the grabber is reachable."""

    def __init__(self, address: str, connect_timeout_s: float = 2.0) -> None:
        self._stream = StreamReader(address, connect_timeout_s=connect_timeout_s, peer="grabber")
        self.description = self._stream.description

    def open(self) -> int:
        self._stream.open()
        return 0

    def close(self) -> None:
        self._stream.close()

    def request(self, number: int | None, wait_s: float = 0.0) -> None:
        what = "the next frame" if number is None else f"frame {number}"
        self._stream.send(encode_frame_request(number, wait_s) + b"\r", what)

    def receive(self, number: int, shape: tuple[int, int], timeout_s: float) -> tuple[int, np.ndarray]:
        """The next frame numbered ``number`` or above (a late one below, after a time-out, is skipped). A
        frame cut short by a time-out stays buffered: the next call completes it (and skips it if late)."""
        what = f"frame {number}"
        deadline = self._stream.deadline(timeout_s)  # one for the frame, and any late frames skipped before it
        header_size = FRAME_HEADER.size
        while True:
            header = self._stream.peek(header_size, what, timeout_s, deadline=deadline)
            if header == NO_FRAME:
                self._stream.take(header_size)
                raise self._timeout(number, timeout_s, " (the grabber saw no trigger)")
            try:
                got, rows, columns = parse_frame_header(header)
            except ProtocolError as error:
                raise self._stream.drop(ProtocolError(f"{self.description}: {error}")) from None
            if (rows, columns) != shape:  # checked before reading: a garbled header may announce gigabytes
                raise self._stream.drop(ProtocolError(f"{self.description}: frame {got} is {rows} × {columns}, "
                                                      f"expected {shape[0]} × {shape[1]}"))
            size = header_size + rows * columns * PIXEL_DTYPE.itemsize
            self._stream.peek(size, what, timeout_s, deadline=deadline)
            data = self._stream.take(size)[header_size:]
            if got < number:
                log.warning("%s: skipped late frame %d", self.description, got)
                continue
            return got, decode_pixels(data, shape, f"{self.description}: frame {got}")
