"""FDK reconstruction of simulated scans against the truth: orientation, position, attenuation; the preview PNG.

A small noisy scan (128 × 128 frames of 625 µm, M = 5, so 125 µm voxels and
a 16 mm field of view; 120 projections over 360°, simulated clock) of the
lopsided ``spheres`` phantom is reconstructed with ``fdk_reconstruct``; a mirrored
or rotated reconstruction would put the inclusions millimetres (tens of
voxels) away from where the truth has them. A second scan turns the other way
(rotation_direction −1) with a centre-of-rotation offset and detector offsets.
RTK's import takes ~12 s, paid once.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
import tomllib
from importlib.resources import files

import numpy as np
import pytest
from scipy import ndimage

from microct.config import parse_config
from microct.errors import MicroCTError
from microct.geometry import Geometry
from microct.instruments import build_instruments
from microct.recon import (
    MissingDependencyError,
    corrected_projections,
    fdk_reconstruct,
    import_rtk,
    is_short_scan,
    rtk_geometry,
)
from microct.sequencer import run_scan
from microct.simulators.phantoms import Ellipsoid, Phantom, line_integrals, mu_at, spheres

pytestmark = pytest.mark.filterwarnings("ignore:builtin type (Swig|swig)")  # ITK's SWIG wrappers, on import
needs_rtk = pytest.mark.skipif(importlib.util.find_spec("itk") is None,
                               reason="itk-rtk (pip install microct[recon]) is not installed")

SIM = tomllib.loads(files("microct.configs").joinpath("sim.toml").read_text())
SCAN = {"detector": {"options": {"rows": 128, "columns": 128, "pixel_pitch_um": 625.0, "phantom": "spheres"}},
        "geometry": {"source_object_distance_mm": 100.0, "source_detector_distance_mm": 500.0},
        "scan": {"n_projections": 120, "n_darks": 5, "n_flats": 5, "binning": 1}}
TURNED = {"geometry": {"rotation_direction": -1, "centre_of_rotation_offset_mm": 1.0,  # 8 voxels
                       "detector_offset_u_mm": 2.5, "detector_offset_v_mm": -1.0}}
PHANTOM = spheres()  # a 6 mm ball (µ 0.05/mm) with two dense inclusions off-centre at different heights
BIG, INCLUSIONS = PHANTOM.primitives[0], PHANTOM.primitives[1:]
assert all(isinstance(p, Ellipsoid) and p.rotation_deg == (0.0, 0.0, 0.0) for p in PHANTOM.primitives)


def merged(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """{"plain": path, "turned": path}: the two simulated scans (~0.4 s each)."""
    paths = {}
    for name, overrides in (("plain", {}), ("turned", TURNED)):
        config = parse_config(merged(merged(SIM, SCAN), overrides))
        paths[name] = tmp_path_factory.mktemp(name) / "scan.nxs"
        run_scan(config, build_instruments(config), paths[name])
    return paths


@pytest.fixture(scope="module")
def volumes(scans):
    return {name: fdk_reconstruct(path) for name, path in scans.items()}


def coordinates(volume):
    """Voxel-centre coordinates z, y, x (mm), each broadcastable to the volume."""
    shape = volume.volume.shape
    return [volume.origin_mm[a] + volume.voxel_size_mm * np.arange(shape[a]).reshape([-1 if b == a else 1
                                                                                      for b in range(3)])
            for a in range(3)]


def truth(volume, mirror_x: bool = False) -> np.ndarray:
    """µ (1/mm) of the phantom at the voxel centres (optionally of its mirror image x → −x)."""
    z, y, x = np.broadcast_arrays(*coordinates(volume))
    return mu_at(PHANTOM, np.stack([-x if mirror_x else x, y, z], axis=-1))


# -- the convention mapping, against RTK's own analytic projector ---------------------------------------
@needs_rtk
@pytest.mark.parametrize("geometry", [Geometry(100, 500), Geometry(100, 500, 1.5, -2.0, 0.8, -1),
                                      Geometry(80, 400, -1.0, 1.0, -0.6, 1)])
def test_rtk_geometry_reproduces_our_projector(geometry):
    """RTK's RayEllipsoidIntersection through ``rtk_geometry`` = the simulator's projector, pixel for pixel.

    Ellipsoids at (x, y, z) with semi-axes (a, b, c) of the sample frame are
    placed at RTK (x, −z, −y) with semi-axes (a, c, b); the projection images
    are unflipped. A wrong gantry-angle sign, COR or offset sign, or axis swap
    leaves differences of the order of the signal (checked by hand: 0.3-1.0).
    """
    itk, rtk = import_rtk()
    image_type = itk.Image[itk.F, 3]
    shape, pitch, angles = (48, 64), 0.4, [0.0, 30.0, 97.0, 200.0]
    source = rtk.ConstantImageSource[image_type].New()
    source.SetOrigin([-(shape[1] - 1) / 2 * pitch, -(shape[0] - 1) / 2 * pitch, 0.0])
    source.SetSpacing([pitch, pitch, 1.0])
    source.SetSize([shape[1], shape[0], len(angles)])
    image = source.GetOutput()
    phantom = Phantom("lopsided", (*PHANTOM.primitives, Ellipsoid((-1.0, -2.5, 1.5), (0.5, 1.5, 2.5), 0.2)))
    for ellipsoid in phantom.primitives:
        (x, y, z), (a, b, c) = ellipsoid.centre_mm, ellipsoid.semi_axes_mm
        project = rtk.RayEllipsoidIntersectionImageFilter[image_type, image_type].New()
        project.SetInput(image)
        project.SetGeometry(rtk_geometry(rtk, geometry, np.array(angles)))
        project.SetDensity(ellipsoid.mu_per_mm)
        project.SetCenter([x, -z, -y])
        project.SetAxis([a, c, b])
        project.SetAngle(0.0)
        project.Update()
        image = project.GetOutput()
        image.DisconnectPipeline()
    ours = np.stack([line_integrals(phantom, geometry, a, shape, pitch) for a in angles])
    assert ours.max() > 1.0
    np.testing.assert_allclose(itk.array_from_image(image), ours, atol=1e-5)


# -- correction ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["plain", "turned"])
def test_corrected_projections_are_the_line_integrals(scans, name):
    """−log((P − D)/(F − D)) of the noisy, blurred frames matches the exact ∫µ dl at the measured angles."""
    proj = corrected_projections(scans[name])
    assert proj.line_integrals.dtype == np.float32 and proj.line_integrals.shape == (120, 128, 128)
    assert proj.pixel_pitch_mm == pytest.approx(0.625)
    np.testing.assert_allclose(proj.angles_deg, np.arange(120) * 3.0, atol=0.05)
    for k in (0, 37, 101):
        exact = line_integrals(PHANTOM, proj.geometry, proj.angles_deg[k], (128, 128), 0.625)
        error = proj.line_integrals[k] - exact
        assert np.median(np.abs(error)) < 0.015  # photon noise ~0.01 per pixel
        assert abs(error.mean()) < 0.003


def test_short_scan_detection():
    assert not is_short_scan(np.arange(120) * 3.0)
    assert not is_short_scan(np.arange(12) * 30.0)  # coarse, but complete: no Parker weights
    assert is_short_scan(np.linspace(0.0, 200.0, 100))


def test_missing_rtk_raises_a_microct_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "itk", None)
    with pytest.raises(MissingDependencyError, match=r"pip install microct\[recon\]") as caught:
        import_rtk()
    assert isinstance(caught.value, MicroCTError) and isinstance(caught.value, ImportError)


# -- reconstruction against the truth ------------------------------------------------------------------
@needs_rtk
@pytest.mark.parametrize("name", ["plain", "turned"])
def test_inclusions_at_their_true_positions(volumes, name):
    """The dense spheres found in the volume sit within 2 voxels of the truth; x-mirrored truth is far off."""
    volume = volumes[name]
    assert volume.volume.shape == (128, 128, 128) and volume.voxel_size_mm == pytest.approx(0.125)
    labels, n = ndimage.label(volume.volume > 0.2)  # the big sphere is 0.05 /mm, the inclusions ≥ 0.35
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, range(1, n + 1))
    found = [np.array(volume.origin_mm) + volume.voxel_size_mm * np.array(c)
             for c, size in zip(ndimage.center_of_mass(volume.volume, labels, range(1, n + 1)), sizes) if size > 50]
    assert len(found) == len(INCLUSIONS), f"{len(found)} dense blobs found, sizes {sizes}"
    for sphere in INCLUSIONS:
        x, y, z = sphere.centre_mm
        distances = [np.linalg.norm(f - (z, y, x)) for f in found]
        assert min(distances) < 2 * volume.voxel_size_mm, (sphere, found)
        mirrored = [np.linalg.norm(f - (z, y, -x)) for f in found]
        assert min(mirrored) > 10 * volume.voxel_size_mm


@needs_rtk
@pytest.mark.parametrize("name", ["plain", "turned"])
def test_volume_matches_the_truth_voxel_by_voxel(volumes, name):
    volume = volumes[name]
    z, y, x = coordinates(volume)
    r2 = x ** 2 + y ** 2 + z ** 2
    inside = r2 < 5.0 ** 2  # the object, away from the rim of the field of view
    expected, mirrored = truth(volume), truth(volume, mirror_x=True)
    # 0.974 for both scans; dropping the COR from projOffsetX alone gives 0.885, ignoring it 0.64.
    assert np.corrcoef(volume.volume[inside], expected[inside])[0, 1] > 0.95
    assert np.corrcoef(volume.volume[inside], mirrored[inside])[0, 1] < 0.6
    assert np.abs(volume.volume[(r2 > 6.5 ** 2) & (r2 < 7.5 ** 2)]).mean() < 0.01  # air around it


@needs_rtk
@pytest.mark.parametrize("name", ["plain", "turned"])
def test_attenuation_inside_the_big_sphere(volumes, name):
    volume = volumes[name]
    z, y, x = coordinates(volume)
    away = (x ** 2 + y ** 2 + z ** 2) < (BIG.semi_axes_mm[0] - 1.5) ** 2
    for s in INCLUSIONS:
        cx, cy, cz = s.centre_mm
        away &= (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 > (s.semi_axes_mm[0] + 1.0) ** 2
    assert away.sum() > 10_000
    assert volume.volume[away].mean() == pytest.approx(BIG.mu_per_mm, rel=0.10)


# -- preview -------------------------------------------------------------------------------------------
def test_preview_png(scans, tmp_path):
    from matplotlib.image import imread

    from microct.preview import write_preview

    png = write_preview(scans["plain"])
    assert png == scans["plain"].with_suffix(".png")
    image = imread(png)
    assert image.shape[:2] == (480, 1500)
    grey = image[..., :3].mean(axis=-1)
    for third in np.array_split(grey, 3, axis=1):  # each panel has structure, not a blank or flat area
        assert third.std() > 0.1
    assert write_preview(scans["plain"], tmp_path / "other.png") == tmp_path / "other.png"


def test_preview_without_rtk_says_how_to_get_the_slice(scans, tmp_path, monkeypatch):
    from matplotlib.image import imread

    import microct.preview as preview

    def missing():
        raise MissingDependencyError("no itk-rtk")

    monkeypatch.setattr(preview, "import_rtk", missing)
    png = preview.write_preview(scans["plain"], tmp_path / "no-rtk.png")
    grey = imread(png)[..., :3].mean(axis=-1)
    assert grey.shape == (480, 1500)
    assert grey[:, 1000:].std() > 0.02  # the note's text


def test_preview_command(scans, tmp_path, capsys):
    from microct.cli import main

    png = tmp_path / "cli.png"
    assert main(["preview", str(scans["plain"]), "-o", str(png)]) == 0
    assert capsys.readouterr().out.strip() == str(png)
    assert png.stat().st_size > 10_000
    assert main(["preview", str(tmp_path / "missing.nxs")]) == 1  # a clear error, not a traceback
