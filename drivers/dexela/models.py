"""The Dexela panel figures known publicly; any other panel is configured by its figures (rows, columns,
pixel pitch) as its frame grabber delivers them.

Sources: "notes" are the repository's protocol notes, docs/protocols/dexela-serial.md (derived from
open-source drivers); "lab code" is public code of a beamline running a Dexela panel (the APS USAXS
instrument: its live-data code and its issue 51, "Dexela support for live data page", give the panel's
x_pixel_size as 0.0748 mm). [I] marks what this project infers.
"""

from __future__ import annotations

TILE_ROWS, TILE_COLUMNS = 1024, 1024
"""One sensor tile of a Dexela 2923 as the frame grabber delivers it (notes, "Pixels"); the driver's
default frame size."""

BIT_DEPTH = 16
"""Bits per pixel of the frames (notes, "Pixels")."""

PIXEL_PITCH_UM = 74.8
"""Pixel pitch (µm) of a Dexela panel (lab code: 0.0748 mm); taken for the 2923 tile too [I]: the notes
give no pitch."""
