"""Test objects for the virtual CT: primitives, exact cone-beam line integrals, built-in phantoms.

A phantom is a sum of primitives (ellipsoids, cylinders, boxes), each with a
linear attenuation coefficient µ (1/mm) that may be negative, so that objects
combine by adding: a void is a negative-µ primitive inside a positive one.
Lengths are in mm in the sample frame, which coincides with the lab frame of
``microct.geometry`` at angle zero (z up along the rotation axis, beam along +y).

``line_integrals`` follows the conventions of ``microct.geometry``: the sample
turns by rotation_direction × angle about the z axis moved to
x = centre-of-rotation offset, then moves by ``sample_shift_x_mm`` along x.
Chords are closed-form: each ray is mapped into the primitive's unit body
(sphere, cylinder |z| ≤ 1 with x² + y² ≤ 1, cube |x|, |y|, |z| ≤ 1), where
an affine map keeps the ray parameter t; quadratics give the sphere and the
cylinder side, slabs the caps and the cube. Only the detector rectangle that
a primitive's bounding box can shadow is evaluated.
"""

from __future__ import annotations

import abc
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from pydantic import ConfigDict, PositiveFloat, ValidationError, validate_call
from pydantic.dataclasses import dataclass as pydantic_dataclass

from microct.errors import ConfigurationError
from microct.geometry import Geometry

Vec3 = tuple[float, float, float]
Positive3 = tuple[PositiveFloat, PositiveFloat, PositiveFloat]
_STRICT = ConfigDict(extra="forbid")
_CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)


def rotation_matrix(rotation_deg: Vec3) -> np.ndarray:
    """3×3 rotation for intrinsic turns (degrees) about x, then the new y, then the new z: Rx · Ry · Rz."""
    (cx, cy, cz), (sx, sy, sz) = np.cos(np.radians(rotation_deg)), np.sin(np.radians(rotation_deg))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rx @ ry @ rz


