"""Phantoms and the exact cone-beam projector, against hand values and the geometry conventions."""

import math

import numpy as np
import pytest

from microct.errors import ConfigurationError
from microct.geometry import Geometry
from microct.simulators import phantoms
from microct.simulators.phantoms import (
    BGA_LAYOUT,
    BUILTIN,
    Box,
    Cylinder,
    Ellipsoid,
    Phantom,
    get_phantom,
    line_integrals,
    mu_at,
    phantom_from_spec,
    sphere,
)

SOD, SDD = 100.0, 1000.0


def chord(primitive, u_mm: float = 0.0, v_mm: float = 0.0) -> float:
    """Length (mm) inside ``primitive`` of the ray to a one-pixel detector at (u, v) on the detector."""
    geometry = Geometry(SOD, SDD, detector_offset_u_mm=u_mm, detector_offset_v_mm=v_mm)
    phantom = Phantom("one", (primitive,))
    return float(line_integrals(phantom, geometry, 0.0, (1, 1), 1.0)[0, 0]) / primitive.mu_per_mm


def on_ray(u_mm: float, v_mm: float, y_mm: float = 0.0) -> tuple[float, float, float]:
    """The point at depth y of the ray to detector point (u, v)."""
    scale = (SOD + y_mm) / SDD
    return u_mm * scale, y_mm, -v_mm * scale


