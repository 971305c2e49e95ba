"""The scan file before a scan: what is at the output path, and whether a scan can be written there.

Everything here reads the file system only, so ``microct scan`` checks it before any instrument
connects: the folder exists and is writable, the output is not a folder, the disk has room for the
planned frames, and a file that is already there is a scan (complete, interrupted, or interrupted
before its first frame) or something else.
"""

from __future__ import annotations

import enum
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py

from microct.errors import ConfigurationError, MicroCTError
from microct.journal import journal_path, read_journal
from microct.resume import resumable_journal

DISK_MARGIN = 1.10
"""Planned bytes × this must fit on the disk (HDF5 metadata, the journal, the per-frame fields)."""
DISK_TIGHT = 0.8
"""A scan that needs more than this share of the free space gets a warning."""
HEADER_BYTES = 1 << 20
"""What a scan file holds besides its frames, at most (header, per-frame fields, logs)."""


class OutputState(enum.Enum):
    """What is at a scan's output path."""

    ABSENT = "absent"
    COMPLETE = "complete"  # a microct scan that finished
    INTERRUPTED = "interrupted"  # a journal: an aborted or killed scan, with frames to resume
    EMPTY = "interrupted before its first frame"  # a journal with no frame (Ctrl-C during warm-up, say)
    OTHER = "not a microct scan"


@dataclass(frozen=True)
class Output:
    """The output path, what is there and, for an interrupted scan, how many frames it keeps."""

    path: Path
    state: OutputState
    frames: int = 0
    detail: str = ""


def inspect_output(path: str | Path) -> Output:
    """What is at ``path`` (reads, never writes); ConfigurationError if it is a folder."""
    path = Path(path)
    _refuse_folder(path)
    try:
        journal = resumable_journal(path)
    except MicroCTError:
        journal = None
    if journal is not None:
        try:
            frames = len(read_journal(journal).frames)
        except MicroCTError as error:
            return Output(path, OutputState.OTHER, detail=str(error))
        return Output(path, OutputState.INTERRUPTED if frames else OutputState.EMPTY, frames)
    if not path.exists():
        return Output(path, OutputState.ABSENT)
    status, frames = _nxtomo_status(path)
    if status == "complete":
        return Output(path, OutputState.COMPLETE, frames)
    why = f"its status is {status!r} and it has no journal to resume from" if status else "it is not an NXtomo file " \
                                                                                          "written by microct"
    return Output(path, OutputState.OTHER, frames, why)


def _nxtomo_status(path: Path) -> tuple[str | None, int]:
    """(``logs/status``, frames) of a microct NXtomo file; (None, 0) if it is not one."""
    try:
        with h5py.File(path, "r") as file:
            entry = file.get("entry")
            if entry is None or file.attrs.get("creator") != "microct":
                return None, 0
            status = entry["logs/status"][()]
            keys = entry.get("instrument/detector/image_key")
            return (status.decode() if isinstance(status, bytes) else str(status)), (0 if keys is None
                                                                                    else len(keys))
    except (OSError, KeyError):
        return None, 0


def check_writable(path: str | Path) -> None:
    """ConfigurationError unless a scan file can be created at ``path``: the folder exists and is writable,
    and ``path`` is not a folder."""
    path = Path(path)
    _refuse_folder(path)
    folder = path.parent
    if not folder.exists():
        raise ConfigurationError(f"output {path}: the folder {folder} does not exist; create it first or choose "
                                 f"another with -o")
    if not folder.is_dir():
        raise ConfigurationError(f"output {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigurationError(f"output {path}: the folder {folder} is not writable by this user; choose "
                                 f"another with -o")
    for neighbour in (journal_path(path), path.with_name(path.name + ".log")):
        if neighbour.is_dir():
            raise ConfigurationError(f"output {path}: {neighbour} is a folder; the scan writes a file there")


def _refuse_folder(path: Path) -> None:
    if path.is_dir():
        raise ConfigurationError(f"output {path} is a folder; name a file in it, e.g. {path / 'scan.nxs'}")


def check_disk_space(path: str | Path, planned_bytes: int) -> str | None:
    """ConfigurationError if the disk of ``path``'s folder cannot hold ``planned_bytes`` (with
    DISK_MARGIN); a warning (text) if it would be more than DISK_TIGHT full of the free space; else None."""
    path = Path(path)
    free = shutil.disk_usage(path.parent).free
    needed = int(planned_bytes * DISK_MARGIN) + HEADER_BYTES
    if needed > free:
        raise ConfigurationError(f"output {path}: the scan needs about {_size(needed)} and the disk has "
                                 f"{_size(free)} free; free some space or choose another disk with -o")
    if needed > DISK_TIGHT * free:
        return (f"output {path}: the scan needs about {_size(needed)} of the {_size(free)} free on its disk; "
                f"little will be left")
    return None


def _size(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1000:
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1000
    return f"{nbytes:.3g} TB"
