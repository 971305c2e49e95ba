"""Reading back what a scan wrote, for the sequencer tests."""

from __future__ import annotations

import h5py


def read(path, name):
    """A dataset's value; strings decoded."""
    with h5py.File(path, "r") as f:
        value = f[name][()]
    return value.decode() if isinstance(value, bytes) else value


def events(path) -> list[str]:
    """The event log's messages, in order."""
    with h5py.File(path, "r") as f:
        return [m.decode() for m in f["entry/logs/events/message"][()]]