def _slab(q: np.ndarray, qd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit parameters of the ray q + s·qd through |q| ≤ 1 (per component).

    A ray parallel to the slab gets (−inf, inf) inside and an empty interval
    outside or on the face; the NaN of 0·inf is skipped by fmin / fmax.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = 1.0 / qd
        s1, s2 = (-1.0 - q) * inverse, (1.0 - q) * inverse
    return np.fmin(s1, s2), np.fmax(s1, s2)


class _Primitive(abc.ABC):
    """A unit body mapped into the sample frame: centre + rotation · diag(half-sizes) · q."""

    centre_mm: Vec3
    mu_per_mm: float
    rotation_deg: Vec3

    @property
    @abc.abstractmethod
    def half_sizes_mm(self) -> np.ndarray: ...

    @cached_property
    def unit_to_sample(self) -> np.ndarray:
        """3×3 map (mm per unit) from the unit body to the sample frame."""
        return rotation_matrix(self.rotation_deg) * self.half_sizes_mm

    @cached_property
    def sample_to_unit(self) -> np.ndarray:
        """Inverse of ``unit_to_sample`` (units per mm): diag(1 / half-sizes) · rotationᵀ."""
        return rotation_matrix(self.rotation_deg).T / self.half_sizes_mm[:, None]

    @staticmethod
    @abc.abstractmethod
    def half_extents_mm(unit_to_lab: np.ndarray) -> np.ndarray:
        """Half-widths (mm) along the lab axes of the body mapped by ``unit_to_lab`` (3×3)."""

    @staticmethod
    @abc.abstractmethod
    def inside(q: np.ndarray) -> np.ndarray:
        """Whether unit-frame points q (..., 3) lie in the unit body (boundary included)."""

    @staticmethod
    @abc.abstractmethod
    def chord(qc: np.ndarray, qd: np.ndarray) -> np.ndarray:
        """Length, in units of the ray parameter s, of the ray qc + s·qd inside the unit body (qc, qd: (3, ...))."""


@pydantic_dataclass(frozen=True, config=_STRICT)
class Ellipsoid(_Primitive):
    """Ellipsoid: centre (mm), semi-axes along its local x, y, z (mm), µ (1/mm) and
    ``rotation_deg``, intrinsic rotations (degrees) about x, then y, then z."""

    centre_mm: Vec3
    semi_axes_mm: Positive3
    mu_per_mm: float
    rotation_deg: Vec3 = (0.0, 0.0, 0.0)

    @property
    def half_sizes_mm(self) -> np.ndarray:
        return np.array(self.semi_axes_mm)

    @staticmethod
    def half_extents_mm(unit_to_lab: np.ndarray) -> np.ndarray:
        return np.sqrt((unit_to_lab ** 2).sum(axis=1))

    @staticmethod
    def inside(q: np.ndarray) -> np.ndarray:
        return (q * q).sum(axis=-1) <= 1.0

    @staticmethod
    def chord(qc: np.ndarray, qd: np.ndarray) -> np.ndarray:
        a = (qd * qd).sum(axis=0)
        b = (qc * qd).sum(axis=0)
        c = (qc * qc).sum(axis=0) - 1.0
        return 2.0 * np.sqrt(np.maximum(b * b - a * c, 0.0)) / a


@validate_call
def sphere(centre_mm: Vec3, radius_mm: PositiveFloat, mu_per_mm: float) -> Ellipsoid:
    """A sphere: an ellipsoid with three equal semi-axes (mm), µ in 1/mm."""
    return Ellipsoid(centre_mm, (radius_mm,) * 3, mu_per_mm)


@pydantic_dataclass(frozen=True, config=_STRICT)
class Cylinder(_Primitive):
    """Right circular cylinder, axis along its local z before rotation: centre (mm), radius (mm),
    height (mm, along the axis), µ (1/mm), ``rotation_deg`` intrinsic about x, then y, then z (degrees)."""

    centre_mm: Vec3
    radius_mm: PositiveFloat
    height_mm: PositiveFloat
    mu_per_mm: float
    rotation_deg: Vec3 = (0.0, 0.0, 0.0)

    @property
    def half_sizes_mm(self) -> np.ndarray:
        return np.array([self.radius_mm, self.radius_mm, self.height_mm / 2.0])

    @staticmethod
    def half_extents_mm(unit_to_lab: np.ndarray) -> np.ndarray:
        return np.hypot(unit_to_lab[:, 0], unit_to_lab[:, 1]) + np.abs(unit_to_lab[:, 2])

    @staticmethod
    def inside(q: np.ndarray) -> np.ndarray:
        return (q[..., 0] ** 2 + q[..., 1] ** 2 <= 1.0) & (np.abs(q[..., 2]) <= 1.0)

    @staticmethod
    def chord(qc: np.ndarray, qd: np.ndarray) -> np.ndarray:
        # A ray parallel to the axis has a = 0: the floor turns its side interval into
        # (−huge, huge) when it runs inside the cylinder and into an empty one outside.
        a = np.maximum(qd[0] * qd[0] + qd[1] * qd[1], 1e-30)
        b = qc[0] * qd[0] + qc[1] * qd[1]
        c = qc[0] * qc[0] + qc[1] * qc[1] - 1.0
        half = np.sqrt(np.maximum(b * b - a * c, 0.0))
        lo, hi = _slab(qc[2], qd[2])
        enter = np.fmax((-b - half) / a, lo)
        leave = np.fmin((-b + half) / a, hi)
        return np.maximum(leave - enter, 0.0)


@pydantic_dataclass(frozen=True, config=_STRICT)
class Box(_Primitive):
    """Rectangular box: centre (mm), edge lengths along its local x, y, z (mm), µ (1/mm),
    ``rotation_deg`` intrinsic about x, then y, then z (degrees)."""

    centre_mm: Vec3
    size_mm: Positive3
    mu_per_mm: float
    rotation_deg: Vec3 = (0.0, 0.0, 0.0)

    @property
    def half_sizes_mm(self) -> np.ndarray:
        return np.array(self.size_mm) / 2.0

    @staticmethod
    def half_extents_mm(unit_to_lab: np.ndarray) -> np.ndarray:
        return np.abs(unit_to_lab).sum(axis=1)

    @staticmethod
    def inside(q: np.ndarray) -> np.ndarray:
        return np.abs(q).max(axis=-1) <= 1.0

    @staticmethod
    def chord(qc: np.ndarray, qd: np.ndarray) -> np.ndarray:
        lo, hi = _slab(qc, qd)
        return np.maximum(np.fmin.reduce(hi, axis=0) - np.fmax.reduce(lo, axis=0), 0.0)


Primitive = Ellipsoid | Cylinder | Box


@dataclass(frozen=True)
class Phantom:
    """A named sum of primitives (µ adds where they overlap)."""

    name: str
    primitives: tuple[Primitive, ...]


# ---------------------------------------------------------------------------------------------
# Projection


@functools.lru_cache(maxsize=8)
def _detector_grid(geometry: Geometry, shape: tuple[int, int], pitch_mm: float):
    """Pixel-centre coordinates u (cols,) and v (rows,) in mm, and the length (rows, cols, float32)
    of the unnormalised ray vector e = (u, SDD, −v) from the focal spot to each pixel centre."""
    rows, cols = shape
    u = (np.arange(cols) - (cols - 1) / 2) * pitch_mm + geometry.detector_offset_u_mm
    v = (np.arange(rows) - (rows - 1) / 2) * pitch_mm + geometry.detector_offset_v_mm
    length = np.sqrt(u[None, :] ** 2 + v[:, None] ** 2 + geometry.source_detector_distance_mm ** 2)
    length = length.astype(np.float32)
    for array in (u, v, length):
        array.setflags(write=False)
    return u, v, length


def _shadow_window(centre: np.ndarray, half: np.ndarray, geometry: Geometry, shape: tuple[int, int],
                   pitch_mm: float) -> tuple[slice, slice] | None:
    """Detector rows and columns whose pixel-centre rays can cross the lab box centre ± half (mm),
    with one pixel of margin; None when the box shadows no pixel. The perspective image of a box in
    front of the focal spot lies within the rectangle spanned by its projected corners."""
    corners = centre + half * _CORNERS
    depth = corners[:, 1] + geometry.source_object_distance_mm
    if depth.min() <= 0.0:
        raise ConfigurationError("a phantom primitive reaches the focal spot (y ≤ −SOD): it cannot be projected")
    scale = geometry.source_detector_distance_mm / depth / pitch_mm
    col = corners[:, 0] * scale - geometry.detector_offset_u_mm / pitch_mm + (shape[1] - 1) / 2
    row = -corners[:, 2] * scale - geometry.detector_offset_v_mm / pitch_mm + (shape[0] - 1) / 2
    r0, r1 = max(math.ceil(row.min()) - 1, 0), min(math.floor(row.max()) + 2, shape[0])
    c0, c1 = max(math.ceil(col.min()) - 1, 0), min(math.floor(col.max()) + 2, shape[1])
    return (slice(r0, r1), slice(c0, c1)) if r0 < r1 and c0 < c1 else None


def line_integrals(phantom: Phantom, geometry: Geometry, angle_deg: float, shape: tuple[int, int],
                   pitch_mm: float, sample_shift_x_mm: float = 0.0) -> np.ndarray:
    """∫µ dl (dimensionless) along each focal-spot → pixel-centre ray, shape ``shape`` (rows, cols), float32.

    ``angle_deg``: rotation-stage angle (degrees); ``pitch_mm``: detector pixel pitch (mm);
    ``sample_shift_x_mm``: translation of the sample along x (mm) after the rotation. Per-pixel
    arithmetic is float32, the per-primitive set-up float64. ConfigurationError if a primitive
    reaches the plane of the focal spot.
    """
    turn = rotation_matrix((0.0, 0.0, geometry.rotation_direction * angle_deg))
    shift = np.array([geometry.centre_of_rotation_offset_mm + sample_shift_x_mm, 0.0, 0.0])
    sod, sdd = geometry.source_object_distance_mm, geometry.source_detector_distance_mm
    u, v, length = _detector_grid(geometry, tuple(shape), pitch_mm)
    total = np.zeros(shape, np.float32)
    for primitive in phantom.primitives:
        centre = turn @ primitive.centre_mm + shift
        window = _shadow_window(centre, primitive.half_extents_mm(turn @ primitive.unit_to_sample),
                                geometry, shape, pitch_mm)
        if window is None:
            continue
        rows, cols = window
        to_unit = primitive.sample_to_unit @ turn.T
        # Ray x = source + s·e with e = (u, SDD, −v); s_ref puts x in the plane y = centre y, where
        # the ray is near the primitive, so unit-frame coordinates there stay O(1) in float32.
        # Both qc (the point at s_ref) and qd (the unit-frame e) are sums of a column and a row term.
        w = centre - (0.0, -sod, 0.0)
        s_ref = w[1] / sdd
        qc = ((to_unit[:, 0:1] * (s_ref * u[cols] - w[0])).astype(np.float32)[:, None, :]
              + (to_unit[:, 2:3] * (-s_ref * v[rows] - w[2])).astype(np.float32)[:, :, None])
        qd = ((to_unit[:, 0:1] * u[cols] + to_unit[:, 1:2] * sdd).astype(np.float32)[:, None, :]
              + (to_unit[:, 2:3] * -v[rows]).astype(np.float32)[:, :, None])
        total[window] += np.float32(primitive.mu_per_mm) * primitive.chord(qc, qd) * length[window]
    return total


# ---------------------------------------------------------------------------------------------
# Ground truth


def mu_at(phantom: Phantom, points_mm: np.ndarray) -> np.ndarray:
    """µ (1/mm) at points (..., 3) of the sample frame (mm): the sum over the primitives containing them."""
    points = np.asarray(points_mm, float)
    mu = np.zeros(points.shape[:-1])
    for primitive in phantom.primitives:
        q = (points - primitive.centre_mm) @ primitive.sample_to_unit.T
        mu += primitive.mu_per_mm * primitive.inside(q)
    return mu


# ---------------------------------------------------------------------------------------------
# Built-in phantoms: all centred on the rotation axis, sized for a field of view of ~9 mm diameter
# at the axis (magnification 10, 40 µm voxels over 256 columns = 10.24 mm) and |z| ≤ 4 mm,
# except ``edge``, which is meant to run out of the field of view.

SOLDER_MU = 2.5  # 1/mm
FR4_MU = 0.05  # 1/mm


@dataclass(frozen=True)
class BGALayout:
    """Where the features of the ``bga`` phantom are (mm, sample frame). Balls are numbered
    row by row: index = 4 · row + column, column along +x, row along +y."""

    board: Box
    ball_centres_mm: tuple[Vec3, ...]
    ball_radius_mm: float
    voided_balls: tuple[int, ...]
    void_centres_mm: tuple[Vec3, ...]
    void_radii_mm: tuple[float, ...]
    cracked_ball: int
    crack: Box


def _bga_layout() -> BGALayout:
    # A 6 × 6 mm board: a 7 mm one would reach 4.95 mm from the axis at its corners, beyond 4.5 mm.
    thickness, radius, pitch = 1.0, 0.38, 1.27
    # The balls' centres lie in the plane z = 0, so the centre slice of a reconstruction cuts through
    # them; the board sits below (−1.38 ≤ z ≤ −0.38 mm).
    board = Box((0.0, 0.0, -radius - thickness / 2), (6.0, 6.0, thickness), FR4_MU)
    top = board.centre_mm[2] + thickness / 2
    balls = tuple(((col - 1.5) * pitch, (row - 1.5) * pitch, top + radius) for row in range(4) for col in range(4))

    def near(ball: int, offset: Vec3) -> Vec3:
        return tuple(float(a + b) for a, b in zip(balls[ball], offset))

    # Voids off-centre in three balls (no mirror maps this set onto itself), a crack in a fourth.
    voids = {0: ((0.12, -0.06, 0.10), 0.10), 6: ((-0.10, 0.08, -0.12), 0.125), 13: ((0.05, 0.13, 0.06), 0.15)}
    cracked = 11
    crack = Box(near(cracked, (0.06, 0.0, 0.08)), (0.40, 0.40, 0.05), -SOLDER_MU, (8.0, 0.0, 0.0))
    return BGALayout(board, balls, radius, tuple(voids), tuple(near(i, offset) for i, (offset, _) in voids.items()),
                     tuple(r for _, r in voids.values()), cracked, crack)


BGA_LAYOUT = _bga_layout()


def bga() -> Phantom:
    """A ball-grid-array joint sample: an FR4-like board (µ 0.05/mm, 6 × 6 × 1 mm, horizontal) with
    a 4 × 4 grid of solder balls on top (µ 2.5/mm, 0.76 mm diameter, 1.27 mm pitch), three of them
    with a spherical void and one with a thin crack (negative-µ primitives). See ``BGA_LAYOUT``."""
    layout = BGA_LAYOUT
    return Phantom("bga", (
        layout.board,
        *(sphere(c, layout.ball_radius_mm, SOLDER_MU) for c in layout.ball_centres_mm),
        *(sphere(c, r, -SOLDER_MU) for c, r in zip(layout.void_centres_mm, layout.void_radii_mm)),
        layout.crack))


EDGE_TILT_DEG = 4.0


def edge() -> Phantom:
    """A slanted edge for edge-spread / MTF measurement: a plate (µ 1.0/mm, 3 mm along y) filling
    x < 0 out of the field of view (10 mm along x, 14 mm along z), its edge through the rotation axis
    running along z, tilted by ``EDGE_TILT_DEG`` about y (at height z the edge is at x = z·tan 4°)."""
    size = np.array([10.0, 3.0, 14.0])
    rotation = (0.0, EDGE_TILT_DEG, 0.0)
    # Put the centre of the +x face on the axis: centre + R · (size_x / 2, 0, 0) = 0.
    centre = -rotation_matrix(rotation) @ (size[0] / 2, 0.0, 0.0)
    return Phantom("edge", (Box(tuple(centre), tuple(size), 1.0, rotation),))


LINE_PAIR_PERIODS_UM = (400, 300, 200, 150, 100, 75, 50)


def line_pairs() -> Phantom:
    """Bar patterns: per period in ``LINE_PAIR_PERIODS_UM`` a group of three bars (µ 5/mm, width =
    half the period, 0.3 mm deep along y, 3 mm long along z), groups laid along +x from coarse to
    fine, 0.4 mm apart, the whole pattern centred on the axis."""
    depth, height, gap, bars_per_group = 0.3, 3.0, 0.4, 3
    starts, x = [], 0.0
    for period_um in LINE_PAIR_PERIODS_UM:
        period = period_um / 1000
        starts += [(x + k * period, period / 2) for k in range(bars_per_group)]
        x += (bars_per_group - 0.5) * period + gap
    middle = (x - gap) / 2
    return Phantom("line-pairs", tuple(Box((start + width / 2 - middle, 0.0, 0.0), (width, depth, height), 5.0)
                                       for start, width in starts))


# 3-D Shepp-Logan: the ellipsoids of Kak & Slaney, "Principles of Computerized Tomographic
# Imaging" (1988), p. 102 (with the published errata), with the higher contrasts of Yu, Ye & Wang,
# "Katsevich-type algorithms for variable radius spiral cone-beam CT", Proc. SPIE 5535 (2004), the
# 3-D counterpart of Toft's modified 2-D phantom. Lengths in units of the phantom's half-size,
# rotations about z (degrees), density in units of SHEPP_LOGAN_MU_UNIT.
# semi-axes (a, b, c), centre (x, y, z), angle about z, density
_SHEPP_LOGAN = (
    ((0.6900, 0.920, 0.900), (0.00, 0.000, 0.000), 0, 1.0),
    ((0.6624, 0.874, 0.880), (0.00, 0.000, 0.000), 0, -0.8),
    ((0.4100, 0.160, 0.210), (-0.22, 0.000, -0.250), 108, -0.2),
    ((0.3100, 0.110, 0.220), (0.22, 0.000, -0.250), 72, -0.2),
    ((0.2100, 0.250, 0.500), (0.00, 0.350, -0.250), 0, 0.2),
    ((0.0460, 0.046, 0.046), (0.00, 0.100, -0.250), 0, 0.2),
    ((0.0460, 0.023, 0.020), (-0.08, -0.650, -0.250), 0, 0.1),
    ((0.0460, 0.023, 0.020), (0.06, -0.650, -0.250), 90, 0.1),
    ((0.0560, 0.040, 0.100), (0.06, -0.105, 0.625), 90, 0.2),
    ((0.0560, 0.056, 0.100), (0.00, 0.100, 0.625), 0, -0.2),
)
SHEPP_LOGAN_SCALE_MM = 4.4  # mm per phantom unit: the skull reaches 4.05 mm from the axis and |z| ≤ 3.96 mm
# 1/mm per density unit: the skull is 0.1/mm (aluminium-like near 50 keV), the brain 0.02/mm
# (plastic-like), its features 0 to 0.04/mm.
SHEPP_LOGAN_MU_UNIT = 0.1


def shepp_logan_3d() -> Phantom:
    """The 3-D Shepp-Logan head (Kak & Slaney geometry, Yu-Ye-Wang contrasts), axial slices in xy,
    scaled by ``SHEPP_LOGAN_SCALE_MM`` and ``SHEPP_LOGAN_MU_UNIT``."""
    s = SHEPP_LOGAN_SCALE_MM
    return Phantom("shepp-logan-3d", tuple(
        Ellipsoid(tuple(s * np.array(centre)), tuple(s * np.array(axes)), density * SHEPP_LOGAN_MU_UNIT,
                  (0.0, 0.0, float(angle)))
        for axes, centre, angle, density in _SHEPP_LOGAN))


def spheres() -> Phantom:
    """A simple lopsided test object (so that a mirrored reconstruction shows), for a ~20 mm field of
    view: an aluminium-like ball (6 mm radius, µ 0.05/mm) with two denser inclusions off-centre at
    different heights (µ 0.5/mm and 0.3/mm)."""
    return Phantom("spheres", (sphere((0.0, 0.0, 0.0), 6.0, 0.05), sphere((3.0, 0.0, 2.0), 1.0, 0.5),
                               sphere((-2.0, 2.0, -3.0), 0.75, 0.3)))


BUILTIN: dict[str, Callable[[], Phantom]] = {
    "bga": bga, "edge": edge, "line-pairs": line_pairs, "shepp-logan-3d": shepp_logan_3d, "spheres": spheres}


def get_phantom(name: str) -> Phantom:
    """The built-in phantom called ``name``; ConfigurationError naming the known ones otherwise."""
    if name not in BUILTIN:
        raise ConfigurationError(f"unknown phantom {name!r}; known phantoms: {', '.join(BUILTIN)}")
    return BUILTIN[name]()


_SPEC_KINDS: dict[str, Callable[..., Primitive]] = {
    "sphere": sphere, "ellipsoid": Ellipsoid, "cylinder": Cylinder, "box": Box}


def phantom_from_spec(spec: str | list[dict[str, Any]]) -> Phantom:
    """A built-in phantom by name, or a user's phantom from a list of primitive tables such as
    ``{"type": "sphere", "centre_mm": [0, 0, 0], "radius_mm": 1.0, "mu_per_mm": 0.5}`` (keys: the
    fields of ``sphere``, ``Ellipsoid``, ``Cylinder``, ``Box``). ConfigurationError naming the key."""
    if isinstance(spec, str):
        return get_phantom(spec)
    if not isinstance(spec, list | tuple) or not spec:
        raise ConfigurationError(f"phantom must be a name or a non-empty list of primitives, got {spec!r}")
    primitives = []
    for i, item in enumerate(spec):
        if not isinstance(item, dict):
            raise ConfigurationError(f"phantom primitive {i} must be a table (dict), got {item!r}")
        fields = dict(item)
        kind = fields.pop("type", None)
        if kind not in _SPEC_KINDS:
            raise ConfigurationError(f"phantom primitive {i}: 'type' must be one of {', '.join(_SPEC_KINDS)}, "
                                     f"got {kind!r}")
        try:
            primitives.append(_SPEC_KINDS[kind](**fields))
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise ConfigurationError(f"phantom primitive {i} ({kind}): {problems}") from None
    return Phantom("custom", tuple(primitives))
