"""The scan journal: an append-only record beside the NXtomo file, from which a crashed scan is rebuilt.

An HDF5 file written in place is not crash-safe: a process killed while the HDF5 library flushes its
metadata can leave a file that does not open. The frames' pixels are safe, though: each frame is one
chunk written straight to the file (``write_direct_chunk``), at an offset that never changes. So the
writer keeps, beside ``scan.nxs``, a journal ``scan.nxs.journal`` of JSON lines:

- a header (the scan's configuration and ScanHeader), written to a temporary name and renamed, so a
  journal always starts whole;
- per frame, written after its pixels: its FrameInfo and where its chunk lies (byte offset, size)
  — or, for a detector that writes its own files, the file location;
- events and tube read-backs, as logged.

Each line ends with the CRC-32 of its text and goes out in one ``write`` on an ``O_APPEND`` file, so
a kill leaves at most one torn last line, which the reader drops (and everything after a damaged line:
frames count from 0 with no gap). A frame's line is written after its pixels, so every frame the
journal names is in the file after the process is killed at any instant.

A power cut also loses what the operating system had not yet written to the disk, in any order. A
``JournalWriter`` given ``before_commit`` (the NXtomo writer's fsync of the scan file) therefore holds
its lines back and writes them at ``commit()``, after ``before_commit`` has put on the disk everything
they describe: after a power cut the journal names no frame whose pixels are not on the disk. The
writer commits at each flush (every ``flush_interval_s``), so a crash loses at most the frames of the
last interval, which a resumed scan takes again.
A scan that completes deletes its journal; an aborted one keeps it for ``--resume``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from microct.devices.detector import FrameFile
from microct.errors import MicroCTError
from microct.geometry import Geometry

JOURNAL_VERSION = 1


def journal_path(output: str | Path) -> Path:
    """The journal that belongs to a scan file."""
    return Path(f"{output}.journal")


_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=True).encode  # made once: dumps() makes one a call


def _line(record: dict[str, Any]) -> bytes:
    text = _ENCODE(record)
    return f"{text}\t{zlib.crc32(text.encode()):08x}\n".encode()


def _parse(line: bytes) -> dict[str, Any] | None:
    """The record of one journal line, or None if the line is torn or damaged."""
    try:
        text, crc = line.decode().rstrip("\n").rsplit("\t", 1)
        if not line.endswith(b"\n") or int(crc, 16) != zlib.crc32(text.encode()):
            return None
        return json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return None


class JournalWriter:
    """Appends records to ``path``; the header is written first, whole (temporary name + rename) and
    synced. Without ``before_commit`` each record is written as it comes; with it, records wait for
    ``commit()`` (see the module docstring)."""

    def __init__(self, path: str | Path, header: dict[str, Any],
                 before_commit: Callable[[], None] | None = None) -> None:
        self.path = Path(path)
        self._before_commit = before_commit
        self._pending: list[bytes] = []
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(temporary, "wb") as stream:
                stream.write(_line({"t": "header", "version": JOURNAL_VERSION, **header}))
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as error:
            raise MicroCTError(f"cannot write the scan journal {self.path}: {error.strerror or error}") from None

    def append(self, record: dict[str, Any]) -> None:
        if self._before_commit is not None:
            self._pending.append(_line(record))
            return
        self._write(_line(record))

    def commit(self) -> None:
        """Write the records held back, in one ``write``, once ``before_commit`` has returned."""
        if self._pending:
            if self._before_commit is not None:
                self._before_commit()
            self._write(b"".join(self._pending))
            self._pending.clear()

    def _write(self, lines: bytes) -> None:
        try:
            os.write(self._fd, lines)
        except OSError as error:
            raise MicroCTError(f"writing the scan journal {self.path} failed: {error}") from None

    def close(self, remove: bool) -> None:
        """Close (records not committed are dropped: what they describe may not be on the disk);
        ``remove`` deletes the journal (the scan file is complete and needs it no more)."""
        if self._fd < 0:
            return
        os.close(self._fd)
        self._fd = -1
        if remove:
            self.path.unlink(missing_ok=True)


@dataclass
class JournalFrame:
    index: int
    info: dict[str, Any]
    offset: int = -1
    nbytes: int = 0
    file: FrameFile | None = None


@dataclass
class Journal:
    """What a journal holds: the header, then frames (0..n−1, no gap), events (``time``, ``frame``,
    ``message``) and read-backs (``time``, ``kv``, ``ua``, ``angle``) as ("frame" | "event" |
    "reading", record) entries in the order they were logged."""

    header: dict[str, Any]
    entries: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def frames(self) -> list[JournalFrame]:
        return [record for kind, record in self.entries if kind == "frame"]


def _header(path: Path, first_line: bytes | None) -> dict[str, Any]:
    header = _parse(first_line) if first_line else None
    if header is None or header.get("t") != "header" or header.get("version") != JOURNAL_VERSION:
        raise MicroCTError(f"{path} is not a microct scan journal (version {JOURNAL_VERSION})")
    return header


def read_journal_header(path: str | Path) -> dict[str, Any]:
    """Only the header of a journal (its first line); MicroCTError as ``read_journal``."""
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            return _header(path, stream.readline())
    except OSError as error:
        raise MicroCTError(f"cannot read the scan journal {path}: {error}") from None


def read_journal(path: str | Path) -> Journal:
    """Read a journal, dropping a torn last line; MicroCTError if it has no whole header."""
    path = Path(path)
    try:
        lines = path.read_bytes().splitlines(keepends=True)
    except OSError as error:
        raise MicroCTError(f"cannot read the scan journal {path}: {error}") from None
    journal = Journal(_header(path, lines[0] if lines else None))
    frames = 0
    for line in lines[1:]:
        record = _parse(line)
        if record is None:
            break  # torn (the last line of a killed process) or damaged: nothing after it is trusted
        kind = record.pop("t", None)
        if kind == "frame":
            if record.get("i") != frames:
                break
            file = record.get("file")
            journal.entries.append((kind, JournalFrame(frames, record["info"], record.get("offset", -1),
                                                       record.get("nbytes", 0), FrameFile(**file) if file else None)))
            frames += 1
            continue
        if kind not in ("event", "reading"):
            break
        journal.entries.append((kind, record))
    return journal


def header_record(scan_header: Any, data_file: str) -> dict[str, Any]:
    """The journal header for a ScanHeader (a dataclass holding a Geometry and the scan's configuration)."""
    fields = {f.name: getattr(scan_header, f.name) for f in dataclasses.fields(scan_header)
              if f.name != "configuration"}
    fields["geometry"] = dataclasses.asdict(scan_header.geometry)
    fields["frame_shape"] = list(scan_header.frame_shape)
    return {"data_file": data_file, "scan_header": fields, "configuration": scan_header.configuration}


def scan_header_fields(journal: Journal) -> dict[str, Any]:
    """ScanHeader keyword arguments from a journal header."""
    fields = dict(journal.header["scan_header"])
    fields["geometry"] = Geometry(**fields["geometry"])
    fields["frame_shape"] = tuple(fields["frame_shape"])
    fields["configuration"] = journal.header.get("configuration", {})
    return fields
