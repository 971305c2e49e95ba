"""Resuming an interrupted scan: set the old file aside, replay its journal into a new file, go on.

``set_aside(output)`` moves ``scan.nxs`` and ``scan.nxs.journal`` to ``scan.nxs.interrupted`` and
``scan.nxs.interrupted.journal``; the new file is rebuilt under the old name from the journal (the
frames' pixels are read at their recorded offsets, so a file the HDF5 library cannot open any more
still gives them up), and ``discard`` deletes the set-aside pair once every frame is in the new file.
Each step is a rename or a delete, and ``set_aside`` finds where a killed resume stopped:

- ``.interrupted`` present, its journal not: killed between the two renames → finish the second;
- both present: killed while rebuilding → the half-built new pair is dropped, rebuilt again;
- ``.interrupted`` gone but its journal left: killed between the two deletes → a stale journal,
  replaced by the next rename (the new pair, whose journal exists, is the one to resume).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from microct.config import ScanConfig
from microct.errors import ConfigurationError, MicroCTError
from microct.journal import Journal, journal_path, read_journal, read_journal_header
from microct.nexus import FrameInfo, NXtomoWriter


@dataclass
class Interrupted:
    """An interrupted scan set aside: its journal and the file holding the journal's frames."""

    journal: Journal
    data_file: Path
    journal_file: Path


def _aside(output: Path) -> Path:
    return output.with_name(output.name + ".interrupted")


def resumable_journal(output: Path) -> Path:
    """The journal ``set_aside`` will use (nothing is renamed); MicroCTError if there is none."""
    journal, aside = journal_path(output), _aside(output)
    aside_journal = journal_path(aside)
    if aside_journal.exists() and (aside.exists() or not journal.exists()):
        return aside_journal
    if journal.exists():
        return journal
    state = "it completed, or was never started" if output.exists() else "it does not exist"
    raise MicroCTError(f"nothing to resume at {output}: no journal {journal.name} ({state})")


def stored_configuration(output: str | Path) -> dict[str, Any]:
    """The configuration the interrupted scan of ``output`` started with (as ``ScanConfig.model_dump``)."""
    return read_journal_header(resumable_journal(Path(output))).get("configuration", {})


def set_aside(output: str | Path) -> Interrupted:
    """Move an interrupted scan out of the way (see the module docstring) and read its journal.

    MicroCTError if there is nothing to resume (no journal: the scan completed, or never started).
    """
    output = Path(output)
    journal, aside = journal_path(output), _aside(output)
    aside_journal = journal_path(aside)
    if aside.exists() and not aside_journal.exists():
        os.replace(journal, aside_journal)  # killed between the two renames
    elif resumable_journal(output) == aside_journal:  # killed while rebuilding: drop the half-built pair
        output.unlink(missing_ok=True)
        journal.unlink(missing_ok=True)
    else:
        if output.exists():
            os.replace(output, aside)
        os.replace(journal, aside_journal)
    return Interrupted(read_journal(aside_journal), aside, aside_journal)


MAY_DIFFER = ("scan.output", "scan.resume_references_after_s")
"""Keys a resume's configuration may change: where the file is, and when the resume takes fresh references."""


def check_configuration(output: str | Path, configuration: dict[str, Any]) -> None:
    """ConfigurationError listing what differs from the configuration the interrupted scan of ``output``
    started with (the keys of ``MAY_DIFFER`` may differ); MicroCTError if there is nothing to resume."""
    stored = _with_defaults(stored_configuration(output))
    differences = [f"{key}: {was!r} then, {now!r} now" for key, was, now in _differences(stored, configuration)
                   if key not in MAY_DIFFER]
    if differences:
        raise ConfigurationError("resume: the configuration differs from the interrupted scan's: "
                                 + "; ".join(differences[:8]) + (" ..." if len(differences) > 8 else ""))


def _with_defaults(configuration: dict[str, Any]) -> dict[str, Any]:
    """A stored configuration with the defaults of keys added since it was written (a scan interrupted
    before an upgrade); as stored if it no longer validates (the comparison then names what changed)."""
    try:
        return ScanConfig.model_validate(configuration).model_dump(mode="json")
    except ValidationError:
        return configuration


def _differences(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b)):
            found += _differences(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        return found
    return [] if a == b else [(prefix, a, b)]


@dataclass
class Replayed:
    """What ``replay`` put in the new file: the frames' image keys, the latest time the journal records
    (epoch s, scan clock), and why frames were dropped (empty if none was)."""

    keys: list[int]
    last_time: float
    dropped: str = ""


def replay(interrupted: Interrupted, writer: NXtomoWriter) -> Replayed:
    """Write the journal's frames, events and read-backs into ``writer`` in their first order.

    A frame whose pixels are not whole where the journal says (a power cut lost what the disk had not
    written) is dropped with every frame after it, so frames stay 0..n−1 without a gap; the resumed scan
    takes them again. Events and read-backs are kept: they are what happened."""
    shape = writer.header.frame_shape
    replayed = Replayed([], writer.header.start_time)
    fd = os.open(interrupted.data_file, os.O_RDONLY) if interrupted.data_file.exists() else -1
    try:
        for kind, record in interrupted.journal.entries:
            if kind == "event":
                writer.log_event(record["time"], record["message"], record["frame"])
                replayed.last_time = max(replayed.last_time, record["time"])
            elif kind == "reading":
                writer.log_reading(record["time"], record["kv"], record["ua"], record["angle"])
                replayed.last_time = max(replayed.last_time, record["time"])
            elif not replayed.dropped:
                info = FrameInfo(**record.info)
                if record.file is not None:
                    writer.append_linked(record.file, info)
                else:
                    pixels, replayed.dropped = _pixels(fd, record, shape, interrupted.data_file)
                    if pixels is None:
                        continue
                    writer.append(pixels, info)
                replayed.keys.append(info.image_key)
                replayed.last_time = max(replayed.last_time, info.start_time + info.count_time_s)
    finally:
        if fd >= 0:
            os.close(fd)
    if replayed.dropped:
        lost = len(interrupted.journal.frames) - len(replayed.keys)
        replayed.dropped += f"; {lost} frame{'s' * (lost != 1)} from there on dropped, to be taken again"
    return replayed


def _pixels(fd: int, frame, shape: tuple[int, int], path: Path) -> tuple[np.ndarray | None, str]:
    """(pixels, "") of a journal frame, or (None, why) if they are not whole on the disk."""
    expected = shape[0] * shape[1] * 2
    data = os.pread(fd, frame.nbytes, frame.offset) if fd >= 0 else b""
    if frame.nbytes != expected or len(data) != expected:
        return None, (f"frame {frame.index} is not whole in {path.name} ({len(data)} of {expected} bytes at "
                      f"offset {frame.offset}: the disk lost its end)")
    return np.frombuffer(data, dtype=np.uint16).reshape(shape), ""


def discard(interrupted: Interrupted) -> None:
    """Delete the set-aside pair (the data file first: see the module docstring)."""
    interrupted.data_file.unlink(missing_ok=True)
    interrupted.journal_file.unlink(missing_ok=True)
