"""The PILATUS detector models camserver runs: image size, pixel pitch and the module grid with its gaps.

Sources: "notes" are the repository's protocol notes, docs/protocols/dectris-camserver.md (section
"Images", from the DECTRIS PILATUS3 user manual, §7.2 image formats); "data sheets" are DECTRIS's
PILATUS product data sheets.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Model = Literal["100K", "200K", "300K", "300K-W", "1M", "2M", "6M"]
"""The models of the notes ("Images")."""

SIZES: dict[str, tuple[int, int]] = {"100K": (487, 195), "200K": (487, 407), "300K": (487, 619),
                                     "300K-W": (1475, 195), "1M": (981, 1043), "2M": (1475, 1679),
                                     "6M": (2463, 2527)}
"""Image width × height in pixels, per model (notes, "Images")."""

PIXEL_PITCH_UM = 172.0
"""Pixel pitch of every PILATUS model, 172 µm × 172 µm (data sheets; camserver writes it into each image
header as ``# Pixel_size 172e-6 m x 172e-6 m``)."""

MODULE_COLUMNS, MODULE_ROWS = 487, 195
"""One module: 487 × 195 pixels (notes, "Images"; the 100K is a single module)."""
GAP_COLUMNS, GAP_ROWS = 7, 17
"""Gap pixels between module columns and between module rows (notes, "Images"). Every size of the notes
is a grid of modules with exactly these gaps (1475 = 3 × 487 + 2 × 7, 1679 = 8 × 195 + 7 × 17, and so
on for all seven; checked by ``module_grid``)."""


def module_grid(width: int, height: int) -> tuple[int, int]:
    """(modules across, modules down) of a detector ``width`` × ``height``; ValueError if it is no grid."""
    across, rest_w = divmod(width + GAP_COLUMNS, MODULE_COLUMNS + GAP_COLUMNS)
    down, rest_h = divmod(height + GAP_ROWS, MODULE_ROWS + GAP_ROWS)
    if rest_w or rest_h or not across or not down:
        raise ValueError(f"{width} × {height} is not a grid of {MODULE_COLUMNS} × {MODULE_ROWS} modules with "
                         f"{GAP_COLUMNS}-column and {GAP_ROWS}-row gaps")
    return across, down


def gap_mask(width: int, height: int) -> np.ndarray:
    """True on the gap pixels between modules (rows × columns); ValueError if the size is no grid."""
    module_grid(width, height)
    gap_columns = np.arange(width) % (MODULE_COLUMNS + GAP_COLUMNS) >= MODULE_COLUMNS
    gap_rows = np.arange(height) % (MODULE_ROWS + GAP_ROWS) >= MODULE_ROWS
    return gap_rows[:, None] | gap_columns[None, :]