# -- chords ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("primitive, expected", [
    (sphere((0, 0, 0), 1.3, 2.0), 2.6),
    (sphere((0.5, 3.0, 0.0), 1.0, 1.0), 2 * math.sqrt(0.75)),                 # 0.5 mm off the ray
    (sphere((1.2, 0, 0), 1.0, 1.0), 0.0),                                      # missed
    (Ellipsoid((0, 0, 0), (0.5, 1.5, 0.9), 1.0), 3.0),
    (Ellipsoid((0, 0, 0), (0.5, 1.5, 0.9), 1.0, (0, 0, 90)), 1.0),            # local x now along y
    (Box((0, 0, 0), (1.5, 2.5, 0.7), 1.0), 2.5),
    (Box((0, 0, 0), (1.5, 2.5, 0.7), 1.0, (0, 0, 90)), 1.5),
    (Box((0, 0, 0), (1.5, 2.5, 0.7), 1.0, (90, 0, 0)), 0.7),                  # local z now along −y
    (Box((0, 0, 0), (1.0, 2.0, 3.0), 1.0, (90, 90, 0)), 1.0),                 # x then y: local x along y
    (Box((0, 0, 0), (1.0, 1.0, 1.0), 1.0, (0, 0, 45)), math.sqrt(2)),         # along a face diagonal
    (Box((0.8, 0, 0), (1.5, 2.5, 0.7), 1.0), 0.0),
    (Cylinder((0, 0, 0), 0.6, 2.0, 1.0), 1.2),                                 # across
    (Cylinder((0, 0, 0), 0.6, 2.0, 1.0, (90, 0, 0)), 2.0),                    # along its axis
    (Cylinder((0, 0, 0), 0.6, 2.0, 1.0, (0, 90, 0)), 1.2),
    (Cylinder((0.3, 0, 0), 0.6, 2.0, 1.0, (90, 0, 0)), 2.0),                  # along the axis, off-centre
    (Cylinder((0.7, 0, 0), 0.6, 2.0, 1.0, (90, 0, 0)), 0.0),                  # parallel, outside
])
def test_chord_along_the_central_ray(primitive, expected):
    assert chord(primitive) == pytest.approx(expected, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("u, v", [(80.0, 0.0), (-60.0, 45.0), (30.0, -90.0)])
def test_chords_of_slanted_rays_through_the_centre(u, v):
    """A slanted ray through the centre: diameter, height of an axis-aligned cylinder, box along its axis."""
    centre = on_ray(u, v, 1.0)
    direction = np.array([u, SDD, -v]) / math.hypot(u, SDD, v)
    assert chord(sphere(centre, 0.8, 1.0), u, v) == pytest.approx(1.6, rel=1e-4)
    # A cylinder whose axis is the ray: rotate local z onto the ray direction (about x, then y).
    tilt_x = math.degrees(math.atan2(-direction[1], direction[2]))
    tilt_y = math.degrees(math.asin(direction[0]))
    assert chord(Cylinder(centre, 0.3, 1.7, 1.0, (tilt_x, tilt_y, 0.0)), u, v) == pytest.approx(1.7, rel=1e-4)
    assert chord(Box(centre, (0.4, 0.5, 1.9), 1.0, (tilt_x, tilt_y, 33.0)), u, v) == pytest.approx(1.9, rel=1e-4)


def test_line_integrals_agree_with_mu_at_integrated_along_rays():
    """Every kind, rotated, through a geometry with every offset set: ∫µ dl sampled finely along rays."""
    geometry = Geometry(50.0, 500.0, detector_offset_u_mm=3.0, detector_offset_v_mm=-2.0,
                        centre_of_rotation_offset_mm=0.3, rotation_direction=-1)
    phantom = Phantom("mix", (Ellipsoid((0.5, -1, 0.3), (1.5, 0.8, 1.1), 1.0, (20, 30, 40)),
                              Cylinder((-1, 0.5, -0.5), 0.9, 2.5, 0.7, (50, 10, 70)),
                              Box((1, 1, 1), (1.2, 0.7, 2.0), -0.4, (15, -25, 35))))
    angle, shift, pitch = 37.0, 0.4, 2.0
    image = line_integrals(phantom, geometry, angle, (40, 40), pitch, shift)
    theta = math.radians(geometry.rotation_direction * angle)
    turn = np.array([[math.cos(theta), -math.sin(theta), 0], [math.sin(theta), math.cos(theta), 0], [0, 0, 1]])
    t = np.linspace(45.0, 55.0, 50001)
    for row, col in [(20, 18), (22, 24), (15, 21), (25, 15), (19, 26), (18, 19)]:
        u = (col - 19.5) * pitch + geometry.detector_offset_u_mm
        v = (row - 19.5) * pitch + geometry.detector_offset_v_mm
        direction = np.array([u, SDD / 2, -v]) / math.hypot(u, SDD / 2, v)
        lab = np.array([0.0, -50.0, 0.0]) + t[:, None] * direction
        sample = (lab - (geometry.centre_of_rotation_offset_mm + shift, 0, 0)) @ turn   # turnᵀ · (x − shift)
        assert image[row, col] == pytest.approx(np.trapezoid(mu_at(phantom, sample), t), abs=2e-3)
    assert np.count_nonzero(image) > 100


def test_sphere_integrated_over_the_detector_is_its_volume_times_m_squared():
    geometry = Geometry(50.0, 500.0)
    radius, mu, pitch = 1.0, 0.7, 0.05
    image = line_integrals(Phantom("ball", (sphere((0.3, 0.0, 0.2), radius, mu),)), geometry, 0.0, (512, 512), pitch)
    assert image.dtype == np.float32 and image.shape == (512, 512)
    expected = mu * 4 / 3 * math.pi * radius ** 3 * geometry.magnification ** 2 / pitch ** 2
    assert image.sum(dtype=np.float64) == pytest.approx(expected, rel=0.01)


# -- conventions ---------------------------------------------------------------------------------------------
def shadow_centre(geometry, angle, shift=0.0):
    """(u, v) in mm of the centroid of the shadow of a small ball at (0, 2, 1) mm in the sample frame."""
    image = line_integrals(Phantom("ball", (sphere((0.0, 2.0, 1.0), 0.3, 1.0),)), geometry, angle, (256, 256),
                           0.4, shift).astype(np.float64)
    rows, cols = np.indices(image.shape)
    return (((cols * image).sum() / image.sum() - 127.5) * 0.4, ((rows * image).sum() / image.sum() - 127.5) * 0.4)


def test_shadow_moves_as_the_conventions_say():
    m = 10.0
    ccw, cw = Geometry(50.0, 500.0, rotation_direction=1), Geometry(50.0, 500.0, rotation_direction=-1)
    # Angle 0: the ball sits 2 mm towards the detector on the central ray, 1 mm up (v runs along −z).
    assert shadow_centre(ccw, 0.0) == pytest.approx((0.0, -500 / 52), abs=0.02)
    # +90° counter-clockwise seen from above takes +y to −x; clockwise takes it to +x.
    assert shadow_centre(ccw, 90.0) == pytest.approx((-2 * m, -m), abs=0.02)
    assert shadow_centre(cw, 90.0) == pytest.approx((2 * m, -m), abs=0.02)
    # The centre-of-rotation offset (at the axis) and the sample shift move the shadow by offset × M.
    offset = Geometry(50.0, 500.0, centre_of_rotation_offset_mm=0.3)
    assert shadow_centre(offset, 90.0)[0] - shadow_centre(ccw, 90.0)[0] == pytest.approx(0.3 * m, abs=0.01)
    assert shadow_centre(ccw, 90.0, shift=-0.5)[0] - shadow_centre(ccw, 90.0)[0] == pytest.approx(-0.5 * m, abs=0.01)


def test_culling_gives_the_same_image_as_projecting_every_pixel(monkeypatch):
    geometry = Geometry(50.0, 500.0, detector_offset_u_mm=4.0, detector_offset_v_mm=-3.0,
                        centre_of_rotation_offset_mm=0.2, rotation_direction=-1)
    mixed = Phantom("mix", (Cylinder((1, 0.5, -0.5), 0.9, 2.5, 0.7, (50, 10, 70)),
                            Ellipsoid((-2, 1, 1), (1.5, 0.8, 1.1), 1.0, (20, 30, 40))))
    cases = [(get_phantom("bga"), 33.0), (get_phantom("line-pairs"), 71.0), (mixed, 123.0)]
    culled = [line_integrals(phantom, geometry, angle, (200, 220), 0.5, 0.1) for phantom, angle in cases]
    monkeypatch.setattr(phantoms, "_shadow_window", lambda *args: (slice(None), slice(None)))
    for (phantom, angle), image in zip(cases, culled):
        assert np.count_nonzero(image) > 1000
        assert np.array_equal(image, line_integrals(phantom, geometry, angle, (200, 220), 0.5, 0.1))


# -- built-in phantoms -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["bga", "line-pairs", "shepp-logan-3d"])
def test_builtin_fits_the_field_of_view_at_every_angle(name):
    """Within 4.5 mm of the axis (the x half-width at every turn of the sample) and |z| ≤ 4 mm."""
    phantom = get_phantom(name)
    low, high = np.full(3, np.inf), np.full(3, -np.inf)
    for theta in np.radians(np.arange(0, 360, 2)):
        turn = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
        for primitive in phantom.primitives:
            centre = turn @ primitive.centre_mm
            half = primitive.half_extents_mm(turn @ primitive.unit_to_sample)
            low, high = np.minimum(low, centre - half), np.maximum(high, centre + half)
    assert max(-low[0], high[0]) <= 4.5
    assert max(-low[2], high[2]) <= 4.0
    assert high[2] + low[2] == pytest.approx(0.0, abs=1.0)    # centred


def test_builtin_phantoms_have_no_negative_mu_anywhere():
    """Every negative-µ primitive lies inside positive ones: sample each on a grid of its own unit body."""
    unit = np.stack(np.meshgrid(*[np.linspace(-1, 1, 15)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    for name in BUILTIN:
        phantom = get_phantom(name)
        for primitive in (p for p in phantom.primitives if p.mu_per_mm < 0):
            inside = unit[primitive.inside(unit)]
            assert mu_at(phantom, primitive.centre_mm + inside @ primitive.unit_to_sample.T).min() >= -1e-12, name


def test_bga_layout_and_ground_truth():
    bga, layout = get_phantom("bga"), BGA_LAYOUT
    centres = np.array(layout.ball_centres_mm)
    assert len(centres) == 16 and len(bga.primitives) == 1 + 16 + 3 + 1
    assert sorted(np.unique(np.round(centres[:, 0], 6))) == pytest.approx(np.arange(-1.5, 2) * 1.27)
    assert layout.ball_radius_mm == pytest.approx(0.38)
    # Balls sit on the board: their lowest point is the board's top face.
    board_top = layout.board.centre_mm[2] + layout.board.size_mm[2] / 2
    assert centres[:, 2] - layout.ball_radius_mm == pytest.approx(np.full(16, board_top))
    assert mu_at(bga, centres[[i for i in range(16) if i not in layout.voided_balls]]) == pytest.approx(2.5)
    assert mu_at(bga, [0.0, 0.0, board_top - 0.5]) == pytest.approx(0.05)
    assert mu_at(bga, [0.0, 0.0, board_top + 0.2]) == 0.0                         # between the balls
    # Voids: inside their ball, off-centre, 0.2-0.3 mm across; inside a void µ = 0.
    for ball, centre, radius in zip(layout.voided_balls, layout.void_centres_mm, layout.void_radii_mm):
        offset = np.linalg.norm(np.subtract(centre, centres[ball]))
        assert 0 < offset and offset + radius < layout.ball_radius_mm and 0.1 <= radius <= 0.15
        assert mu_at(bga, centre) == 0.0
    assert mu_at(bga, np.array(layout.void_centres_mm)) == pytest.approx(0.0)
    # The crack: ~0.05 mm thick, every corner inside the cracked ball, µ = 0 at its centre.
    crack = layout.crack
    assert layout.cracked_ball not in layout.voided_balls and min(crack.size_mm) == pytest.approx(0.05)
    corners = crack.centre_mm + phantoms._CORNERS @ crack.unit_to_sample.T
    assert np.linalg.norm(corners - centres[layout.cracked_ball], axis=1).max() < layout.ball_radius_mm
    assert mu_at(bga, crack.centre_mm) == 0.0


def test_bga_is_not_mirror_symmetric():
    heights = [BGA_LAYOUT.ball_centres_mm[0][2] + dz for dz in (-0.05, 0.0, 0.05)]
    grid = np.stack(np.meshgrid(np.linspace(-2.5, 2.5, 101), np.linspace(-2.5, 2.5, 101), heights, indexing="ij"),
                    axis=-1)
    truth = mu_at(get_phantom("bga"), grid)
    for mirrored in (truth[::-1], truth[:, ::-1], truth.transpose(1, 0, 2), truth[::-1, ::-1].transpose(1, 0, 2)):
        assert not np.array_equal(truth, mirrored)


def test_edge_runs_through_the_axis_tilted_and_out_of_the_field():
    edge = get_phantom("edge")
    tilt = math.tan(math.radians(phantoms.EDGE_TILT_DEG))
    for z in (-3.0, 0.0, 3.0):
        assert mu_at(edge, [z * tilt - 0.02, 0.0, z]) == 1.0
        assert mu_at(edge, [z * tilt + 0.02, 0.0, z]) == 0.0
    assert mu_at(edge, [[-6.0, 0, 0], [-0.5, 0, 6.0], [-0.5, 0, -6.0], [-1, 1.45, 0]]) == pytest.approx(1.0)
    assert mu_at(edge, [[-1, 1.55, 0], [-1, -1.55, 0]]) == pytest.approx(0.0)


def test_line_pair_groups_have_the_stated_periods():
    bars = sorted(get_phantom("line-pairs").primitives, key=lambda bar: bar.centre_mm[0])
    assert len(bars) == 3 * len(phantoms.LINE_PAIR_PERIODS_UM)
    for group, period_um in enumerate(phantoms.LINE_PAIR_PERIODS_UM):
        first, second, third = bars[3 * group: 3 * group + 3]
        period = period_um / 1000
        assert second.centre_mm[0] - first.centre_mm[0] == pytest.approx(period)
        assert third.centre_mm[0] - second.centre_mm[0] == pytest.approx(period)
        assert first.size_mm[0] == pytest.approx(period / 2) and first.mu_per_mm == 5.0
        between = (first.centre_mm[0] + second.centre_mm[0]) / 2
        assert mu_at(Phantom("lp", tuple(bars)), [[first.centre_mm[0], 0, 0], [between, 0, 0]]) == \
            pytest.approx([5.0, 0.0])


def test_shepp_logan_contrasts():
    shepp = get_phantom("shepp-logan-3d")
    unit, scale = phantoms.SHEPP_LOGAN_MU_UNIT, phantoms.SHEPP_LOGAN_SCALE_MM
    assert len(shepp.primitives) == 10
    assert mu_at(shepp, [0.0, 0.0, 0.0]) == pytest.approx(0.2 * unit)                    # brain
    assert mu_at(shepp, [0.0, 0.9 * scale, 0.0]) == pytest.approx(unit)   # skull
    assert mu_at(shepp, [0.22 * scale, 0.0, -0.25 * scale]) == pytest.approx(0.0)           # a ventricle


# -- specs -------------------------------------------------------------------------------------------------
def test_phantom_from_spec_by_name_and_by_primitives():
    assert phantom_from_spec("bga") == get_phantom("bga")
    custom = phantom_from_spec([
        {"type": "sphere", "centre_mm": [0, 0, 0], "radius_mm": 1.0, "mu_per_mm": 0.5},
        {"type": "box", "centre_mm": [1, 0, 0], "size_mm": [1, 2, 3], "mu_per_mm": -0.1, "rotation_deg": [0, 0, 30]},
        {"type": "cylinder", "centre_mm": [0, 0, 1], "radius_mm": 0.5, "height_mm": 2, "mu_per_mm": 1.0},
        {"type": "ellipsoid", "centre_mm": [0, 0, 0], "semi_axes_mm": [1, 2, 3], "mu_per_mm": 1.0}])
    assert custom.primitives[0] == Ellipsoid((0, 0, 0), (1, 1, 1), 0.5)
    assert custom.primitives[1] == Box((1, 0, 0), (1, 2, 3), -0.1, (0, 0, 30))
    assert isinstance(custom.primitives[2], Cylinder) and custom.name == "custom"


@pytest.mark.parametrize("spec, words", [
    ([{"type": "sphere", "centre_mm": [0, 0, 0], "radius_mm": 1, "mu_per_mm": 1, "colour": "red"}], ["colour"]),
    ([{"type": "box", "centre_mm": [0, 0, 0], "size_mm": [1, 1, 1]}], ["mu_per_mm"]),
    ([{"type": "sphere", "centre_mm": [0, 0, 0], "radius_mm": -1, "mu_per_mm": 1}], ["radius_mm"]),
    ([{"type": "cylinder", "centre_mm": [0, 0], "radius_mm": 1, "height_mm": 1, "mu_per_mm": 1}], ["centre_mm"]),
    ([{"type": "cube", "centre_mm": [0, 0, 0]}], ["type", "cube"]),
    ("teapot", ["teapot", "bga", "shepp-logan-3d"]),
    ([], ["non-empty"]),
])
def test_phantom_from_spec_errors_name_the_key(spec, words):
    with pytest.raises(ConfigurationError) as error:
        phantom_from_spec(spec)
    assert all(word in str(error.value) for word in words), str(error.value)
