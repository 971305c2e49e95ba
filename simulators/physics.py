"""Cone-beam projection of a test object made of spheres: exact chord lengths, vectorised.

Follows the conventions of ``microct.geometry``. The object rotates about the
z axis (shifted by the centre-of-rotation offset) and can be translated along
x by a sample-out axis. ``line_integrals`` returns ∫µ dl for each pixel;
Beer-Lambert transmission is exp(−∫µ dl).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from microct.geometry import Geometry


@dataclass(frozen=True)
class Sphere:
    """Centre (x, y, z) in mm in the sample frame, radius in mm, linear attenuation µ in 1/mm."""

    centre_mm: tuple[float, float, float]
    radius_mm: float
    mu_per_mm: float


# A deliberately lopsided object (so that a mirrored reconstruction shows): an
# aluminium-like ball with two denser inclusions off-centre at different heights.
TEST_OBJECT: tuple[Sphere, ...] = (
    Sphere((0.0, 0.0, 0.0), 6.0, 0.05),
    Sphere((3.0, 0.0, 2.0), 1.0, 0.5),
    Sphere((-2.0, 2.0, -3.0), 0.75, 0.3),
)


@functools.lru_cache(maxsize=8)
def _ray_directions(geometry: Geometry, shape: tuple[int, int], pitch_mm: float) -> np.ndarray:
    """Unit vectors from the focal spot to each pixel centre, shape (rows, cols, 3)."""
    rows, cols = shape
    u = (np.arange(cols) - (cols - 1) / 2) * pitch_mm + geometry.detector_offset_u_mm
    v = (np.arange(rows) - (rows - 1) / 2) * pitch_mm + geometry.detector_offset_v_mm
    d = np.empty((rows, cols, 3))
    d[..., 0] = u[None, :]
    d[..., 1] = geometry.source_detector_distance_mm
    d[..., 2] = -v[:, None]
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    d.setflags(write=False)
    return d


def line_integrals(spheres: tuple[Sphere, ...], geometry: Geometry, angle_deg: float,
                   shape: tuple[int, int], pitch_mm: float, sample_shift_x_mm: float = 0.0) -> np.ndarray:
    """∫µ dl (dimensionless) along each focal-spot → pixel ray, shape ``shape`` (float32)."""
    d = _ray_directions(geometry, shape, pitch_mm)
    theta = math.radians(geometry.rotation_direction * angle_deg)
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    total = np.zeros(shape)
    source = np.array([0.0, -geometry.source_object_distance_mm, 0.0])
    for sphere in spheres:
        x, y, z = sphere.centre_mm
        centre = np.array([geometry.centre_of_rotation_offset_mm + sample_shift_x_mm + x * cos_t - y * sin_t,
                           x * sin_t + y * cos_t, z])
        w = centre - source
        along = d @ w
        miss2 = w @ w - along * along
        total += sphere.mu_per_mm * 2.0 * np.sqrt(np.clip(sphere.radius_mm ** 2 - miss2, 0.0, None))
    return total.astype(np.float32)
